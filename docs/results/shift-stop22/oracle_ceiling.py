"""Ceiling of next-event HR@10 after a switch on the stationary synthetic benchmark: the generator's own
next-item distribution given the TRUE new interest (its popularity weights, its sequel/complement rule),
history excluded, over the same held-out episodes and steps as `benchmarks.shift --stationary`.

    python docs/results/shift-stop22/oracle_ceiling.py   # from the repository root; writes oracle_ceiling.json here
"""
import sys, json
import numpy as np, pandas as pd, torch
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from core.params import load_params
from features.adapters import synthetic as SY
from models.data import item_index, user_sequences, train_interactions
from models import shift as S, baselines

def run(vocab, seed):
    params = load_params(str(ROOT / "params.yaml"), {"ingest.synthetic.switch_in_training": False, "ingest.synthetic.vocabulary": vocab,
        "ingest.synthetic.events_per_user": 100, "ingest.synthetic.seed": seed})
    p = params.ingest.synthetic
    inter, items, truth = SY.generate(p)
    # rebuild the world exactly as generate() does
    rng = np.random.default_rng(p.seed)
    _, cats, primary = SY._catalogue(p, rng)
    by_cat = [np.flatnonzero(primary == c) for c in range(p.n_categories)]
    shop = p.vocabulary == "shop"
    pop = 1.0 / (1.0 + rng.permutation(p.n_items)) ** (1.1 if shop else 0.8)
    follow = np.array([int(rng.choice(by_cat[primary[i]])) for i in range(p.n_items)]) if shop else None
    inter["ts"] = pd.to_datetime(inter["ts"], unit="s", utc=True)
    index = item_index(items); pos = index.pos
    prim = S.primary_categories(items["categories"])
    eps = S.episodes_from_truth(truth, pos, 20)
    catlist = sorted(set(prim.values()))
    pidx = torch.tensor([-1] + [catlist.index(prim[i]) if i in prim else -1 for i in range(1, len(index) + 1)])
    tpop = baselines.popularity(train_interactions(inter), index).scores
    # model index i (1-based) <-> generator item int(item_id[1:])
    gen_of = np.zeros(len(index) + 1, dtype=np.int64)
    for iid, k in pos.items(): gen_of[k] = int(iid[1:])
    cat_of_name = {c: j for j, c in enumerate(cats)}
    class Oracle(torch.nn.Module):
        n_items = len(index)
        def __init__(self, ep_interest): super().__init__(); self.ep = ep_interest
        def score_all(self, seq, ts, now=None):
            out = torch.zeros(seq.shape[0], len(index) + 1)
            for b, row in enumerate(seq.tolist()):
                interest = self.cur[b]
                g = np.zeros(p.n_items)
                pool = by_cat[interest]
                last = gen_of[row[-1]]
                inside = primary[last] == interest
                g[pool] += (0.55 if inside else 0.85) * pop[pool] / pop[pool].sum()
                g += 0.15 * pop / pop.sum()
                if inside:
                    if follow is not None: g[follow[last]] += 0.3
                    else: g[pool[(np.searchsorted(pool, last) + 1) % len(pool)]] += 0.3
                out[b, 1:] = torch.from_numpy(g[gen_of[1:]]).float()
            return out
    # replay needs per-row interest: batch rows are episodes with len(new)>=j in order; patch via a wrapper
    orc = Oracle(None)
    orig = S._step_set
    def step_set(episodes, j, max_len):
        es = [e for e in episodes if len(e.new) >= j]
        d = orig(episodes, j, max_len)
        from models.data import eval_batches
        cur = [cat_of_name[e.interest] for e in es]
        order = np.argsort((d.seq > 0).sum(1), kind="stable")
        orc.cur = [cur[r] for r in order]
        return d
    S._step_set = step_set
    r_or = S.replay(orc, eps, prim, 200, batch_size=100000)
    S._step_set = orig
    r_h = S.replay(S.RecentMajority(pidx, tpop), eps, prim, 200)
    return {"vocab": vocab, "seed": seed, "users": len(eps), "oracle_hr": r_or["next_event_hr@10"], "heuristic_hr": r_h["next_event_hr@10"],
            "steps": r_h["steps"], "ratio": round(r_or["next_event_hr@10"] / r_h["next_event_hr@10"], 3)}

out = [run(v, s) for v in ("media", "shop") for s in (7, 11)]
for o in out: print(o, flush=True)
json.dump(out, open(Path(__file__).with_suffix(".json"), "w"), indent=1)
