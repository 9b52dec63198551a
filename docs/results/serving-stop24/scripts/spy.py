"""Serve (1 worker), drive /recommend at concurrency C for S seconds under py-spy; report req/s + server CPU/req."""
import os, sys, subprocess, tempfile, time, json
sys.path.insert(0, os.getcwd())  # run from the project root
from pathlib import Path
from benchmarks.load import Phase
from benchmarks.server import served, users_and_items
from core.params import load_params
C = int(sys.argv[1]); S = float(sys.argv[2]); out = sys.argv[3]; workers = sys.argv[4] if len(sys.argv) > 4 else "1"
params = load_params("params.yaml")
users, items = users_and_items(params)
tmp = Path(tempfile.mkdtemp())
env = {"PULSE_EVENT_LOG": str(tmp / "ev.jsonl"), "PULSE_WORKERS": workers}
with served("http://127.0.0.1:3000", params.root, True, env) as pid:
    Phase("http://127.0.0.1:3000", {}, users, items).run("recommend", 1, 3.0)
    spy = None
    if out != "-":
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-r", "200", "--subprocesses", "--nonblocking", "-f", "raw",
                                "-d", str(int(S)), "-o", out, "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
    ph = Phase("http://127.0.0.1:3000", {}, users, items, pid)
    fig = ph.figures(ph.run("recommend", C, S))
    print(json.dumps({k: fig[k] for k in fig if k in ("requests_per_s", "ms", "server_cpu_ms_per_req", "client_cpu_ms_per_req")}))
    if spy: spy.wait()
