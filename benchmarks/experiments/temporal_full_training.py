"""Temporal split, MovieLens-100K: the interest model trained to convergence (early stopping on
each user's last event before the validation cut-off), the hybrid's weights picked on the
benchmark's nested temporal validation, then tested as the benchmark tests.

    PULSE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/experiments/temporal_full_training.py [seed]

Why it is here: the benchmark's temporal protocol early-stops the neural models on 69 nested-
validation users (1-11 epochs); this checks whether a fully trained interest model would let the
hybrid beat recent popularity (docs/benchmarks.md, "Temporal split: what was tried"). About
10 minutes on one core.
"""
from __future__ import annotations

import dataclasses
import sys

from features import adapters
from core.params import load_params
from core.schema import validate
from models.data import item_index, leave_one_out, temporal_split, user_sequences, windows_from_sequences
from models.evaluate import evaluate_model
from models.fitting import fit_models
from models.hybrid import Hybrid, fit_hybrid
from models.train import encode_items


def main() -> None:
    params = load_params("params.yaml", {"data.dataset": "movielens-100k"})
    tp = dataclasses.replace(params.train, seed=int(sys.argv[1]) if len(sys.argv) > 1 else 42)
    raw_int, raw_items, _ = adapters.load(params)
    v = validate(raw_int, raw_items)
    index, inter = item_index(v.items), v.interactions
    text_emb = encode_items(params, v.items, "cpu")
    cutoff, _, test = temporal_split(inter, index, tp.max_len)
    before = inter[inter["ts"] < cutoff]
    inner, _, valid_temporal = temporal_split(before, index, tp.max_len)
    train = before[before["ts"] < inner]
    seqs = user_sequences(train, index)
    models, fits = fit_models(("interest", *tp.hybrid_with), train, index, text_emb, windows_from_sequences(seqs, tp.max_len, holdout=1),
                              leave_one_out(seqs, "test", tp.max_len), tp, "cpu")
    print("interest best epoch", fits["interest"].best_epoch)
    hybrid, search = fit_hybrid(models["interest"], {c: models[c] for c in tp.hybrid_with}, valid_temporal, tp.hybrid_grid)
    print("weights", hybrid.weights, "nested validation ndcg@10", round(search["valid_ndcg"], 4))
    parts = fit_models(tuple(tp.hybrid_with), before, index, text_emb, None, None, tp, "cpu")[0]  # refit up to the cut-off
    for name, model in [("interest", models["interest"]), ("hybrid", Hybrid(models["interest"], parts, hybrid.weights)),
                        ("recent_popularity", parts["recent_popularity"])]:
        m = evaluate_model(model, test, 10)
        print(f"{name:>18}: test ndcg@10 {m['ndcg@10']:.4f} hr@10 {m['hr@10']:.4f}")


if __name__ == "__main__":
    main()
