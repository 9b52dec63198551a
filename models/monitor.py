"""Stage `monitor`: does the population's interest mix drift between an early and a late window?

Compares, per active user, the category-share profile, the popularity mix of what they
consume and the selected model's top recommendation score, reference window vs current
window, with an Evidently data-drift report (HTML + JSON). The summary's ``retrain`` flag is
what a scheduler acts on.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from features import tracking
from features.cli import stage_main
from features.params import Params
from features.transforms import category_vocabulary
from models import artifacts
from models.data import ItemIndex, pad_left
from models.drift import drift_report, share_column, split_windows, window_profiles

log = logging.getLogger(__name__)


@torch.no_grad()
def top_scores(model: torch.nn.Module, interactions: pd.DataFrame, index: ItemIndex, users: list[str],
               end: pd.Timestamp, max_len: int) -> np.ndarray:
    """Each user's best recommendation score (history up to ``end``, seen items excluded)."""
    pos = index.pos
    past = interactions[interactions["ts"] < end]
    groups = dict(list(past.groupby("user_id", sort=False)))
    seq, ts, seen = [], [], []
    for u in users:
        g = groups[u]
        ids = g["item_id"].map(pos).fillna(0).astype(np.int64).to_numpy()
        seq.append(pad_left(ids, max_len))
        ts.append(pad_left(g["ts"].astype("int64").to_numpy() // 10**9, max_len))
        seen.append(np.unique(ids))
    scores = model.score_all(torch.as_tensor(np.array(seq)), torch.as_tensor(np.array(ts))).float().clone()
    scores[:, 0] = float("-inf")
    for b, s in enumerate(seen):
        scores[b, torch.as_tensor(s)] = float("-inf")
    return scores.max(1).values.numpy()


@dataclass
class MonitorResult:
    drift_share: float
    dataset_drift: bool
    retrain: bool
    drifted_columns: list[str]
    n_reference: int
    n_current: int

    def summary(self) -> dict:
        return self.__dict__


def run(params: Params) -> MonitorResult:
    mp = params.monitor
    raw = params.path(params.data.raw_dir)
    interactions = pd.read_parquet(raw / "interactions.parquet")
    items = pd.read_parquet(raw / "items.parquet")
    items["categories"] = items["categories"].map(list)
    categories = category_vocabulary(items)
    ref_start, ref_end, cur_start, cur_end = split_windows(interactions, mp.reference_fraction, mp.current_fraction)
    ref = window_profiles(interactions, items, ref_start, ref_end, categories)
    cur = window_profiles(interactions, items, cur_start, cur_end, categories)
    model_dir = params.path(params.train.out_dir)
    selected = json.loads(params.path(params.evaluate.out).read_text())["selected"]
    model = artifacts.load_models(model_dir)[selected]
    index = ItemIndex(tuple(artifacts.load_item_ids(model_dir)))
    ref["top_score"] = top_scores(model, interactions, index, ref["user_id"].tolist(), ref_end, params.train.max_len)
    cur["top_score"] = top_scores(model, interactions, index, cur["user_id"].tolist(), cur_end, params.train.max_len)
    numerical = [share_column(c) for c in categories] + ["popularity_pct", "top_score"]
    log.info("drift: reference %s..%s (%d users) vs current %s..%s (%d users)", ref_start, ref_end, len(ref), cur_start, cur_end, len(cur))
    summary = drift_report(ref, cur, params.path(mp.html), params.path(mp.json), numerical, ["dominant_category"], mp.drift_threshold)
    retrain = summary["drift_share"] >= mp.drift_threshold
    # the retrain decision is written beside Evidently's own results, for schedulers to read
    report = json.loads(params.path(mp.json).read_text())
    report["summary"].update({"retrain": retrain, "model": selected,
                              "windows": {"reference": [str(ref_start), str(ref_end)], "current": [str(cur_start), str(cur_end)]}})
    params.path(mp.json).write_text(json.dumps(report, indent=2, default=str))
    drifted = sorted(c for c, v in summary["columns"].items() if v["drifted"])
    params.path(mp.summary).write_text(json.dumps({"drift_share": summary["drift_share"], "retrain": retrain,
                                                   "drifted_columns": len(drifted), "n_columns": summary["n_columns"]}, indent=2))
    tracking.write_metrics(tracking.metrics_path(params.path(params.tracking.metrics_dir), "monitor"),
                           tracking.monitor_metrics({**summary, "retrain": retrain, "drifted_columns": len(drifted)}))
    log.info("drift share %.2f (%d/%d columns) -> retrain=%s", summary["drift_share"], len(drifted), summary["n_columns"], retrain)
    return MonitorResult(summary["drift_share"], bool(summary["dataset_drift"]), retrain, drifted, len(ref), len(cur))


def main() -> None:
    stage_main(run, "monitor: Evidently interest-drift report, reference vs current window")


if __name__ == "__main__":
    main()
