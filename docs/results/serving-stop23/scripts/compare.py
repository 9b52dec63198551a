"""One-at-a-time vs batched (serving.scoring.recommend_all, batches of 8) over every user of the data."""
import json, sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch
torch.set_num_threads(1)
from models.inference import Engine
from serving.scoring import Ask, recommend_all

e = Engine(Path("/tmp/fc22/artifacts/model"), "hybrid_switch")
df = pd.read_parquet("/tmp/fc22/data/raw/interactions.parquet").sort_values("ts")
df["sec"] = pd.to_datetime(df["ts"], utc=True).astype("int64") // 10**9
hists = [(g["item_id"].tolist()[-200:], g["sec"].tolist()[-200:]) for _, g in df.groupby("user_id", sort=True)]
B = int(sys.argv[1]) if len(sys.argv) > 1 else 8
t0 = time.process_time(); one = [e.recommend(h, t, 10, True) for h, t in hists]; cpu1 = time.process_time() - t0
t0 = time.process_time()
many = []
for s in range(0, len(hists), B):
    many += recommend_all([Ask(e, h, t, 10, True) for h, t in hists[s:s + B]])
cpuB = time.process_time() - t0
same_ids = sum([i["item_id"] for i in a.items] == [i["item_id"] for i in b.items] for a, b in zip(one, many))
same_set = sum({i["item_id"] for i in a.items} == {i["item_id"] for i in b.items} for a, b in zip(one, many))
diff = max(abs(x["score"] - y["score"]) for a, b in zip(one, many) for x, y in zip(a.items, b.items))
wdiff = max((abs(x["weight"] - y["weight"]) for a, b in zip(one, many) for x, y in zip(a.because, b.because)), default=0)
same_because = sum([x["item_id"] for x in a.because] == [x["item_id"] for x in b.because] for a, b in zip(one, many))
gdiff = max(abs(a.switch["gate"] - b.switch["gate"]) for a, b in zip(one, many) if a.switch)
same_switch = sum((a.switch or {}).get("in_switch") == (b.switch or {}).get("in_switch") for a, b in zip(one, many))
print(json.dumps({"users": len(hists), "batch": B, "same_top10_order": same_ids, "same_top10_set": same_set,
                  "max_score_diff": diff, "same_because": same_because, "max_because_weight_diff": wdiff,
                  "max_gate_diff": gdiff, "same_in_switch": same_switch,
                  "cpu_ms_per_user_one": round(1000 * cpu1 / len(hists), 2), "cpu_ms_per_user_batched": round(1000 * cpuB / len(hists), 2)}))
