"""Drift windows and per-user interest profiles: what the monitor compares.

Why this module exists: pulse recommends from each user's *changing* interests, so the
monitor asks "do users now spend their attention on other categories, or on more/less
popular items, than they did earlier?". It compares one row per active user in an early
(reference) window with one row per active user in a late (current) window;
``models/drift_report.py`` lets Evidently test each column for distribution drift, and
``models/interest_mix.py`` holds the tables a product owner reads (category mix over time,
per-interest drift) and the no-drift control.

Everything here is a pure function on pandas frames (no Prefect, DVC, torch or Evidently), so
the monitor flow stays thin and the logic is unit-testable in milliseconds.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

NO_CATEGORY = "none"  # dominant_category of a user none of whose window events has a listed category
SHARE_PREFIX = "share_"


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------


def split_windows(
    interactions: pd.DataFrame, reference_fraction: float, current_fraction: float
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """Reference = first ``reference_fraction`` of the time span, current = last ``current_fraction``.

    Why fractions of the *time span* (not of the rows): drift is about interests moving over
    time, and a span split keeps the windows comparable when traffic grows or shrinks.

    Windows are half-open ``[start, end)`` (the convention of :func:`window_profiles`):
    ``ref_start`` is the first timestamp, ``ref_end = ref_start + reference_fraction * span``,
    ``cur_start = max_ts - current_fraction * span`` and ``cur_end`` is one nanosecond past the
    last timestamp, so the last event belongs to the current window.

    Raises ValueError on empty interactions, a zero time span, fractions outside (0, 1], or
    fractions that add up to more than 1 (overlapping windows would share events and hide drift).
    """
    for name, f in (("reference_fraction", reference_fraction), ("current_fraction", current_fraction)):
        if not (0.0 < float(f) <= 1.0):
            raise ValueError(f"{name} must be in (0, 1], got {f}")
    if float(reference_fraction) + float(current_fraction) > 1.0 + 1e-12:
        raise ValueError(
            f"reference_fraction + current_fraction must be <= 1 (windows must not overlap), "
            f"got {reference_fraction} + {current_fraction}"
        )
    if len(interactions) == 0:
        raise ValueError("no interactions: cannot split a time span into drift windows")
    ts = pd.to_datetime(interactions["ts"], utc=True)
    t_min, t_max = ts.min(), ts.max()
    span = t_max - t_min
    if span <= pd.Timedelta(0):
        raise ValueError(f"all interactions share one timestamp ({t_min}): no time span to split")
    ref_start = t_min
    ref_end = t_min + span * float(reference_fraction)
    cur_start = t_max - span * float(current_fraction)
    cur_end = t_max + pd.Timedelta(1, "ns")
    return ref_start, ref_end, cur_start, cur_end


# --------------------------------------------------------------------------------------------
# per-user window profiles
# --------------------------------------------------------------------------------------------


def safe_name(category: str) -> str:
    """Lowercase, every run of non-alphanumeric characters -> ``_`` (trimmed): a safe column name.

    Why: category names come from the data ("Sci-Fi", "Children's", "(no genres listed)") and
    end up as column names in parquet, JSON and Evidently's HTML.
    """
    s = re.sub(r"[^0-9a-z]+", "_", str(category).lower()).strip("_")
    return s or "unnamed"


def share_column(category: str) -> str:
    """Name of the share column of one category in :func:`window_profiles` output."""
    return SHARE_PREFIX + safe_name(category)


def _as_category_list(v: object) -> list[str]:
    """Item categories as a list of distinct strings (parquet gives numpy arrays; None -> [])."""
    if isinstance(v, (list, tuple, np.ndarray, pd.Series)):
        vals = [str(c) for c in v if c is not None and str(c)]
    elif v is None or (isinstance(v, float) and math.isnan(v)):
        vals = []
    else:
        vals = [str(v)] if str(v) else []
    return list(dict.fromkeys(vals))  # dedupe, keep order


def item_category_weights(items: pd.DataFrame) -> pd.DataFrame:
    """Long table (item_id, category, weight=1/len(item categories)) over all categories of each item."""
    it = items[["item_id", "categories"]].drop_duplicates("item_id", keep="first")
    cats = it["categories"].map(_as_category_list)
    n = cats.map(len)
    long = pd.DataFrame({"item_id": it["item_id"].astype(str).to_numpy(), "category": cats.to_numpy(), "n": n.to_numpy()})
    long = long[long["n"] > 0].explode("category")
    long["weight"] = 1.0 / long["n"].astype(float)
    return long[["item_id", "category", "weight"]].reset_index(drop=True)


def window_profiles(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    categories: list[str],
) -> pd.DataFrame:
    """One row per user active in ``[start, end)``: what the user spent attention on in that window.

    Columns (in order): ``user_id``, ``share_<category>`` for each of ``categories`` (see
    :func:`share_column`), ``dominant_category``, ``popularity_pct``, ``n_events``.

    * ``share_<c>``: share of the user's window events whose item has category ``c``. An item
      with k categories counts 1/k for each of them, so shares of a user sum to 1 when every item
      has only listed categories (less when some have none or unlisted ones: those events stay in
      the denominator, because they are still attention spent elsewhere).
    * ``dominant_category``: the category (original name) with the largest share; ties go to the
      earlier one in ``categories``; ``"none"`` when every share is 0.
    * ``popularity_pct``: mean, over the user's window events, of the item's popularity
      percentile within the window (events per item ranked with ``rank(pct=True)``, ties
      averaged: the most popular item is 1.0). This is the user's "item popularity mix": a drift
      towards blockbusters or towards the long tail moves it.
    * ``n_events``: the user's events in the window (all event types count).

    Why per user, not per event: the monitor asks whether *users'* interests moved; heavy users
    would dominate a per-event table.
    """
    share_cols = _share_columns(categories)
    columns = ["user_id", *share_cols, "dominant_category", "popularity_pct", "n_events"]
    w = _window_events(interactions, start, end)
    if w.empty:
        return _empty_profiles(columns)
    n_events = w.groupby("user_id", sort=True).size()
    shares = _category_shares(w, items, categories, n_events)
    out = pd.DataFrame({"user_id": n_events.index.astype(str).to_numpy()})
    for c, col in zip(categories, share_cols):
        out[col] = shares[c].to_numpy(dtype=float)
    out["dominant_category"] = pd.Series(_dominant(shares, categories), dtype=object).astype(str).to_numpy(dtype=object)
    out["popularity_pct"] = _popularity_mix(w).reindex(n_events.index).to_numpy(dtype=float)
    out["n_events"] = n_events.to_numpy(dtype="int64")
    return out[columns]


def _share_columns(categories: list[str]) -> list[str]:
    """The share column of each category; ValueError when two categories would share one."""
    share_cols = [share_column(c) for c in categories]
    dupes = sorted({c for c in share_cols if share_cols.count(c) > 1})
    if dupes:
        raise ValueError(f"categories map to the same column name: {dupes}; pass distinct categories")
    if len(set(categories)) != len(categories):
        raise ValueError("categories contains duplicates")
    return share_cols


def _window_events(interactions: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """(user_id, item_id) as strings of the events in ``[start, end)`` (naive bounds are UTC)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    ts = pd.to_datetime(interactions["ts"], utc=True)
    if start.tzinfo is None:
        start = start.tz_localize("UTC")
    if end.tzinfo is None:
        end = end.tz_localize("UTC")
    return interactions.loc[(ts >= start) & (ts < end), ["user_id", "item_id"]].astype(str)


def _empty_profiles(columns: list[str]) -> pd.DataFrame:
    """No user active in the window: the profile columns with their dtypes and no rows."""
    out = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    out["user_id"] = out["user_id"].astype(object)
    out["dominant_category"] = out["dominant_category"].astype(object)
    out["n_events"] = out["n_events"].astype("int64")
    return out


def _popularity_mix(w: pd.DataFrame) -> pd.Series:
    """Per user: mean popularity percentile of the items among the items seen in this window."""
    item_counts = w["item_id"].value_counts()
    pct = item_counts.rank(method="average", pct=True)
    return w["item_id"].map(pct).groupby(w["user_id"], sort=True).mean()


def _category_shares(w: pd.DataFrame, items: pd.DataFrame, categories: list[str], n_events: pd.Series) -> pd.DataFrame:
    """Users x categories: (user, item) event counts x item category weights, over the user's events."""
    ui = w.groupby(["user_id", "item_id"], sort=False).size().rename("count").reset_index()
    weights = item_category_weights(items)
    weights = weights[weights["category"].isin(set(categories))]
    m = ui.merge(weights, on="item_id", how="inner")
    m["w"] = m["count"] * m["weight"]
    sums = m.pivot_table(index="user_id", columns="category", values="w", aggfunc="sum", fill_value=0.0)
    sums = sums.reindex(index=n_events.index, columns=list(categories), fill_value=0.0).fillna(0.0)
    return sums.div(n_events.astype(float), axis=0)


def _dominant(shares: pd.DataFrame, categories: list[str]) -> np.ndarray:
    """Each user's category with the largest share (ties: the earlier one), NO_CATEGORY when all are 0."""
    if not len(categories):
        return np.full(len(shares), NO_CATEGORY, dtype=object)
    values = shares.to_numpy(dtype=float)
    best = values.argmax(axis=1)  # first maximum: ties -> earlier category
    return np.where(values.max(axis=1) > 0, np.asarray(categories, dtype=object)[best], NO_CATEGORY)
