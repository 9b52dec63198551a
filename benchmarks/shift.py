"""Interest-shift benchmark: how many new events until the top-10 follows a user's new interest?

Two modes, one set of figures (``models.shift``: events until half the top-10 is in the new
interest, the new-interest share after 1/3/5/10 events, next-event HR@10 over all post-switch
steps), each beside two reference rows, a static profile and the three-line heuristic
"most popular items of the majority category of the last 3 events":

    python -m benchmarks.shift                      # the packaged pipeline model on the pipeline's data (after make run)
    python -m benchmarks.shift --stationary         # fresh models trained on data without switches, switches replayed after

``--stationary`` is the public check of pulse's central promise: for each generator
(``--generators media,shop``: two vocabularies and behaviour models) and seed, the synthetic
generator keeps every training history on one interest (``switch_in_training: false``) and holds
each switching user's switch episode out; models are trained on the rest and the episodes are
replayed one event at a time. The default mode uses the data's ground truth when it has one
(the synthetic generator), else switches detected from the category mix (any dataset with
categories), and says which.

Replays score the history plus the new events with the models' own code, exactly what
``POST /events`` then ``POST /recommend`` computes from the online store (whose history holds the
same events, up to ``features.history_len``); ``benchmarks/http_latency.py`` times that path
over HTTP.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from features.adapters import synthetic
from core.cli import configure_logging, parse_overrides
from core.params import Params, load_params
from models import artifacts, baselines
from models.data import item_category_matrix, item_index, leave_one_out, train_interactions, user_sequences, windows_from_sequences
from models.fitting import fit_models, shift_validation
from models.shift import (Episode, RecentMajority, StaticProfile, detect_episodes, episodes_from_truth, primary_categories,
                          replay)
from models.train import encode_items, pick_device

log = logging.getLogger(__name__)

DEFAULT_MODELS = "hybrid_switch,interest_switch,hybrid,interest"


def reference_models(items: pd.DataFrame, train: pd.DataFrame, text_emb: torch.Tensor) -> dict[str, torch.nn.Module]:
    """The two reference rows: recency-blind static profile and the last-3 majority heuristic."""
    index = item_index(items)
    primary = primary_categories(items["categories"])
    cats = sorted(set(primary.values()))
    code = torch.tensor([-1] + [cats.index(primary[i]) if i in primary else -1 for i in range(1, len(index) + 1)])
    return {"static_profile": StaticProfile(text_emb), "last3_heuristic": RecentMajority(code, baselines.popularity(train, index).scores)}


def evaluate_rows(models: dict[str, torch.nn.Module], episodes: list[Episode], items: pd.DataFrame, max_len: int) -> dict[str, dict]:
    primary = primary_categories(items["categories"])
    out = {}
    for name, model in models.items():
        t0 = time.time()
        out[name] = replay(model.eval(), episodes, primary, max_len)
        log.info("%-18s median %.0f p90 %.0f never %.3f HR@10 %.4f (%.0f s)", name, out[name]["median_events_to_half"],
                 out[name]["p90_events_to_half"], out[name]["never_share"], out[name]["next_event_hr@10"], time.time() - t0)
    return out


def stationary_run(params: Params, vocabulary: str, seed: int, names: tuple[str, ...], max_events: int) -> dict:
    """Generate stationary training data, train ``names``, replay the held-out switch episodes."""
    sp = dataclasses.replace(params.ingest.synthetic, switch_in_training=False, vocabulary=vocabulary, seed=seed,
                             held_out_events=max_events)
    inter, items, truth = synthetic.generate(sp)
    inter["ts"] = pd.to_datetime(inter["ts"], unit="s", utc=True)
    tp = dataclasses.replace(params.train, seed=seed)
    device = pick_device(tp.device)
    index = item_index(items)
    text_emb = encode_items(params, items, device)
    seqs = user_sequences(inter, index)
    train = train_interactions(inter)
    t0 = time.time()
    fitted, _ = fit_models(names, train, index, text_emb, windows_from_sequences(seqs, tp.max_len, holdout=2),
                           leave_one_out(seqs, "valid", tp.max_len), tp, device, params.evaluate.k,
                           shift_valid=shift_validation(seqs, text_emb, tp), item_categories=item_category_matrix(list(items["categories"])))
    fit_seconds = time.time() - t0
    episodes = episodes_from_truth(truth, index.pos, max_events)
    rows = evaluate_rows({**reference_models(items, train, text_emb), **{n: fitted[n] for n in names}}, episodes, items, tp.max_len)
    return {"generator": vocabulary, "seed": seed, "users": sp.n_users, "items": sp.n_items, "events": len(inter),
            "switching_users": len(episodes), "fit_seconds": round(fit_seconds, 1), "episodes_from": "held-out ground truth",
            "rows": rows, "switch_priors": {n: fitted[n].cfg.prior for n in names if hasattr(fitted[n], "cfg") and hasattr(fitted[n].cfg, "prior")}}


def artifact_run(params: Params, names: tuple[str, ...], max_events: int, max_users: int | None) -> dict:
    """The packaged model (the artifact the pipeline trained) on the pipeline's own data."""
    raw = params.path(params.data.raw_dir)
    inter = pd.read_parquet(raw / "interactions.parquet")
    items = pd.read_parquet(raw / "items.parquet")
    items["categories"] = items["categories"].map(list)
    model_dir = params.path(params.train.out_dir)
    present = artifacts.load_models(model_dir)
    chosen = [n for n in names if n in present]
    if not chosen:
        raise SystemExit(f"none of --models {','.join(names)} is in {model_dir} (has {sorted(present)})")
    index = item_index(items)
    if (raw / "ground_truth.parquet").exists():
        episodes, source = episodes_from_truth(pd.read_parquet(raw / "ground_truth.parquet"), index.pos, max_events, max_users), "ground truth"
    else:
        episodes = detect_episodes(user_sequences(inter, index), primary_categories(items["categories"]), max_events, max_users=max_users)
        source = "detected from the category mix (no ground truth): the first point where 3 of the next 5 events share a category that was under 10% of the history"
    if not episodes:
        raise SystemExit("no interest switches to replay: the data has no ground truth and no switch shows in its category mix")
    text_emb = artifacts.load_text_embeddings(model_dir)
    train = train_interactions(inter)
    rows = evaluate_rows({**reference_models(items, train, text_emb), **{n: present[n] for n in chosen}}, episodes, items,
                         params.train.max_len)
    return {"dataset": params.data.dataset, "switching_users": len(episodes), "episodes_from": source, "rows": rows}


def pooled(runs: list[dict]) -> dict[str, dict]:
    """Per row, the figures pooled over runs: medians/p90/never over all episodes' users is not
    recoverable from summaries, so the pooled row reports the mean of each figure, weighted by users."""
    out: dict[str, dict] = {}
    for name in runs[0]["rows"]:
        rs = [r["rows"][name] for r in runs]
        w = np.array([r["users"] for r in rs], dtype=float)
        avg = lambda key: round(float(np.average([r[key] for r in rs], weights=w)), 4)  # noqa: E731
        out[name] = {"users": int(w.sum()), "median_events_to_half": avg("median_events_to_half"),
                     "p90_events_to_half": avg("p90_events_to_half"), "never_share": avg("never_share"),
                     "next_event_hr@10": avg("next_event_hr@10"),
                     "new_interest_share_after": {n: round(float(np.average([r["new_interest_share_after"][n] for r in rs], weights=w)), 4)
                                                  for n in rs[0]["new_interest_share_after"]}}
    return out


def markdown(report: dict) -> str:
    lines = [f"# Interest-shift benchmark ({report['mode']})", "", f"Command: `{report['command']}`", ""]
    lines += [f"Pooled from: `{c}`" for c in report.get("pooled_from", [])] + ([""] if report.get("pooled_from") else [])
    sections = [(f"{r.get('generator', r.get('dataset'))}" + (f", seed {r['seed']}" if "seed" in r else ""), r) for r in report["runs"]]
    if len(report["runs"]) > 1:
        sections.append(("pooled (user-weighted mean of each figure)", {"rows": report["pooled"]}))
    for title, run in sections:
        lines += [f"## {title}", ""]
        if "episodes_from" in run:
            lines += [f"{run['switching_users']} switching users; episodes: {run['episodes_from']}.", ""]
        lines += ["| model | events to half the top-10 (median / p90) | never within cap | new-interest share after 1 / 3 / 5 / 10 | next-event HR@10 |",
                  "|---|---|---|---|---|"]
        for name, m in run["rows"].items():
            share = " / ".join(f"{m['new_interest_share_after'][n]:.2f}" for n in ("1", "3", "5", "10"))
            lines.append(f"| {name} | {m['median_events_to_half']:g} / {m['p90_events_to_half']:g} | {m['never_share']:.1%} | {share} | "
                         f"{m['next_event_hr@10']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="events needed until recommendations follow an interest switch")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a param, e.g. ingest.synthetic.events_per_user=100")
    ap.add_argument("--stationary", action="store_true", help="train on switch-free synthetic data and replay held-out switches")
    ap.add_argument("--generators", default="media,shop", help="--stationary: synthetic vocabularies")
    ap.add_argument("--seeds", default="7,11", help="--stationary: generator (and training) seeds")
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--max-events", type=int, default=20, help="new-interest events replayed per user (the cap)")
    ap.add_argument("--users", type=int, default=0, help="at most this many switching users (0: all)")
    ap.add_argument("--out", default="", help="default: reports/shift-<mode>.json (and .md)")
    ap.add_argument("--pool", default="", metavar="A.json,B.json",
                    help="no run: pool the runs of earlier reports (e.g. one seed each) into one report")
    args = ap.parse_args()
    configure_logging()
    params = load_params(args.params, parse_overrides(args.set))
    names = tuple(m for m in args.models.split(",") if m)
    mode = "stationary" if args.stationary else "artifact"
    report: dict = {"mode": mode, "command": "python -m benchmarks.shift " + " ".join(sys.argv[1:])}
    if args.pool:
        earlier = [json.loads(Path(p).read_text()) for p in args.pool.split(",") if p]
        mode = "pooled " + ", ".join(sorted({e["mode"] for e in earlier}))
        report = {"mode": mode, "command": report["command"], "pooled_from": [e["command"] for e in earlier],
                  "runs": [r for e in earlier for r in e["runs"]]}
    elif args.stationary:
        report["runs"] = [stationary_run(params, g, int(s), names, args.max_events)
                          for g in args.generators.split(",") for s in args.seeds.split(",")]
    else:
        report["runs"] = [artifact_run(params, names, args.max_events, args.users or None)]
    report["pooled"] = pooled(report["runs"])
    out = params.path(args.out or f"reports/shift-{mode.replace(' ', '-').replace(',', '')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
