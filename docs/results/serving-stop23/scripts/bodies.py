"""/recommend bodies for every user of the data: argv[1] = out json, argv[2] = clients (1: one at a time)."""
import json, sys, tempfile, threading
from pathlib import Path
import httpx
from benchmarks.server import served, users_and_items
from core.params import load_params

params = load_params("params.yaml")
users, _ = users_and_items(params)
clients = int(sys.argv[2])
tmp = Path(tempfile.mkdtemp(prefix="pulse-bodies-"))
out = {}
with served("http://127.0.0.1:3000", params.root, True, {"PULSE_EVENT_LOG": str(tmp / "events.jsonl"), "PULSE_WORKERS": "1"}):
    def run(part):
        with httpx.Client(timeout=60) as c:
            for u in part:
                out[u] = c.post("http://127.0.0.1:3000/recommend", json={"user_id": u, "k": 10}).text
    ts = [threading.Thread(target=run, args=(users[i::clients],)) for i in range(clients)]
    [t.start() for t in ts]; [t.join() for t in ts]
json.dump(out, open(sys.argv[1], "w"))
print(len(out))
