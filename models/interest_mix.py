"""What a product owner reads about interest drift: the category mix of the traffic (in a window,
week by week), the per-interest drift table, and the no-drift control the retrain decision is
calibrated on (time order shuffled within the windows).

Pure functions on pandas frames, like ``models/drift.py`` whose item category weights and share
columns they use.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.drift import item_category_weights, share_column


def category_event_weights(interactions: pd.DataFrame, items: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    """Long table (ts, category, weight): each event split over its item's categories (1/k each).

    Why event-weighted here (per-user elsewhere): "how much of the traffic goes to each
    interest" is the number a product owner tracks week by week.
    """
    w = item_category_weights(items)
    w = w[w["category"].isin(set(categories))]
    ev = pd.DataFrame({"item_id": interactions["item_id"].astype(str).to_numpy(),
                       "ts": pd.to_datetime(interactions["ts"], utc=True).to_numpy()})
    return ev.merge(w, on="item_id", how="inner")[["ts", "category", "weight"]]


def category_mix(interactions: pd.DataFrame, items: pd.DataFrame, categories: list[str],
                 start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.Series:
    """Share of the events in ``[start, end)`` that went to each category (sums to 1 over listed ones)."""
    long = category_event_weights(interactions, items, categories)
    ts = pd.to_datetime(long["ts"], utc=True)
    keep = pd.Series(True, index=long.index)
    if start is not None:
        keep &= ts >= pd.Timestamp(start)
    if end is not None:
        keep &= ts < pd.Timestamp(end)
    long = long[keep]
    sums = long.groupby("category")["weight"].sum().reindex(categories, fill_value=0.0)
    total = float(sums.sum())
    return sums / total if total > 0 else sums


def category_mix_over_time(interactions: pd.DataFrame, items: pd.DataFrame, categories: list[str],
                           windows: tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp, pd.Timestamp],
                           freq: str = "W") -> pd.DataFrame:
    """One row per period (``freq``: ``W`` weekly, ``D`` daily, ``MS`` monthly): each category's share
    of that period's events, the period's event count and which drift window it falls in.

    Columns: ``period`` (start date, ISO string), ``window`` (``reference`` / ``current`` /
    ``between``, by the period's start), ``events``, then one column per category.
    """
    long = category_event_weights(interactions, items, categories)
    ts = pd.to_datetime(long["ts"], utc=True).dt.tz_convert(None)
    long = long.assign(period=ts.dt.to_period(freq).dt.start_time)
    sums = long.pivot_table(index="period", columns="category", values="weight", aggfunc="sum", fill_value=0.0)
    sums = sums.reindex(columns=categories, fill_value=0.0)
    events = pd.to_datetime(interactions["ts"], utc=True).dt.tz_convert(None).dt.to_period(freq).dt.start_time.value_counts()
    shares = sums.div(sums.sum(axis=1).replace(0.0, np.nan), axis=0).fillna(0.0)
    ref_start, ref_end, cur_start, _ = (pd.Timestamp(t).tz_convert(None) if pd.Timestamp(t).tzinfo else pd.Timestamp(t) for t in windows)

    def label(p: pd.Timestamp) -> str:
        # a period belongs to a window when it overlaps it (the first week starts before the data)
        p_end = p + pd.tseries.frequencies.to_offset(freq)
        if p < ref_end and p_end > ref_start:
            return "reference"
        if p_end > cur_start:
            return "current"
        return "between"

    out = shares.reset_index()
    out.insert(1, "window", [label(p) for p in out["period"]])
    out.insert(2, "events", [int(events.get(p, 0)) for p in out["period"]])
    out["period"] = out["period"].dt.strftime("%Y-%m-%d")
    return out


def interest_drift_table(ref_mix: pd.Series, cur_mix: pd.Series, ref_profiles: pd.DataFrame, cur_profiles: pd.DataFrame,
                         columns: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per interest (category): traffic share before / now, the change, the share of users whose main
    interest it is before / now, and Evidently's verdict on the per-user share distribution.

    Why both: the traffic share says where attention went; the per-user verdict says whether that
    is many users moving or a few heavy ones.
    """
    rows = []
    for c in ref_mix.index:
        col = columns.get(share_column(c), {})
        rows.append({
            "category": c,
            "reference_share": float(ref_mix[c]),
            "current_share": float(cur_mix.get(c, 0.0)),
            "change_pp": 100.0 * (float(cur_mix.get(c, 0.0)) - float(ref_mix[c])),
            "reference_main_interest": float((ref_profiles["dominant_category"] == c).mean()) if len(ref_profiles) else 0.0,
            "current_main_interest": float((cur_profiles["dominant_category"] == c).mean()) if len(cur_profiles) else 0.0,
            "evidently_drifted": bool(col.get("drifted", False)),
            "evidently_score": col.get("score"),
            "evidently_method": col.get("method"),
        })
    return pd.DataFrame(rows).sort_values("change_pp", key=lambda s: s.abs(), ascending=False).reset_index(drop=True)


def shuffle_time(interactions: pd.DataFrame, start_end: list[tuple[pd.Timestamp, pd.Timestamp]], seed: int) -> pd.DataFrame:
    """The no-drift control: the timestamps of the events inside the windows, randomly permuted.

    Why this control: it keeps everything the real comparison has (the same events, the same
    number of events per window, hence the same activity levels and sample sizes) and removes only
    the time order, so any drift Evidently still reports is what these windows show with no change
    of interest at all. Splitting the reference window in two halves does not keep the activity
    levels (busier late windows give users more events, hence less extreme shares), which alone
    makes most share columns "drift" on the default data.
    """
    out = interactions.copy()
    ts = pd.to_datetime(out["ts"], utc=True)
    inside = np.zeros(len(out), dtype=bool)
    for s, e in start_end:
        inside |= ((ts >= s) & (ts < e)).to_numpy()
    rng = np.random.default_rng(seed)
    values = out["ts"].to_numpy().copy()
    values[inside] = rng.permutation(values[inside])
    out["ts"] = values
    return out.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)  # histories in time order again


def retrain_threshold(drift_threshold: float, control_share: float | None, margin: float) -> float:
    """The drift share the real windows must reach to retrain: the configured floor, and the
    no-drift control's share plus ``margin`` (the noise these windows show by themselves)."""
    if control_share is None:
        return float(drift_threshold)
    return max(float(drift_threshold), float(control_share) + float(margin))
