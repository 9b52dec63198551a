"""Wall time of the ranking benchmark's fit jobs as Prefect tasks: sequential against a local Dask
cluster, on a tiny synthetic dataset, and whether both give the single-process numbers.

    python -m benchmarks.task_runners --out reports/bench/task_runners.json

Why tiny: it measures what the task runner itself costs (cluster start-up, shipping the tables to
the workers) and checks the results, in a minute; on real data each fit takes minutes and the
runner's overhead vanishes beside it. ``tests/unit/test_benchmark_flow.py`` runs the same flow.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any

from flows.benchmark import run_fits  # first: it sets Prefect's local settings before prefect is imported

import torch  # noqa: E402
from prefect import flow  # noqa: E402

from benchmarks.fit_jobs import fit_jobs, fit_order  # noqa: E402
from benchmarks.ranking import run_protocols  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from core.cli import configure_logging  # noqa: E402
from core.params import Params, ScaleParams, SyntheticParams, TrainParams  # noqa: E402

log = logging.getLogger(__name__)

MODELS = ("popularity", "item_knn", "sasrec")
PROTOCOLS = {"loo": {"interest-no_long_term": {"use_long_term": False}}, "temporal": {}}
METRICS = ("hr@10", "ndcg@10", "mrr")


def tiny_inputs(n_users: int = 20, epochs: int = 1, n_items: int = 30) -> tuple[Params, Any, Any, torch.Tensor]:
    """Params, interactions, items and random text embeddings of a tiny synthetic dataset: the
    same on every call, so a flow run on a Dask worker and a test in this process agree. Every
    epoch runs (patience = epochs), so ``epochs`` sets the cost of a fit."""
    from features.adapters.synthetic import generate
    from core.schema import validate

    raw_int, raw_items, _ = generate(SyntheticParams(n_users=n_users, n_items=n_items, n_categories=4, events_per_user=15))
    v = validate(raw_int, raw_items)
    text_emb = torch.randn(len(v.items) + 1, 8, generator=torch.Generator().manual_seed(0))
    text_emb[0] = 0
    params = Params(train=TrainParams(epochs=epochs, dim=16, max_len=10, n_layers=1, batch_size=64, patience=epochs,
                                     device="cpu"))
    return params, v.interactions, v.items, text_emb


@flow(name="benchmark-fits-tiny")
def tiny_fits(scale: ScaleParams, seeds: list[int], n_users: int = 20, epochs: int = 1, n_items: int = 30) -> dict[str, dict]:
    """The tiny benchmark's fit jobs, one task each, on ``scale``'s task runner."""
    params, interactions, items, text_emb = tiny_inputs(n_users, epochs, n_items)
    return run_fits(scale, params, PROTOCOLS, interactions, items, text_emb, MODELS, seeds, "cpu")


def reference(seeds: list[int], n_users: int = 20, epochs: int = 1, n_items: int = 30) -> dict[str, dict]:
    """The same fits in this process, one after the other, without Prefect (``run_protocols``)."""
    params, interactions, items, text_emb = tiny_inputs(n_users, epochs, n_items)
    return run_protocols(params, PROTOCOLS, interactions, items, text_emb, MODELS, seeds, "cpu")


def largest_difference(a: dict[str, dict], b: dict[str, dict]) -> float:
    """The largest gap between two reports' mean and std of HR@10, NDCG@10 and MRR over every
    protocol and model (a report missing a model is infinitely far)."""
    gap = 0.0
    for proto, pa in a.items():
        if proto not in b or list(pa["models"]) != list(b[proto]["models"]):
            return float("inf")
        for name, m in pa["models"].items():
            for key in METRICS:
                for stat in ("mean", "std"):
                    gap = max(gap, abs(m["all"][key][stat] - b[proto]["models"][name]["all"][key][stat]))
    return gap


@flow(name="warm-up")
def _warm_up() -> None:
    """Nothing: starts Prefect's ephemeral server, so that no timed run pays for it."""


def _timed(scale: ScaleParams, seeds: list[int], args: argparse.Namespace) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = tiny_fits(scale, seeds, args.users, args.epochs, args.items)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description="the benchmark's fit jobs: sequential vs a local Dask cluster")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--users", type=int, default=20, help="synthetic users (20: the unit test's size)")
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=1, help="every one runs: the cost of a fit")
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--out", default="reports/bench/task_runners.json")
    args = ap.parse_args()
    configure_logging()
    seeds, load = list(range(1, args.seeds + 1)), os.getloadavg()
    torch.set_num_threads(1)  # every runner fits on one thread per task, so the numbers compare
    t0 = time.perf_counter()
    ref = reference(seeds, args.users, args.epochs, args.items)
    runs: dict[str, dict] = {"in_process_no_prefect": {"seconds": round(time.perf_counter() - t0, 2)}}
    t0 = time.perf_counter()
    _warm_up()
    runs["prefect_server_start_not_counted"] = {"seconds": round(time.perf_counter() - t0, 2)}
    for name in ("sequential", "dask"):
        scale = ScaleParams(task_runner=name, dask_workers=args.dask_workers, torch_threads=1)
        seconds, got = _timed(scale, seeds, args)
        runs[name] = {"seconds": round(seconds, 2), "max_metric_difference_vs_in_process": largest_difference(ref, got)}
    report = {"command": f"python -m benchmarks.task_runners --seeds {args.seeds} --users {args.users} --items {args.items} --epochs {args.epochs} "
                         f"--dask-workers {args.dask_workers} --out {args.out}",
              "cores": os.cpu_count(), "load_average_before": load, "seeds": seeds, "models": list(MODELS),
              "protocols": list(PROTOCOLS), "fit_jobs": len(fit_jobs(PROTOCOLS, fit_order(MODELS), seeds, len(seeds))), "runs": runs}
    write_report(args.out, report)


if __name__ == "__main__":
    main()
