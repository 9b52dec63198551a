"""cold vs warm memo: CPU ms/user for fresh histories (every key new), the same histories again, and with one new event each."""
import os, sys, time
import numpy as np, torch
from pathlib import Path
sys.path.insert(0, os.environ.get("PULSE_SRC", "/work/main"))
from models.inference import Engine
torch.set_num_threads(1)
eng = Engine(Path(sys.argv[1]), sys.argv[2]); B = int(sys.argv[3])
rng = np.random.default_rng(0)
def hists(n=400):
    out = []
    for u in range(n):
        L = int(rng.integers(10, 60)); out.append((list(rng.choice(eng.ids, L)), list(1_700_000_000 + np.arange(L) * 3600)))
    return out
def run(hs):
    t0 = time.process_time(); res = []
    for s in range(0, len(hs), B):
        res += eng.recommend_many(hs[s:s+B], 10, True, batch_size=B)
    return (time.process_time() - t0) * 1000 / len(hs), res
run(hists(64))
hs = hists()
cold, r1 = run(hs); warm, r2 = run(hs)
plus = [(i + [str(rng.choice(eng.ids))], t + [t[-1] + 600]) for i, t in hs]
new1, _ = run(plus)
same = all([x["item_id"] for x in a.items] == [x["item_id"] for x in b.items] for a, b in zip(r1, r2))
print(f"B {B}: cold {cold:.3f}  warm {warm:.3f}  one new event {new1:.3f} ms/user; warm answers identical: {same}")
