"""Peak memory and time of building the sparse item-kNN (co-occurrence) matrix for a large catalogue.

    python -m benchmarks.knn_memory --items 100000 --events 2000000 --top-k 0 --out reports/bench/knn_memory.json

Synthetic sequences: users that each follow two of ``items / 100`` interest clusters, so the
co-occurrence has structure (a few hundred neighbours per item, not the whole catalogue). The
process's peak resident memory (``ru_maxrss``) is read before and after the build: the build's
own peak is at most their difference plus what the process held before it. The dense matrix it
replaced would be ``(N + 1)^2 * 4`` bytes (reported, not allocated: 40 GB at 10^5 items).
Run one ``--top-k`` per process: ``ru_maxrss`` is the process's peak so far.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import pandas as pd

from benchmarks.report import write_report
from models.baselines import cooccurrence_similarity
from models.data import ItemIndex


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_events(n_items: int, n_events: int, events_per_user: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_users = max(1, n_events // events_per_user)
    clusters = max(1, n_items // 100)
    cluster_of_user = rng.integers(0, clusters, (n_users, 2))
    user = np.repeat(np.arange(n_users), events_per_user)[:n_events]
    pick = rng.integers(0, 2, len(user))
    cluster = cluster_of_user[user, pick]
    item = (cluster * 100 + rng.integers(0, 100, len(user))) % n_items + 1
    return pd.DataFrame({"user_id": user.astype(np.int64), "item_id": [f"i{k}" for k in item],
                         "ts": np.arange(len(user), dtype=np.int64)})


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--events-per-user", type=int, default=40)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=0, help="neighbours kept per item (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="reports/bench/knn_memory.json")
    args = ap.parse_args(argv)
    train = synthetic_events(args.items, args.events, args.events_per_user, args.seed)
    index = ItemIndex(tuple(f"i{k}" for k in range(1, args.items + 1)))
    before = peak_mb()
    t0 = time.perf_counter()
    sim = cooccurrence_similarity(train, index, args.window, args.top_k)
    seconds = time.perf_counter() - t0
    after = peak_mb()
    degree = sim.crow.diff()[1:].float()
    report = {"command": "python -m benchmarks.knn_memory " + " ".join(argv if argv is not None else os.sys.argv[1:]),
              "items": args.items, "events": len(train), "window": args.window, "top_k": args.top_k,
              "build_s": round(seconds, 2), "nnz": sim.nnz, "matrix_mb": round(sim.nbytes() / 2**20, 1),
              "neighbours_per_item_mean": round(float(degree.mean()), 1), "neighbours_per_item_max": int(degree.max()),
              "peak_rss_before_build_mb": round(before, 1), "peak_rss_after_build_mb": round(after, 1),
              "dense_matrix_would_be_mb": round((args.items + 1) ** 2 * 4 / 2**20, 1)}
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
