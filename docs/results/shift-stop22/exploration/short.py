"""Short-expert variants on the cached stationary fits (seed 7): next-event HR@10 after the switch."""
import sys, os, json, time
import numpy as np, pandas as pd, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, "/work/main")
from core.params import load_params
from features.adapters import synthetic as SY
from models.data import item_index, user_sequences, train_interactions, item_category_matrix
from models import shift as S, baselines
torch.set_num_threads(1)
vocab = sys.argv[1]; seed = 7
params = load_params("/work/main/params.yaml", {"ingest.synthetic.switch_in_training": False, "ingest.synthetic.vocabulary": vocab,
    "ingest.synthetic.events_per_user": 100, "ingest.synthetic.seed": seed})
inter, items, truth = SY.generate(params.ingest.synthetic)
inter["ts"] = pd.to_datetime(inter["ts"], unit="s", utc=True)
index = item_index(items); pos = index.pos
models = torch.load(f"/work/scratch/fit-{vocab}-100-7-0.0.pt", weights_only=False)
from models.sparse import CsrMatrix
from models.baselines import ItemKNN
for m in models["hybrid"].modules():
    if isinstance(m, ItemKNN) and isinstance(m.sim, torch.Tensor):
        m.sim = CsrMatrix.from_dense(m.sim.float()); m.n_trained = m.sim.n
hyb = models["hybrid"].eval()
print(type(hyb), [type(c).__name__ for c in hyb.children()], getattr(hyb, "weights", None))
prim = S.primary_categories(items["categories"])
eps = S.episodes_from_truth(truth, pos, 20)
cats = item_category_matrix([list(c) for c in items["categories"]]).float()  # (N+1, C)
pop = baselines.popularity(train_interactions(inter), index).scores.float()

class Short(nn.Module):
    def __init__(self, w, mode, beta=1.0, hl=2.0):
        super().__init__(); self.w, self.mode, self.beta, self.hl = w, mode, beta, hl; self.n_items = hyb.n_items
    def score_all(self, seq, ts, now=None):
        s, t = seq[:, -self.w:], ts[:, -self.w:]
        lp = torch.log_softmax(hyb.score_all(s, t, None).float().masked_fill(torch.arange(hyb.n_items + 1) == 0, -1e9), -1)
        if self.mode == "plain":
            return lp
        age = torch.arange(s.shape[1] - 1, -1, -1, dtype=torch.float32)
        d = (0.5 ** (age / self.hl) * (s > 0).float()).unsqueeze(-1)
        mix = (d * cats[s]).sum(1); mix = mix / mix.sum(1, keepdim=True).clamp(min=1e-12)  # (B, C)
        if self.mode == "catrestrict":   # P(category of item) only
            pc = (cats @ mix.T).T  # (B, N+1)
            return lp + self.beta * torch.log(pc + 0.02)
        if self.mode == "catpop":   # full category expert product
            within = cats * (pop + 1).unsqueeze(1); within = within / within.sum(0, keepdim=True)
            pc = mix @ within.T
            return lp + self.beta * torch.log(pc + 1e-6)
rows = []
for w in (3, 5):
    for mode, beta in (("plain", 0), ("catrestrict", 1.0), ("catrestrict", 3.0), ("catpop", 0.5), ("catpop", 1.0)):
        t0 = time.time()
        r = S.replay(Short(w, mode, beta), eps, prim, 200)
        rows.append((vocab, w, mode, beta, r["next_event_hr@10"], r["median_events_to_half"], r["never_share"], r["new_interest_share_after"]))
        print(rows[-1], round(time.time() - t0), flush=True)
