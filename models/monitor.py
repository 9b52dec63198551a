"""Stage `monitor`: does the population's interest mix drift between an early and a late window?

Compares, per active user, the category-share profile, the popularity mix of what they
consume and the selected model's top recommendation score, reference window vs current
window, with an Evidently data-drift report, and writes a page a product owner reads
(``models/drift_page.py``): the dated category mix week by week, per-interest drift, the
recommendation mix and the decision in words, with Evidently's statistics beneath.

The summary's ``retrain`` flag is what a scheduler acts on. It is calibrated on a no-drift
control: the same windows with the events' time order shuffled show how many columns Evidently
flags by chance (most of them, on windows of unequal activity); a retrain needs the real drift
share to reach that plus ``monitor.control_margin`` (and ``monitor.drift_threshold``).
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core import tracking
from core.cli import stage_main
from core.params import MonitorParams, Params
from features.transforms import category_vocabulary
from models import artifacts
from models.data import ItemIndex, pad_left
from models.metrics import mask_seen
from models import drift_page
from models.drift import share_column, split_windows, window_profiles
from models.drift_report import drift_report
from models.interest_mix import category_mix, category_mix_over_time, interest_drift_table, retrain_threshold, shuffle_time

log = logging.getLogger(__name__)


@torch.no_grad()
def recommend(model: torch.nn.Module, interactions: pd.DataFrame, index: ItemIndex, users: list[str],
              end: pd.Timestamp, max_len: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Each user's best recommendation score and top-``k`` item indices (history up to ``end``,
    seen items excluded): the score feeds the drift columns, the items the recommendation mix."""
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
    scores = mask_seen(model.score_all(torch.as_tensor(np.array(seq)), torch.as_tensor(np.array(ts))).float().clone(), seen)
    top = scores.topk(min(k, scores.shape[1] - 1), dim=1)
    return top.values[:, 0].numpy(), top.indices.numpy()


def recommendation_mix(top_items: np.ndarray, index: ItemIndex, items: pd.DataFrame, categories: list[str]) -> pd.Series:
    """Share of the recommendation slots per category (an item in k categories counts 1/k each)."""
    ids = [index.ids[i - 1] for i in top_items.ravel() if i > 0]
    recs = pd.DataFrame({"item_id": ids, "ts": pd.Timestamp(0, tz="UTC")})
    return category_mix(recs, items, categories)


@dataclass
class MonitorResult:
    drift_share: float
    dataset_drift: bool
    retrain: bool
    drifted_columns: list[str]
    n_reference: int
    n_current: int
    control_drift_share: float | None = None
    retrain_threshold: float = 0.0

    def summary(self) -> dict:
        return self.__dict__


@dataclass
class Windowed:
    """One drift comparison: per-user profiles of both windows, with the model's top scores."""
    ref: pd.DataFrame
    cur: pd.DataFrame
    ref_top: np.ndarray
    cur_top: np.ndarray


def profiles(interactions: pd.DataFrame, items: pd.DataFrame, categories: list[str], windows: tuple, model: torch.nn.Module,
             index: ItemIndex, max_len: int, k: int) -> Windowed:
    """Profiles of the reference and current windows plus each user's top score and top-k items."""
    ref_start, ref_end, cur_start, cur_end = windows
    ref = window_profiles(interactions, items, ref_start, ref_end, categories)
    cur = window_profiles(interactions, items, cur_start, cur_end, categories)
    ref["top_score"], ref_top = recommend(model, interactions, index, ref["user_id"].tolist(), ref_end, max_len, k)
    cur["top_score"], cur_top = recommend(model, interactions, index, cur["user_id"].tolist(), cur_end, max_len, k)
    return Windowed(ref, cur, ref_top, cur_top)


def control_share(interactions: pd.DataFrame, items: pd.DataFrame, categories: list[str], windows: tuple, model: torch.nn.Module,
                  index: ItemIndex, mp: MonitorParams, max_len: int, numerical: list[str]) -> float | None:
    """The largest drift share of ``mp.control_repeats`` no-drift controls (event times shuffled
    within the windows, :func:`models.interest_mix.shuffle_time`): the noise level of these windows."""
    if mp.control_repeats <= 0:
        return None
    ref_start, ref_end, cur_start, cur_end = windows
    shares = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(mp.control_repeats):
            shuffled = shuffle_time(interactions, [(ref_start, ref_end), (cur_start, cur_end)], mp.control_seed + r)
            w = profiles(shuffled, items, categories, windows, model, index, max_len, 1)
            s = drift_report(w.ref, w.cur, Path(tmp) / "c.html", Path(tmp) / "c.json", numerical, ["dominant_category"], mp.drift_threshold)
            shares.append(float(s["drift_share"]))
    log.info("no-drift control (time order shuffled, %d repeats): drift shares %s", len(shares), [round(x, 2) for x in shares])
    return max(shares)


@dataclass
class Inputs:
    """What the monitor reads: the raw tables, their categories and windows, the selected model."""
    interactions: pd.DataFrame
    items: pd.DataFrame
    categories: list[str]
    windows: tuple
    selected: str
    model: torch.nn.Module
    index: ItemIndex


def load_inputs(params: Params) -> Inputs:
    mp = params.monitor
    raw = params.path(params.data.raw_dir)
    interactions = pd.read_parquet(raw / "interactions.parquet")
    items = pd.read_parquet(raw / "items.parquet")
    items["categories"] = items["categories"].map(list)
    categories = category_vocabulary(items)
    windows = split_windows(interactions, mp.reference_fraction, mp.current_fraction)
    model_dir = params.path(params.train.out_dir)
    selected = json.loads(params.path(params.evaluate.out).read_text())["selected"]
    model = artifacts.load_models(model_dir)[selected]
    index = ItemIndex(tuple(artifacts.load_item_ids(model_dir)))
    return Inputs(interactions, items, categories, windows, selected, model, index)


def run(params: Params) -> MonitorResult:
    mp = params.monitor
    x = load_inputs(params)
    ref_start, ref_end, cur_start, cur_end = x.windows
    L, k = params.train.max_len, params.evaluate.k
    w = profiles(x.interactions, x.items, x.categories, x.windows, x.model, x.index, L, k)
    ref, cur = w.ref, w.cur
    numerical = [share_column(c) for c in x.categories] + ["popularity_pct", "top_score"]
    log.info("drift: reference %s..%s (%d users) vs current %s..%s (%d users)", ref_start, ref_end, len(ref), cur_start, cur_end, len(cur))
    with tempfile.TemporaryDirectory() as tmp:
        evidently_html = Path(tmp) / "evidently.html"
        summary = drift_report(ref, cur, evidently_html, params.path(mp.json), numerical, ["dominant_category"], mp.drift_threshold)
        evidently_page = evidently_html.read_text()
    control = control_share(x.interactions, x.items, x.categories, x.windows, x.model, x.index, mp, L, numerical)
    threshold = retrain_threshold(mp.drift_threshold, control, mp.control_margin)
    retrain = summary["drift_share"] >= threshold
    drifted = sorted(c for c, v in summary["columns"].items() if v["drifted"])
    decision = {"drift_share": summary["drift_share"], "control_drift_share": control, "retrain_threshold": threshold,
                "control_margin": mp.control_margin, "drift_threshold": mp.drift_threshold, "retrain": retrain,
                "drifted_columns": len(drifted), "n_columns": summary["n_columns"]}
    tables = readable_tables(x, w, summary["columns"], mp.mix_freq)
    page = drift_page.render(window_info(x.interactions, x.windows, w), decision, tables["timeline"], x.categories,
                             tables["interests"], tables["rec_mix"], evidently_page)
    params.path(mp.html).parent.mkdir(parents=True, exist_ok=True)
    params.path(mp.html).write_text(page)
    write_decision(params, decision, x.selected, x.windows, tables)
    log.info("drift share %.2f (%d/%d columns), no-drift control %s, retrain at %.2f -> retrain=%s", summary["drift_share"],
             len(drifted), summary["n_columns"], "off" if control is None else f"{control:.2f}", threshold, retrain)
    return MonitorResult(summary["drift_share"], bool(summary["dataset_drift"]), retrain, drifted, len(ref), len(cur),
                         control, threshold)


def readable_tables(x: Inputs, w: Windowed, columns: dict, freq: str) -> dict[str, pd.DataFrame | pd.Series]:
    """The page's tables: category mix of both windows, dated category mix, per-interest drift,
    recommendation mix beside what the current window consumed."""
    ref_start, ref_end, cur_start, cur_end = x.windows
    ref_mix = category_mix(x.interactions, x.items, x.categories, ref_start, ref_end)
    cur_mix = category_mix(x.interactions, x.items, x.categories, cur_start, cur_end)
    timeline = category_mix_over_time(x.interactions, x.items, x.categories, x.windows, freq)
    interests = interest_drift_table(ref_mix, cur_mix, w.ref, w.cur, columns)
    rec_mix = pd.DataFrame({"category": x.categories,
                            "recommended (reference users)": recommendation_mix(w.ref_top, x.index, x.items, x.categories).to_numpy(),
                            "recommended (current users)": recommendation_mix(w.cur_top, x.index, x.items, x.categories).to_numpy(),
                            "consumed (current window)": cur_mix.to_numpy()})
    return {"ref_mix": ref_mix, "cur_mix": cur_mix, "timeline": timeline, "interests": interests, "rec_mix": rec_mix}


def window_info(interactions: pd.DataFrame, windows: tuple, w: Windowed) -> dict[str, dict]:
    """Each window's bounds, active users and events, for the page."""
    ref_start, ref_end, cur_start, cur_end = windows
    ts = pd.to_datetime(interactions["ts"], utc=True)
    return {name: {"start": s, "end": e, "users": len(p), "events": int(((ts >= s) & (ts < e)).sum())}
            for name, s, e, p in (("reference", ref_start, ref_end, w.ref), ("current", cur_start, cur_end, w.cur))}


def write_decision(params: Params, decision: dict, selected: str, windows: tuple, tables: dict) -> None:
    """The retrain decision and the readable tables, written beside Evidently's own results (for
    schedulers to read), the decision alone, and the compact DVC metrics."""
    mp = params.monitor
    ref_start, ref_end, cur_start, cur_end = windows
    report = json.loads(params.path(mp.json).read_text())
    report["summary"].update({**decision, "model": selected,
                              "windows": {"reference": [str(ref_start), str(ref_end)], "current": [str(cur_start), str(cur_end)]},
                              "category_mix": {"reference": tables["ref_mix"].round(4).to_dict(),
                                               "current": tables["cur_mix"].round(4).to_dict()},
                              "timeline": tables["timeline"].round(4).to_dict(orient="records"),
                              "recommendation_mix": tables["rec_mix"].round(4).to_dict(orient="records")})
    params.path(mp.json).write_text(json.dumps(report, indent=2, default=str))
    params.path(mp.summary).write_text(json.dumps(decision, indent=2))
    tracking.write_metrics(tracking.metrics_path(params.path(params.tracking.metrics_dir), "monitor"), tracking.monitor_metrics(decision))


def main() -> None:
    stage_main(run, "monitor: Evidently interest-drift report, reference vs current window")


if __name__ == "__main__":
    main()
