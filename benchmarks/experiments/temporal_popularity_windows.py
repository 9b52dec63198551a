"""Temporal split, MovieLens-100K: NDCG@10 of plain popularity counted over the N days before the
cut-off, for several N (test, and the nested validation split the benchmark uses).

    PULSE_DATA_DIR=../shared/data python benchmarks/experiments/temporal_popularity_windows.py

Why it is here: it shows how much of the temporal test is "what is popular right now", and how
sharply that depends on the window (docs/benchmarks.md, "Temporal split: what was tried").
"""
from __future__ import annotations

import numpy as np
import torch

from features import adapters
from core.params import load_params
from core.schema import validate
from models.data import item_index, temporal_split
from models.metrics import metrics_from_ranks, target_ranks
from models.trend import trend_table


def ndcg(scores: np.ndarray, data) -> float:
    s = torch.as_tensor(scores).float().unsqueeze(0).expand(len(data.targets), -1)
    ranks, _ = target_ranks(s, torch.as_tensor(data.targets), data.exclude)
    return metrics_from_ranks(ranks.numpy(), 10)["ndcg@10"]


def main() -> None:
    params = load_params("params.yaml", {"data.dataset": "movielens-100k"})
    raw_int, raw_items, _ = adapters.load(params)
    v = validate(raw_int, raw_items)
    index, inter = item_index(v.items), v.interactions
    cutoff, _, test = temporal_split(inter, index, params.train.max_len)
    before = inter[inter["ts"] < cutoff]
    inner, _, valid = temporal_split(before, index, params.train.max_len)
    ties = 1e-3 * trend_table(before, index, 100_000)[0][-1].numpy()  # all-time counts break ties
    for days in (1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60):
        on_test = trend_table(before, index, days)[0][-1].numpy()
        on_valid = trend_table(before[before["ts"] < inner], index, days)[0][-1].numpy()
        print(f"{days:>3} days: test ndcg@10 {ndcg(on_test + ties, test):.4f}  validation {ndcg(on_valid + ties, valid):.4f}")
    gap = (test.target_ts - test.ts[:, -1]) / 86400
    print("days since the newest pre-cut-off event, quantiles 10/25/50/75/90:", np.percentile(gap, [10, 25, 50, 75, 90]).round(1))


if __name__ == "__main__":
    main()
