import sys
exec(open("/work/scratch/s22/short.py").read().split("rows = []")[0])
from models.data import eval_batches
from models.metrics import target_ranks
# world reconstruction
p = params.ingest.synthetic
rng = np.random.default_rng(p.seed)
_, gcats, primary = SY._catalogue(p, rng)
by_cat = [np.flatnonzero(primary == c) for c in range(p.n_categories)]
shop = p.vocabulary == "shop"
gpop = 1.0 / (1.0 + rng.permutation(p.n_items)) ** (1.1 if shop else 0.8)
follow = np.array([int(rng.choice(by_cat[primary[i]])) for i in range(p.n_items)]) if shop else None
gen_of = np.zeros(len(index) + 1, dtype=np.int64)
for iid, k in pos.items(): gen_of[k] = int(iid[1:])
model_of = {g: k for k, g in enumerate(gen_of) if k > 0}
def nxt(last):
    pool = by_cat[primary[last]]
    return follow[last] if follow is not None else pool[(np.searchsorted(pool, last) + 1) % len(pool)]
stats = {}
for w in (3, 5, 10):
    m = Short(w, "plain")
    res = {"follow": [], "other": [], "rank_other": []}
    for j in range(1, 21):
        data = S._step_set(eps, j, 200); es = [e for e in eps if len(e.new) >= j]
        for rows, x, ex in eval_batches(data, 512, "cpu"):
            ranks, _ = target_ranks(m.score_all(x["seq"], x["ts"], x["now"]), x["targets"], ex)
            for r, rank in zip(rows, ranks.numpy()):
                e = es[r]
                if j >= len(e.new): continue
                last = gen_of[int(data.seq[r, -1])]; tgt = gen_of[int(data.targets[r])]
                isf = (tgt == nxt(last)) and primary[last] == gcats.index(e.interest)
                res["follow" if isf else "other"].append(rank <= 10)
    print(vocab, w, {k: (len(v), round(float(np.mean(v)), 4)) for k, v in res.items() if v}, flush=True)
