import sys
exec(open("/work/scratch/s22/short.py").read().split("rows = []")[0])
from models.hybrid import log_normalised
from models.data import user_sequences
tr = train_interactions(inter)
seqs_tr = user_sequences(tr, index)
N = hyb.n_items + 1
T = torch.zeros(N, N)
for s in seqs_tr.values():
    a = torch.as_tensor(s.items[:-1]); b = torch.as_tensor(s.items[1:])
    T.index_put_((a, b), torch.ones(len(a)), accumulate=True)
# held-out protocol: training interactions already exclude valid/test? use as is
class ShortM(nn.Module):
    def __init__(self, w, mw, lags=1, decay=0.5):
        super().__init__(); self.w, self.mw, self.lags, self.decay = w, mw, lags, decay; self.n_items = hyb.n_items
    def score_all(self, seq, ts, now=None):
        s, t = seq[:, -self.w:], ts[:, -self.w:]
        sc = hyb.score_all(s, t, None).float()
        if self.mw:
            m = sum((self.decay ** l) * T[s[:, -1 - l]] for l in range(self.lags))
            sc = sc + self.mw * log_normalised(m, hyb.eps)
        sc[:, 0] = -1e9
        return sc
import itertools
for w in (3, 5):
    for mw, lags in itertools.product((0.0, 0.5, 1.0, 2.0), (1, 2)):
        if mw == 0 and lags == 2: continue
        r = S.replay(ShortM(w, mw, lags), eps, prim, 200)
        print(vocab, "w", w, "markov", mw, "lags", lags, r["next_event_hr@10"], r["median_events_to_half"], flush=True)
