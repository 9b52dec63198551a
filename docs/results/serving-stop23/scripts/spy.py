"""py-spy of the one API worker under /recommend at 8 clients (the load client's Phase), collapsed stacks to argv[1]."""
import subprocess, sys, threading, time, os
from benchmarks.load import Phase
from benchmarks.server import served, users_and_items
from core.params import load_params
import tempfile
from pathlib import Path

params = load_params("params.yaml")
users, items = users_and_items(params)
tmp = Path(tempfile.mkdtemp(prefix="pulse-spy-"))
env = {"PULSE_EVENT_LOG": str(tmp / "events.jsonl"), "PULSE_WORKERS": "1"}
with served("http://127.0.0.1:3000", params.root, True, env) as pid:
    Phase("http://127.0.0.1:3000", {}, users, items).run("recommend", 1, 3.0)
    out = subprocess.run(["pgrep", "-f", "serving.service:Recommender"], capture_output=True, text=True).stdout.split()
    kids = [p for p in out if int(p) != pid]
    print("server", pid, "candidates", kids, flush=True)
    worker = max(kids, key=lambda p: int(open(f"/proc/{p}/statm").read().split()[1]))  # the one with the model loaded
    ph = Phase("http://127.0.0.1:3000", {}, users, items, pid)
    t = threading.Thread(target=lambda: print(ph.figures(ph.run("recommend", 8, 16.0))))
    t.start(); time.sleep(3)
    subprocess.run(["/work/main/.venv/bin/py-spy", "record", "-p", worker, "-d", "10", "-r", "200", "-f", "raw", "-o", sys.argv[1], "--nonblocking", "--threads"], check=False)
    t.join()
