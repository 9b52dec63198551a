"""In process: answers with the evidence memo (warm, after other batches) vs without, 400 histories with growth."""
import sys, numpy as np, torch
sys.path.insert(0, "/work/main")
from pathlib import Path
from models.inference import Engine
torch.set_num_threads(1)
a = Engine(Path("artifacts/model"), "hybrid_switch"); b = Engine(Path("artifacts/model"), "hybrid_switch"); b.model.memo = None
rng = np.random.default_rng(1)
hs = [(list(rng.choice(a.ids, int(rng.integers(3, 80)))), None) for _ in range(400)]
hs = [(i, list(1_700_000_000 + np.sort(rng.integers(0, 10**7, len(i))))) for i, _ in hs]
a.recommend_many(hs[::-1], 10, True, batch_size=7)  # warm the memo in other batch compositions
grown = [(i + [str(rng.choice(a.ids))], t + [t[-1] + 60]) for i, t in hs]
diff = maxd = 0
for batch in (hs, grown):
    for B in (1, 8, 16):
        ra = a.recommend_many(batch, 10, True, batch_size=B) if B > 1 else [a.recommend(i, t) for i, t in batch]
        rb = b.recommend_many(batch, 10, True, batch_size=B) if B > 1 else [b.recommend(i, t) for i, t in batch]
        for x, y in zip(ra, rb):
            diff += [i["item_id"] for i in x.items] != [i["item_id"] for i in y.items] or x.switch["in_switch"] != y.switch["in_switch"]
            maxd = max(maxd, max(abs(i["score"] - j["score"]) for i, j in zip(x.items, y.items)), abs(x.switch["gate"] - y.switch["gate"]))
print("answers differing:", diff, "of", 2 * 3 * 400, "; max |score or gate difference|", maxd, "; memo entries", len(a.model.memo.table()))
