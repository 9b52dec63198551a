"""The exploration behind the content component (stop 23), on one cached Amazon Scientific fit (seed 42):
the hybrid's components with and without a text-content score (cosine of each item's text to the newest
behaviours' text, exp(20 (cos - 1)), the 3 newest at 1, 1/2, 1/4), weights by coordinate ascent on validation.

Run from the repo root after `PULSE_DATA_DIR=../shared/data python docs/results/amazon-untrained/ab_same_fit.py 42`
(which caches the fit in reports/untrained-ab/fit-42.pt):
    PULSE_DATA_DIR=../shared/data python docs/results/amazon-content/probe_text.py
Its output is quoted in docs/benchmarks.md, "The content component"."""
import sys, json, time, logging, itertools
import numpy as np, torch
sys.path.insert(0, ".")
from core.params import load_params
from core.schema import validate
from features import adapters
from models.train import encode_items
from models.protocols import split_for
from models import baselines
from models.hybrid import log_normalised, _fuse
from models.data import eval_batches
from models.metrics import metrics_from_ranks, target_ranks
from models.untrained import untrained_items, warm_components, warm_interest
torch.set_num_threads(2)
params = load_params("params.yaml", {"data.dataset": "amazon-scientific", "train.seed": 42})
raw_int, raw_items, _ = adapters.load(params); v = validate(raw_int, raw_items)
text_emb = encode_items(params, v.items, "cpu")
tp = params.train
sp = split_for("loo", v.interactions, v.items, text_emb, tp)
masks = sp.test_masks()
models = torch.load("reports/untrained-ab/fit-42.pt", weights_only=False)
h = models["hybrid"]
for _m in h.components.values():
    if not hasattr(_m, "symmetric") and hasattr(_m, "sim"): _m.symmetric = True
base = h.base
unseen = untrained_items(sp.train_df, sp.index)
warm_interest(base, unseen)
comps = dict(h.components)
comps["markov"] = baselines.markov(sp.train_df, sp.index)
comps["recent_popularity"] = baselines.recent_popularity(sp.train_df, sp.index, tp.recent_days)
warm_components(base, comps, unseen)
E = torch.nn.functional.normalize(text_emb_t := torch.as_tensor(base.text_emb if hasattr(base, "text_emb") else text_emb).float(), dim=-1)
print("text rows", E.shape, "n_items", base.n_items)

def text_scores(seq, n_recent=3, decay=0.5, temp=20.0):
    # seq (B, L) left-padded; newest at the right
    last = seq[:, -n_recent:]
    w = decay ** torch.arange(n_recent - 1, -1, -1).float()
    q = (E[last] * (w[None, :, None] * (last > 0)[..., None])).sum(1)
    s = torch.nn.functional.normalize(q, dim=-1) @ E.T  # (B, N+1)
    return torch.exp(temp * (s - 1))

def collect(evalset):
    out = {"lp": [], "parts": {c: [] for c in comps}, "text": [], "t": [], "ex": [], "rows": []}
    for rows, x, exclude in eval_batches(evalset, 512, "cpu"):
        out["rows"].append(rows)
        with torch.no_grad():
            out["lp"].append(base.score_all(x["seq"], x["ts"], x["now"]).log_softmax(-1) if False else h.__class__.base_log_probs(h, x["seq"], x["ts"], x["now"]))
            for c, m in comps.items():
                out["parts"][c].append(log_normalised(m.score_all(x["seq"], x["ts"], x["now"]), 1e-3))
            out["text"].append(log_normalised(text_scores(x["seq"]), 1e-3))
        out["t"].append(x["targets"]); out["ex"].append(exclude)
    return out

t0 = time.time()
V = collect(sp.valid); T = collect(sp.test)
print("collected", round(time.time() - t0))

def evaluate(D, w, k=10):
    rs = []
    for b in range(len(D["lp"])):
        parts = [D["parts"][c][b] for c in names] + [D["text"][b]]
        r, _ = target_ranks(_fuse(D["lp"][b], parts, tuple(w)), D["t"][b], D["ex"][b])
        rs.append(r.numpy())
    out = np.empty(sum(len(x) for x in rs)); out[np.concatenate(D["rows"])] = np.concatenate(rs)
    return out

names = list(comps)
grid = [0, 0.5, 1, 1.5, 2, 3, 5, 10, 30]
def ascent(D, allowed, rounds=3):
    w = [0.0] * (len(names) + 1)
    best = metrics_from_ranks(evaluate(D, w), 10)["ndcg@10"]
    for _ in range(rounds):
        moved = False
        for i in allowed:
            for g in grid:
                c = list(w); c[i] = g
                s = metrics_from_ranks(evaluate(D, c), 10)["ndcg@10"]
                if s > best + 1e-6: best, w, moved = s, c, True
        if not moved: break
    return w, best
cold = masks["cold_item"]
labels = names + ["text"]
for allowed_names in (["item_knn", "ease"], ["item_knn", "markov", "recent_popularity"], ["item_knn", "markov", "recent_popularity", "ease"],
                      ["item_knn", "markov", "recent_popularity", "ease", "text"], ["item_knn", "ease", "text"],
                      ["item_knn", "markov", "recent_popularity", "text"], ["item_knn", "text"]):
    allowed = [labels.index(n) for n in allowed_names]
    t1 = time.time(); w, vb = ascent(V, allowed)
    r = evaluate(T, w)
    m = metrics_from_ranks(r, 10); mc = metrics_from_ranks(r[cold], 10)
    print(allowed_names, dict(zip(labels, w)), "valid %.4f test ndcg %.4f hr %.4f | cold hr %.4f mrr %.4f median rank %d" % (vb, m["ndcg@10"], m["hr@10"], mc["hr@10"], mc["mrr"], np.median(r[cold])), round(time.time() - t1), "s", flush=True)
# text alone on cold
r = evaluate(T, [0]*len(names) + [1.0]) 
print("interest+text(1) cold ranks", sorted(r[cold].tolist())[:15])
