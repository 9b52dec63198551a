"""Only the batch phase: /recommend c1 idle (10 s), then during 5 x 10k batches; W workers; env passed through."""
import os, sys, tempfile, json
sys.path.insert(0, os.getcwd())
from pathlib import Path
from benchmarks.load import Phase, during_batch
from benchmarks.server import served, users_and_items
from core.params import load_params
workers = sys.argv[1]
params = load_params("params.yaml"); users, items = users_and_items(params)
tmp = Path(tempfile.mkdtemp())
env = {"PULSE_EVENT_LOG": str(tmp / "ev.jsonl"), "PULSE_WORKERS": workers}
url = "http://127.0.0.1:3000"
with served(url, params.root, True, env) as pid:
    Phase(url, {}, users, items).run("recommend", 1, 3.0)
    idle = Phase(url, {}, users, items, pid); f = idle.figures(idle.run("recommend", 1, 10))
    b = during_batch(url, {}, users, items, 10000, 5)
    print("idle p50/p99", f["ms"]["p50"], f["ms"]["p99"], "| batch p50/p99/max", b["recommend"]["ms"]["p50"], b["recommend"]["ms"]["p99"], b["recommend"]["ms"]["max"],
          "ratio", round(b["recommend"]["ms"]["p99"] / f["ms"]["p99"], 2), "batch_s", b["batch_s"])
