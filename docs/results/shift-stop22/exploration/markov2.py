import sys
exec(open("/work/scratch/s22/markov.py").read().split("import itertools")[0])
from models.baselines import ItemKNN
from models.sparse import CsrMatrix
Tn = T / T.sum(1, keepdim=True).clamp(min=1)
for name, mat in (("raw", T), ("rownorm", Tn)):
    knn = ItemKNN(mat, n_recent=2, decay=0.5)
    class SM(nn.Module):
        n_items = hyb.n_items
        def __init__(self, w, mw): super().__init__(); self.w, self.mw = w, mw
        def score_all(self, seq, ts, now=None):
            s, t = seq[:, -self.w:], ts[:, -self.w:]
            sc = hyb.score_all(s, t, None).float() + self.mw * log_normalised(knn.score_all(s, t, None), hyb.eps)
            sc[:, 0] = -1e9; return sc
    for w in (3, 5, 10):
        for mw in (0.5, 1.0):
            r = S.replay(SM(w, mw), eps, prim, 200)
            print(vocab, name, "w", w, "mw", mw, r["next_event_hr@10"], flush=True)
