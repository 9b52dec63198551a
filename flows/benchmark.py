"""The ranking benchmark as a Prefect flow: each fit job (one protocol's seed, or one ablation row)
is a task, run on the task runner that params.yaml's ``scale`` section names.

    python -m flows.benchmark --dataset movielens-100k --seeds 3                                # sequential
    python -m flows.benchmark --dataset movielens-100k --seeds 3 --set scale.task_runner=dask   # local Dask cluster
    python -m flows.benchmark ... --set scale.task_runner=dask --set scale.dask_address=tcp://HOST:8786

Why a flow beside ``python -m benchmarks.ranking --jobs N``: the process pool stops at one
machine's cores; a Dask cluster spreads the same jobs (``benchmarks/fit_jobs.py``) over workers on
other machines, and the Prefect UI shows each fit as a task run. Both report the same numbers
for the same seeds. Writes ``reports/benchmark-<dataset>.json`` and ``.md`` as the script does.
"""
from __future__ import annotations

from flows.console import local_prefect_env, quiet_warnings, show_project_logs

local_prefect_env()  # before prefect is imported: it reads its settings once, at import

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import pandas as pd  # noqa: E402
from prefect import flow, get_client, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner  # noqa: E402

from benchmarks.fit_jobs import FitJob, ablation_seed_count, fit_jobs, fit_order, merge_runs  # noqa: E402
from benchmarks.ranking import ABLATIONS, DEFAULT_MODELS, markdown, run_job, summarise  # noqa: E402
from core.cli import parse_overrides  # noqa: E402
from core.params import Params, ScaleParams, load_params  # noqa: E402

log = logging.getLogger("flows.benchmark")  # not __name__: run as `python -m flows.benchmark` it is __main__, outside the project loggers

TASK_RUNNERS = ("sequential", "dask")


def task_runner(scale: ScaleParams, worker_env: dict[str, str] | None = None) -> TaskRunner:
    """The runner ``scale.task_runner`` names. Sequential is one worker thread, not a pool: every
    fit seeds the process-wide torch and numpy generators, so two fits in threads of one process
    would draw from each other's streams and the numbers would no longer follow from the seed.
    ``worker_env`` goes to a local cluster's worker processes (the Prefect API they report to)."""
    if scale.task_runner == "sequential":
        return ThreadPoolTaskRunner(max_workers=1)
    if scale.task_runner != "dask":
        raise ValueError(f"scale.task_runner must be one of {TASK_RUNNERS}, got {scale.task_runner!r}")
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as e:
        raise RuntimeError("scale.task_runner dask needs prefect-dask: pip install -e '.[dask]'") from e
    if scale.dask_address:
        return DaskTaskRunner(address=scale.dask_address)
    # one task per worker process at a time, as the --jobs pool: fits are mostly single-thread bound
    return DaskTaskRunner(cluster_kwargs={"n_workers": scale.dask_workers, "threads_per_worker": 1, "processes": True,
                                          "env": dict(worker_env or {})})


def job_threads(scale: ScaleParams, cores: int | None = None) -> int:
    """Torch threads per task (0: leave torch's default): on a local cluster the cores shared out
    among the worker processes, so that two fits side by side do not fight over every core."""
    if scale.torch_threads > 0:
        return scale.torch_threads
    if scale.task_runner == "dask" and not scale.dask_address:
        return max(1, (cores or os.cpu_count() or 1) // max(1, scale.dask_workers))
    return 0


def prefect_api_env(scale: ScaleParams) -> dict[str, str]:
    """The Prefect API this flow run reports to, for Dask workers to report their task runs to.
    Without it each worker process of a local cluster starts a temporary server of its own (half
    a minute each here) when no PREFECT_API_URL is set; workers of a remote cluster cannot reach
    this machine's temporary server at all, so they need a real one (``prefect server start``)."""
    if scale.task_runner != "dask":
        return {}
    if scale.dask_address and not os.environ.get("PREFECT_API_URL"):
        log.warning("Dask cluster %s: no PREFECT_API_URL set, so its workers report to temporary Prefect servers of "
                    "their own; start `prefect server start` and set PREFECT_API_URL here and on the workers", scale.dask_address)
    with get_client(sync_client=True) as client:
        return {"PREFECT_API_URL": str(client.api_url).rstrip("/")}


@task(name="benchmark-fit", cache_policy=NO_CACHE, task_run_name="{job.label}")
def fit_task(params: Params, job: FitJob, interactions: pd.DataFrame, items: pd.DataFrame, text_emb: Any, device: str,
             threads: int) -> tuple[int, dict, dict]:
    """One fit job; on a Dask worker too, where this module is imported anew (hence the logs set up
    here). No cache: the inputs are whole tables, and a benchmark is run to fit again."""
    show_project_logs()
    return run_job(params, job, interactions, items, text_emb, device, None, threads)


def run_fits(scale: ScaleParams, params: Params, protocols: dict[str, dict[str, dict]], interactions: pd.DataFrame,
             items: pd.DataFrame, text_emb: Any, models: tuple[str, ...], seeds: list[int], device: str,
             ablation_seeds: int | None = None) -> dict[str, dict]:
    """What ``benchmarks.ranking.run_protocols`` returns, each job a task on ``scale``'s runner
    (call it in a flow, so that the task runs belong to its run). The runner is entered here, not
    set on the flow, because params.yaml, read inside the flow, chooses it."""
    models = fit_order(models)
    jobs = fit_jobs(protocols, models, seeds, ablation_seed_count(seeds, ablation_seeds))
    runner, threads = task_runner(scale, prefect_api_env(scale)), job_threads(scale)
    log.info("%d fit jobs (%s) on the %s task runner", len(jobs), ", ".join(protocols), scale.task_runner)
    with runner:
        futures = [runner.submit(fit_task, {"params": params, "job": job, "interactions": interactions, "items": items,
                                            "text_emb": text_emb, "device": device, "threads": threads}) for job in jobs]
        results = [f.result() for f in futures]
    return summarise(merge_runs(protocols, models, seeds, jobs, results))


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """The benchmark's own settings (the ``benchmarks.ranking`` flags of the same names)."""

    seeds: int = 3
    protocols: str = "loo,temporal"
    models: str = DEFAULT_MODELS
    ablations: bool = True
    ablation_seeds: int = 1
    out: str = "reports"


def _load(params: Params) -> tuple[Any, Any, str]:
    """The validated tables, the items' text embeddings and the device, as the benchmark script loads them."""
    from features import adapters
    from core.schema import validate
    from models.train import encode_items, pick_device

    raw_int, raw_items, _ = adapters.load(params)
    v = validate(raw_int, raw_items)
    device = pick_device(params.train.device)
    return v, encode_items(params, v.items, device), device


def _report(params: Params, v: Any, device: str, seeds: list[int], opts: BenchOptions) -> dict:
    """The report's header, with the keys ``benchmarks.ranking.markdown`` reads."""
    return {"dataset": params.data.dataset, "command": "python -m flows.benchmark " + " ".join(sys.argv[1:]), "seeds": seeds,
            "device": device, "ablation_seeds": min(opts.ablation_seeds, opts.seeds), "task_runner": params.scale.task_runner,
            "n_users": int(v.interactions["user_id"].nunique()), "n_items": len(v.items), "n_interactions": len(v.interactions),
            "train_params": dataclasses.asdict(params.train), "encoder": params.encoder.model_name, "protocols": {}}


@flow(name="benchmark")
def benchmark_flow(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None,
                   options: BenchOptions | None = None) -> dict:
    """Every model under each protocol, several seeds, and the ablation rows, on ``scale.task_runner``;
    writes the report files and returns the report."""
    show_project_logs()
    opts, t0 = options or BenchOptions(), time.time()
    params = load_params(params_path, overrides)
    v, text_emb, device = _load(params)
    seeds = [params.train.seed + i for i in range(opts.seeds)]
    report = _report(params, v, device, seeds, opts)
    protocols = {p: ABLATIONS if p == "loo" and opts.ablations else {} for p in opts.protocols.split(",")}
    report["protocols"] = run_fits(params.scale, params, protocols, v.interactions, v.items, text_emb,
                                   tuple(m for m in opts.models.split(",") if m), seeds, device, opts.ablation_seeds)
    report["seconds"] = time.time() - t0
    out = params.path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"benchmark-{params.data.dataset}.json").write_text(json.dumps(report, indent=2))
    (out / f"benchmark-{params.data.dataset}.md").write_text(markdown(report, params.evaluate.k))
    log.info("benchmark done in %.0f s on the %s task runner: %s", report["seconds"], params.scale.task_runner,
             out / f"benchmark-{params.data.dataset}.md")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description="the ranking benchmark as a Prefect flow, one task per fit job")
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--protocols", default="loo,temporal", help="comma-separated: loo, temporal, cold")
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated; empty runs only the ablation rows")
    ap.add_argument("--no-ablations", action="store_true")
    ap.add_argument("--ablation-seeds", type=int, default=1)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. scale.task_runner=dask")
    ap.add_argument("--out", default="reports")
    args = ap.parse_args()
    quiet_warnings()
    show_project_logs()
    opts = BenchOptions(args.seeds, args.protocols, args.models, not args.no_ablations, args.ablation_seeds, args.out)
    benchmark_flow(args.params, {"data.dataset": args.dataset, **parse_overrides(args.set)}, opts)


if __name__ == "__main__":
    main()
