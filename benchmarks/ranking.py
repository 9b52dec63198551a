"""Ranking benchmark: every model under each protocol, several seeds, slices, ablations, timings.

    python -m benchmarks.ranking --dataset movielens-100k --seeds 3

Writes ``reports/benchmark-<dataset>.json`` and ``reports/benchmark-<dataset>.md``. Protocols
(``models/protocols.py``): leave-one-out by time with full ranking (../shared/BENCHMARK.md), a
global temporal split and cold items. Every finished fit goes to a fit log
(``benchmarks/fit_log.py``), so an interrupted run resumes with ``--resume``.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import threading
import time

import numpy as np
import pandas as pd
import torch

from benchmarks.finetuned import ROW, finetuned_row
from benchmarks.fit_jobs import FitJob, ablation_seed_count, fit_jobs, fit_order, merge_runs
from benchmarks.fit_log import FitLog, fit_key
from models.protocols import Split, split_for
from features import adapters
from core.cli import configure_logging, parse_overrides
from core.params import Params, TrainParams, load_params
from core.schema import validate
from models import baselines
from models.baselines import EASE
from models.data import item_category_matrix
from models.evaluate import metrics_for, n_items_of, rank_targets, slice_metrics
from models.fitting import BASELINES, SWITCHED, fit_models, shift_validation
from models.hybrid import Hybrid
from models.interest import InterestModel
from models.switch import SwitchGate
from models.train import encode_items, pick_device
from models.trend import trend_table

log = logging.getLogger(__name__)

# ablations of the interest model: name -> train params switched off
ABLATIONS = {
    "interest-no_text": {"use_text": False},
    "interest-no_id": {"use_id_embedding": False},
    "interest-no_time_decay": {"use_time_decay": False},
    "interest-no_long_term": {"use_long_term": False},
}


def _aggregate(runs: list[dict]) -> dict:
    """mean and std over seeds of every numeric leaf."""
    if not runs:
        return {}
    out: dict = {}
    for key, v in runs[0].items():
        if isinstance(v, dict):
            out[key] = _aggregate([r[key] for r in runs])
        elif isinstance(v, (int, float)):
            vals = np.array([r[key] for r in runs], dtype=float)
            out[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=0))}
    return out


def run_protocols(params: Params, protocols: dict[str, dict[str, dict]], interactions: pd.DataFrame, items: pd.DataFrame,
                  text_emb, models: tuple[str, ...], seeds: list[int], device: str, ablation_seeds: int | None = None,
                  fit_log: FitLog | None = None, jobs: int = 1) -> dict[str, dict]:
    """Each protocol (name -> its ablation rows) with every model, mean and std over ``seeds``.

    ``jobs > 1`` runs the seeds and ablation rows of all protocols as that many worker processes,
    each on its share of the CPU threads: fits are single-model and mostly single-thread bound, so
    on 2 cores two fits at once finish in about the time of one. One pool serves every protocol,
    in the order given (leave-one-out, the long one, first by default), so the short temporal fits
    fill the gap a worker would otherwise idle in while the other finishes the last long job.
    """
    n_ablation_seeds = ablation_seed_count(seeds, ablation_seeds)
    models = fit_order(models)
    if jobs <= 1:
        runs = {proto: _runs(params, proto, interactions, items, text_emb, models, seeds, abl, device, n_ablation_seeds, fit_log)
                for proto, abl in protocols.items()}
    else:
        runs = _parallel_runs(params, protocols, interactions, items, text_emb, models, seeds, device, n_ablation_seeds,
                              fit_log, jobs)
    return summarise(runs)


def summarise(runs: dict[str, tuple[int, dict, dict]]) -> dict[str, dict]:
    """Each protocol's report section: users, slice sizes, and mean and std over seeds per model
    (one function, so the process pool and the Prefect flow report alike)."""
    return {proto: {"users": users, "slice_users": slice_users, "models": {n: _aggregate(r) for n, r in per_model.items()}}
            for proto, (users, slice_users, per_model) in runs.items()}


def exit_with_parent(parent: int, every: float = 2.0) -> None:
    """Worker initializer: exit once the benchmark process that started this worker is gone
    (killed, out of memory). A pool's workers outlive a parent that dies without shutting the pool
    down, and would otherwise train on for many minutes with nobody to collect the result."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_job(params: Params, job: FitJob, interactions: pd.DataFrame, items: pd.DataFrame, text_emb, device: str,
            fit_log: FitLog | None = None, threads: int = 0) -> tuple[int, dict, dict]:
    """One job of ``fit_jobs`` in this process (a pool worker, a Dask worker, or the flow's own),
    on ``threads`` torch threads (0: leave torch's setting), so that jobs running side by side
    share the cores instead of each spinning up one thread per core."""
    if threads > 0:
        torch.set_num_threads(threads)
    return _runs(params, job.protocol, interactions, items, text_emb, job.models, [job.seed], job.ablations, device, 1, fit_log)


def _job(args: tuple) -> tuple[int, dict, dict]:
    """One worker process's share of ``_parallel_runs`` (module level, so spawn can import it)."""
    configure_logging()
    return run_job(*args)


def _parallel_runs(params: Params, protocols: dict[str, dict[str, dict]], interactions: pd.DataFrame, items: pd.DataFrame,
                   text_emb, models: tuple[str, ...], seeds: list[int], device: str, n_ablation_seeds: int,
                   fit_log: FitLog | None, jobs: int) -> dict[str, tuple[int, dict, dict]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    tasks = fit_jobs(protocols, models, seeds, n_ablation_seeds)
    threads = max(1, torch.get_num_threads() // jobs)
    args = [(params, job, interactions, items, text_emb, device, fit_log, threads) for job in tasks]
    log.info("%d jobs (%s) on %d worker processes, %d thread(s) each", len(tasks), ", ".join(protocols), jobs, threads)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        results = list(pool.map(_job, args))
    return merge_runs(protocols, models, seeds, tasks, results)


def _runs(params: Params, protocol: str, interactions: pd.DataFrame, items: pd.DataFrame, text_emb, models: tuple[str, ...],
          seeds: list[int], ablations: dict[str, dict], device: str, n_ablation_seeds: int,
          fit_log: FitLog | None) -> tuple[int, dict, dict]:
    """Test users, slice sizes, and every fit's metrics per model (a list over seeds)."""
    sp = split_for(protocol, interactions, items, text_emb, params.train)
    run = _Run(params, protocol, sp, models, device)
    per_model: dict[str, list[dict]] = {}
    variants = [(m, {}) for m in models] + [(name, over) for name, over in ablations.items()]
    for s_i, seed in enumerate(seeds):
        run.reusable = {n: m for n, m in run.reusable.items() if n in BASELINES}  # baselines do not depend on the seed
        for name, over in variants:
            if name in ablations and s_i >= n_ablation_seeds:
                continue
            base = "interest" if name.startswith("interest-") else name
            if base in BASELINES and seed != seeds[0]:
                per_model[name].append(per_model[name][0])  # deterministic baselines: one fit serves all seeds
                continue
            if fit_log is not None and (res := fit_log.get(protocol, name, seed)) is not None:
                per_model.setdefault(name, []).append(res)
                log.info("[%s seed %d] %-24s from the fit log", protocol, seed, name)
                continue
            res = run.fit_and_test(name, base, over, seed)
            per_model.setdefault(name, []).append(res)
            if fit_log is not None:
                fit_log.add(protocol, name, seed, res)
    return int(len(sp.test.targets)), {n: int(m.sum()) for n, m in run.masks.items()}, per_model


class _Run:
    """One protocol's fits in one process: the split, what every fit shares, and this seed's
    default models, which the hybrid and the switch-gated models are built from."""

    def __init__(self, params: Params, protocol: str, sp: Split, models: tuple[str, ...], device: str) -> None:
        self.tp, self.k, self.protocol, self.sp, self.device = params.train, params.evaluate.k, protocol, sp, device
        self.fit_index, self.fit_text = sp.fit_catalogue()  # cold: train on the warm catalogue
        self.shift_valid = shift_validation(sp.seqs, self.fit_text, self.tp) if any(m in SWITCHED for m in models) else None
        self.fit_categories = item_category_matrix([list(c) for c in sp.items["categories"]][: len(self.fit_index)])  # cold: the warm items
        self.masks = sp.test_masks()
        self.reusable: dict[str, torch.nn.Module] = {}  # this seed's default models: the hybrid is built from them
        self.seconds_of: dict[str, float] = {}

    def fit_and_test(self, name: str, base: str, over: dict, seed: int) -> dict:
        """Fit ``base`` (with the ablation ``over``) for ``seed``; its test metrics per slice and fit facts."""
        tpv = dataclasses.replace(self.tp, seed=seed, **over)
        fitted, fits, seconds = self._fit(base, over, tpv)
        model = self._test_model(fitted[base], base, tpv)
        k = self.k
        ranks, top = rank_targets(model, self.sp.test, k)  # on the model's device: fit_models returns them on the CPU
        n_items = n_items_of(model)
        res = {"all": metrics_for(ranks, top, k, n_items), **slice_metrics(ranks, top, self.masks, k, n_items)}
        res["train_seconds"] = seconds
        res["best_epoch"] = fits[base].best_epoch if base in fits else 0
        if base == "hybrid":
            res["hybrid_weights"] = fitted[base].weights
        if isinstance(model, EASE):
            res["ease_lambda"] = model.lam
        if base in SWITCHED:
            res["switch_prior"] = fitted[base].cfg.prior
        log.info("[%s seed %d] %-24s ndcg@%d %.4f hr@%d %.4f (%.0f s)", self.protocol, seed, name, k, res["all"][f"ndcg@{k}"],
                 k, res["all"][f"hr@{k}"], seconds)
        return res

    def _fit(self, base: str, over: dict, tpv: TrainParams) -> tuple[dict, dict, float]:
        """The fitted models, their fit results and ``base``'s seconds, the cost of the models it
        reuses included; a default (not ablated) fit is kept for the models built from it."""
        reuse = {} if over else self.reusable
        t0 = time.time()
        fitted, fits = fit_models((base,), self.sp.train_df, self.fit_index, self.fit_text, self.sp.windows, self.sp.valid, tpv,
                                  self.device, self.k, prefitted=reuse, shift_valid=self.shift_valid,
                                  item_categories=self.fit_categories)
        seconds = time.time() - t0
        if base == "hybrid":  # its cost includes the models it is built from, fitted before or in this call
            seconds += sum(self.seconds_of[c] for c in ("interest", *self.tp.hybrid_with) if c in reuse)
        if base in SWITCHED and SWITCHED[base] in reuse:  # and a gated model the cost of its base
            seconds += self.seconds_of[SWITCHED[base]]
        if not over:
            self.reusable.update(fitted)
            self.seconds_of.update({n: seconds if n == base else fits[n].seconds if n in fits else 0.0 for n in fitted})
        return fitted, fits, seconds

    def _test_model(self, model: torch.nn.Module, base: str, tpv: TrainParams) -> torch.nn.Module:
        """The fitted model as the protocol tests it: refit seed-free parts (temporal), EASE on
        train + valid (leave-one-out), the held-out items added (cold)."""
        sp = self.sp
        if sp.refit_df is not None:
            model = _for_test(model, base, sp.refit_df, sp.index, sp.text_emb, tpv, self.device)
        if sp.ease_test_df is not None and isinstance(model, EASE):
            model = baselines.ease(sp.ease_test_df, sp.index, model.lam)
        if sp.cold is not None:  # then add the held-out items as POST /items does (to a copy: the hybrid reuses the original)
            model = copy.deepcopy(model)
            model.add_items(sp.cold[2])
        return model


def _for_test(model: torch.nn.Module, name: str, train: pd.DataFrame, index, text_emb, tp, device: str) -> torch.nn.Module:
    """The temporal test's version of a model fitted up to the validation cut-off: models without
    training or early stopping (popularity, recent popularity, item-kNN, and so the hybrid's
    components, with its validated weights) are refit on every event before the test cut-off, so
    that recent popularity counts the days right before it; neural models keep their weights, and
    a trend prior's table (data, not weights) counts those days too."""
    if isinstance(model, EASE):  # refit with the regularisation picked on validation
        return baselines.ease(train, index, model.lam)
    if name in BASELINES:
        return fit_models((name,), train, index, text_emb, None, None, tp, device)[0][name]
    if isinstance(model, SwitchGate):
        return SwitchGate(_for_test(model.base, model.base_name, train, index, text_emb, tp, device), model.cfg, model.base_name)
    if isinstance(model, Hybrid):  # its components refit as above (EASE with the regularisation it picked)
        parts = {c: _for_test(m, c, train, index, text_emb, tp, device) for c, m in model.components.items()}
        return Hybrid(_for_test(model.base, "interest", train, index, text_emb, tp, device), parts, model.weights, model.eps)
    if isinstance(model, InterestModel) and model.cfg.use_trend:
        model = copy.deepcopy(model)  # the hybrid of this seed is built from the original
        model.set_trend(*trend_table(train, index, tp.trend_days))
    return model


def markdown(report: dict, k: int = 10) -> str:
    lines = [f"# Benchmark: {report['dataset']}", "", f"Command: `{report['command']}`", "",
             f"{report['n_users']} users, {report['n_items']} items, {report['n_interactions']} interactions; seeds {report['seeds']}; "
             f"device {report['device']}; total {report['seconds']:.0f} s. Mean ± std over seeds (ablation rows: "
             f"{report.get('ablation_seeds', len(report['seeds']))} seed(s)); test split.", ""]
    for proto, title in (("loo", "Leave-one-out, full ranking"), ("temporal", "Global temporal split (cut-off at the 90th percentile)"),
                         ("cold", "Cold items (10% of the catalogue held out of training; test = users whose last item is one of them)")):
        if proto not in report["protocols"]:
            continue
        p = report["protocols"][proto]
        lines += [f"## {title}", "", f"{p['users']} test users; slices: " + ", ".join(f"{n} {c}" for n, c in p["slice_users"].items()), "",
                  f"| model | HR@{k} | NDCG@{k} | MRR | coverage@{k} | cold-item HR@{k} | interest-shift NDCG@{k} | short-history NDCG@{k} | train s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, m in p["models"].items():
            def f(sl: str, key: str) -> str:
                v = m.get(sl, {}).get(key)
                return f"{v['mean']:.4f} ± {v['std']:.4f}" if v else "n/a"
            lines.append(f"| {name} | {f('all', f'hr@{k}')} | {f('all', f'ndcg@{k}')} | {f('all', 'mrr')} | {f('all', f'coverage@{k}')} | "
                         f"{f('cold_item', f'hr@{k}')} | {f('interest_shift', f'ndcg@{k}')} | {f('short_history', f'ndcg@{k}')} | "
                         f"{m['train_seconds']['mean']:.0f} |")
        for name, m in p["models"].items():
            if m.get("hybrid_weights"):
                lines += ["", f"{name} weights picked on validation, mean over seeds: " +
                          ", ".join(f"{c} {w['mean']:.2f}" for c, w in m["hybrid_weights"].items())]
        lines.append("")
    return "\n".join(lines)


DEFAULT_MODELS = ",".join(TrainParams().models)  # the pipeline's default list (params.yaml's train.models holds the same; a test checks they agree)


def main() -> None:
    ap = argparse.ArgumentParser(description="benchmark every model under one protocol")
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--protocols", default="loo,temporal", help="comma-separated: loo, temporal, cold")
    ap.add_argument("--models", default=DEFAULT_MODELS,
                    help="comma-separated; empty (--models '') runs only the ablation rows")
    ap.add_argument("--no-ablations", action="store_true")
    ap.add_argument("--ablation-seeds", type=int, default=1, help="seeds for the ablation rows (each costs a full interest-model fit)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes: seeds and ablation rows run in parallel (2 on a 2-core machine)")
    ap.add_argument("--device", default="")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="reports")
    ap.add_argument("--resume", action="store_true", help="reuse the fits of an interrupted run with the same settings")
    ap.add_argument("--finetuned", action="store_true", help="add the row interest-finetuned (leave-one-out): the encoder "
                    "fine-tuned for encoder.finetune_steps on the training events (benchmarks/finetuned.py)")
    args = ap.parse_args()
    configure_logging()
    over = {"data.dataset": args.dataset, **parse_overrides(args.set)}
    if args.device:
        over["train.device"] = args.device
    params = load_params(args.params, over)
    t0 = time.time()
    raw_int, raw_items, _ = adapters.load(params)
    v = validate(raw_int, raw_items)
    device = pick_device(params.train.device)
    text_emb = encode_items(params, v.items, device)
    seeds = [params.train.seed + i for i in range(args.seeds)]
    ablations = {} if args.no_ablations else ABLATIONS
    report = {"dataset": args.dataset, "command": "python -m benchmarks.ranking " + " ".join(_argv()), "seeds": seeds, "device": device,
              "ablation_seeds": min(args.ablation_seeds, args.seeds), "n_users": int(v.interactions["user_id"].nunique()), "n_items": len(v.items), "n_interactions": len(v.interactions),
              "train_params": dataclasses.asdict(params.train), "encoder": params.encoder.model_name, "protocols": {}}
    out = params.path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = fit_key(args.dataset, params)
    fit_log = FitLog(out / f"benchmark-{args.dataset}.fits.jsonl", key, args.resume)
    protocols = {proto: ablations if proto == "loo" else {} for proto in args.protocols.split(",")}
    report["protocols"] = run_protocols(params, protocols, v.interactions, v.items, text_emb,
                                        tuple(m for m in args.models.split(",") if m), seeds, device, args.ablation_seeds,
                                        fit_log, args.jobs)
    if args.finetuned and "loo" in protocols:
        report["protocols"]["loo"]["models"][ROW], report["finetune"] = finetuned_row(
            params, v.interactions, v.items, seeds, device, out, args.dataset, args.resume)
    report["seconds"] = time.time() - t0
    (out / f"benchmark-{args.dataset}.json").write_text(json.dumps(report, indent=2))
    (out / f"benchmark-{args.dataset}.md").write_text(markdown(report, params.evaluate.k))
    print(markdown(report, params.evaluate.k))


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
