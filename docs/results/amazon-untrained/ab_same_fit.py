"""A/B on one fit (Amazon Scientific, leave-one-out): the cold-item slice with and without warming the
items training never showed (models/untrained.py), and every user's NDCG@10. Writes reports/untrained-ab/res-SEED.json."""
import copy, json, sys, time, logging
from pathlib import Path
import torch
sys.path.insert(0, ".")  # from the repo root: PULSE_DATA_DIR=../shared/data python docs/results/amazon-untrained/ab_same_fit.py 42
from core.cli import configure_logging
from core.params import load_params
from core.schema import validate
from features import adapters
from models.train import encode_items
from models.fitting import fit_models
from models.evaluate import rank_targets, metrics_for, n_items_of
from models.protocols import split_for
from models.untrained import untrained_items, warm_components, warm_interest
configure_logging(logging.INFO)
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 42
params = load_params("params.yaml", {"data.dataset": "amazon-scientific", "train.hybrid_with": ["item_knn", "ease"], "train.seed": seed, "train.warm_untrained_items": False})  # the plain fit; warmed below
raw_int, raw_items, _ = adapters.load(params); v = validate(raw_int, raw_items)
text_emb = encode_items(params, v.items, "cpu")
tp = params.train
sp = split_for("loo", v.interactions, v.items, text_emb, tp)
masks = sp.test_masks()
t0 = time.time()
Path("reports/untrained-ab").mkdir(parents=True, exist_ok=True)
cache = f"reports/untrained-ab/fit-{seed}.pt"
try:
    models = torch.load(cache, weights_only=False)
except FileNotFoundError:
    models, fits = fit_models(("hybrid", "sasrec"), sp.train_df, sp.index, text_emb, sp.windows, sp.valid, tp, "cpu", 10)
    torch.save(models, cache)
print("fit s", round(time.time() - t0))
unseen = untrained_items(sp.train_df, sp.index)
print("unseen items", len(unseen), "cold users", int(masks["cold_item"].sum()))


def warm(h, components=True):
    """The product's own warming (models/untrained.py) on a copy of the plain fit."""
    h = copy.deepcopy(h)
    warm_interest(h.base, unseen)
    if components:
        warm_components(h.base, h.components, unseen)
    return h


def report(name, model):
    ranks, top = rank_targets(model, sp.test, 10)
    out = {"all": metrics_for(ranks, top, 10, n_items_of(model))}
    m = masks["cold_item"]; out["cold"] = metrics_for(ranks[m], top[m], 10, n_items_of(model))
    out["cold_ranks"] = sorted(int(r) for r in ranks[m])
    print(name, json.dumps({k: (round(v["ndcg@10"], 4), round(v["hr@10"], 4)) for k, v in out.items() if k != "cold_ranks"}), "cold ranks", out["cold_ranks"][:15])
    return out

res = {}
h = models["hybrid"]
res["sasrec"] = report("sasrec", models["sasrec"])
res["interest"] = report("interest", h.base)
res["hybrid"] = report("hybrid", h)
hw = warm(h, components=False)
res["interest_warm"] = report("interest_warm", hw.base)
res["hybrid_warm_id"] = report("hybrid_warm_id", hw)
hw2 = warm(h, components=True)
res["hybrid_warm_all"] = report("hybrid_warm_all", hw2)
json.dump(res, open(f"reports/untrained-ab/res-{seed}.json", "w"), indent=1)
