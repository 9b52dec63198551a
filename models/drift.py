"""Interest-drift tables and the Evidently drift report.

Why this module exists: pulse recommends from each user's *changing* interests, so the
monitor asks "do users now spend their attention on other categories, or on more/less
popular items, than they did earlier?". It compares one row per active user in an early
(reference) window with one row per active user in a late (current) window, and lets
Evidently test each column for distribution drift.

Everything here is a pure function on pandas frames (no Prefect, DVC or torch), so the
monitor flow stays thin and the logic is unit-testable in milliseconds.

Evidently 0.7 facts this module relies on (checked against 0.7.23):

* ``Report.run(current, reference)``: current comes FIRST.
* The drift method is chosen per column from the data: K-S / chi-square / Z-test *p-values*
  (drift when the score is BELOW the threshold) for small samples, Wasserstein / Jensen-Shannon
  *distances* (drift when the score is ABOVE the threshold) once a window has more than 1000
  rows; numerical columns with few distinct values get categorical tests. The per-column
  ``ValueDrift`` metric only reports the score, so the drifted flag is read from Evidently's own
  per-column test result (``include_tests=True``) rather than re-derived from the score.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

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


def _item_category_weights(items: pd.DataFrame) -> pd.DataFrame:
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
    share_cols = [share_column(c) for c in categories]
    dupes = sorted({c for c in share_cols if share_cols.count(c) > 1})
    if dupes:
        raise ValueError(f"categories map to the same column name: {dupes}; pass distinct categories")
    if len(set(categories)) != len(categories):
        raise ValueError("categories contains duplicates")
    columns = ["user_id", *share_cols, "dominant_category", "popularity_pct", "n_events"]

    start, end = pd.Timestamp(start), pd.Timestamp(end)
    ts = pd.to_datetime(interactions["ts"], utc=True)
    if start.tzinfo is None:
        start = start.tz_localize("UTC")
    if end.tzinfo is None:
        end = end.tz_localize("UTC")
    w = interactions.loc[(ts >= start) & (ts < end), ["user_id", "item_id"]].astype(str)
    if w.empty:
        out = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        out["user_id"] = out["user_id"].astype(object)
        out["dominant_category"] = out["dominant_category"].astype(object)
        out["n_events"] = out["n_events"].astype("int64")
        return out

    n_events = w.groupby("user_id", sort=True).size()

    # popularity percentile of each item among the items seen in this window
    item_counts = w["item_id"].value_counts()
    pct = item_counts.rank(method="average", pct=True)
    popularity = w["item_id"].map(pct).groupby(w["user_id"], sort=True).mean()

    # category shares: (user, item) event counts x item category weights
    ui = w.groupby(["user_id", "item_id"], sort=False).size().rename("count").reset_index()
    weights = _item_category_weights(items)
    weights = weights[weights["category"].isin(set(categories))]
    m = ui.merge(weights, on="item_id", how="inner")
    m["w"] = m["count"] * m["weight"]
    sums = m.pivot_table(index="user_id", columns="category", values="w", aggfunc="sum", fill_value=0.0)
    sums = sums.reindex(index=n_events.index, columns=list(categories), fill_value=0.0).fillna(0.0)
    shares = sums.div(n_events.astype(float), axis=0)

    if len(categories):
        values = shares.to_numpy(dtype=float)
        best = values.argmax(axis=1)  # first maximum: ties -> earlier category
        dominant = np.where(values.max(axis=1) > 0, np.asarray(categories, dtype=object)[best], NO_CATEGORY)
    else:
        dominant = np.full(len(n_events), NO_CATEGORY, dtype=object)

    out = pd.DataFrame({"user_id": n_events.index.astype(str).to_numpy()})
    for c, col in zip(categories, share_cols):
        out[col] = shares[c].to_numpy(dtype=float)
    out["dominant_category"] = pd.Series(dominant, dtype=object).astype(str).to_numpy(dtype=object)
    out["popularity_pct"] = popularity.reindex(n_events.index).to_numpy(dtype=float)
    out["n_events"] = n_events.to_numpy(dtype="int64")
    return out[columns]


# --------------------------------------------------------------------------------------------
# Evidently report
# --------------------------------------------------------------------------------------------


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _drifted_from_score(method: str | None, score: float | None, threshold: float | None) -> bool | None:
    """Fallback when Evidently gave no per-column test: p-value methods drift below, distances above."""
    if score is None or threshold is None or not method:
        return None
    return score < threshold if "p_value" in method else score >= threshold


def _parse_snapshot(d: dict[str, Any], columns: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, float] | None]:
    """Per-column {drifted, score, method, threshold} and the DriftedColumnsCount value, from ``snap.dict()``."""
    per_col: dict[str, dict[str, Any]] = {}
    by_metric_id: dict[str, str] = {}
    count_value: dict[str, float] | None = None
    for m in d.get("metrics", []):
        cfg = m.get("config") or {}
        mtype = str(cfg.get("type", ""))
        name = str(m.get("metric_name", ""))
        if mtype.endswith("DriftedColumnsCount") or name.startswith("DriftedColumnsCount"):
            v = m.get("value") or {}
            if isinstance(v, dict):
                count_value = {"count": float(v.get("count", 0.0)), "share": float(v.get("share", 0.0))}
        elif mtype.endswith("ValueDrift") or name.startswith("ValueDrift"):
            col = cfg.get("column")
            if col is None:
                hit = re.search(r"column=([^,)]*)", name)
                col = hit.group(1) if hit else None
            if col not in columns:
                continue
            by_metric_id[str(m.get("id"))] = col
            per_col[col] = {
                "drifted": None,
                "score": _finite(m.get("value")),
                "method": cfg.get("method"),
                "threshold": _finite(cfg.get("threshold")),
            }
    for t in d.get("tests", []) or []:
        mc = t.get("metric_config") or {}
        col = by_metric_id.get(str(mc.get("metric_id")))
        if col is None:
            params = mc.get("params") or {}
            if str(params.get("type", "")).endswith("ValueDrift"):
                col = params.get("column")
        if col in per_col:
            status = str(t.get("status", "")).upper().rsplit(".", 1)[-1]  # "FAIL" or "TestStatus.FAIL"
            if status in ("FAIL", "SUCCESS"):
                per_col[col]["drifted"] = status == "FAIL"
    for col, r in per_col.items():
        if r["drifted"] is None:
            r["drifted"] = bool(_drifted_from_score(r["method"], r["score"], r["threshold"]))
    return per_col, count_value


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    html_path: str | Path,
    json_path: str | Path,
    numerical: list[str],
    categorical: list[str],
    drift_share: float = 0.5,
) -> dict[str, Any]:
    """Run Evidently's DataDriftPreset on ``numerical + categorical`` columns; save HTML and JSON.

    Why: the HTML is for people (distributions side by side), the JSON for machines; the
    ``summary`` merged into the JSON at the top level is the small, stable contract the monitor
    flow and DVC metrics read, so nobody has to parse Evidently's metric names.

    The JSON file is Evidently's ``snapshot.json()`` (``metrics``, ``tests``) plus ``summary``::

        {"drift_share": float,          # share of drifted columns (Evidently's DriftedColumnsCount)
         "drifted_columns": int, "n_columns": int,
         "dataset_drift": bool,         # drift_share >= the drift_share argument
         "drift_share_threshold": float,
         "columns": {col: {"drifted": bool, "score": float | None, "method": str | None,
                           "threshold": float | None, "kind": "numerical" | "categorical"}},
         "n_reference": int, "n_current": int}

    ``score`` is whatever Evidently's method returns: a p-value (drift when small) for small
    windows, a distance (drift when large) for windows over 1000 rows; ``drifted`` is Evidently's
    own verdict for that column. Returns the summary. Raises ValueError when a window has fewer
    than 2 rows, when no columns are given, or when a column is missing from a window.
    """
    numerical, categorical = list(numerical), list(categorical)
    columns = numerical + categorical
    if not columns:
        raise ValueError("drift_report needs at least one numerical or categorical column")
    if len(set(columns)) != len(columns):
        raise ValueError(f"a column is listed twice (or as both numerical and categorical): {columns}")
    if len(reference) < 2 or len(current) < 2:
        raise ValueError(
            f"drift needs at least 2 rows in each window, got reference={len(reference)} current={len(current)}; "
            "widen the windows or use more data"
        )
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} window lacks columns {missing}")

    def prepare(frame: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(index=range(len(frame)))
        for c in numerical:
            out[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64").to_numpy()
        for c in categorical:
            s = frame[c]
            out[c] = s.where(s.isna(), s.astype(str)).astype(object).to_numpy()
        return out

    # Evidently is imported here: it is heavy, and the profile functions above do not need it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    ref_ds = Dataset.from_pandas(prepare(reference), data_definition=definition)
    cur_ds = Dataset.from_pandas(prepare(current), data_definition=definition)
    report = Report([DataDriftPreset(columns=columns, drift_share=float(drift_share))], include_tests=True)
    with warnings.catch_warnings():
        # constant columns make the correlation widgets divide by a zero std: harmless noise
        warnings.simplefilter("ignore", RuntimeWarning)
        snap = report.run(cur_ds, ref_ds)  # current FIRST, then reference
        evidently_json = json.loads(snap.json())

    per_col, count_value = _parse_snapshot(evidently_json, columns)
    absent = [c for c in columns if c not in per_col]
    if absent:
        raise RuntimeError(f"Evidently returned no ValueDrift result for columns {absent}")
    n_drifted = sum(1 for c in columns if per_col[c]["drifted"])
    share = count_value["share"] if count_value is not None else n_drifted / len(columns)
    if count_value is not None and int(round(count_value["count"])) != n_drifted:
        # should not happen; trust the aggregate metric but say so in the summary
        warnings.warn(
            f"Evidently counted {count_value['count']} drifted columns, per-column tests say {n_drifted}",
            RuntimeWarning,
            stacklevel=2,
        )
        n_drifted = int(round(count_value["count"]))

    kind = {c: "numerical" for c in numerical} | {c: "categorical" for c in categorical}
    summary: dict[str, Any] = {
        "drift_share": float(share),
        "drifted_columns": int(n_drifted),
        "n_columns": len(columns),
        "dataset_drift": bool(share >= float(drift_share)),
        "drift_share_threshold": float(drift_share),
        "columns": {
            c: {
                "drifted": bool(per_col[c]["drifted"]),
                "score": per_col[c]["score"],
                "method": per_col[c]["method"],
                "threshold": per_col[c]["threshold"],
                "kind": kind[c],
            }
            for c in columns
        },
        "n_reference": int(len(reference)),
        "n_current": int(len(current)),
    }

    html_path, json_path = Path(html_path), Path(json_path)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    snap.save_html(str(html_path))  # Evidently treats a non-str argument as an open file
    json_path.write_text(json.dumps({**evidently_json, "summary": summary}, indent=2))
    return summary


# --------------------------------------------------------------------------------------------
# what a product owner reads: category mix over time, per-interest drift, a no-drift control
# --------------------------------------------------------------------------------------------


def category_event_weights(interactions: pd.DataFrame, items: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    """Long table (ts, category, weight): each event split over its item's categories (1/k each).

    Why event-weighted here (per-user elsewhere): "how much of the traffic goes to each
    interest" is the number a product owner tracks week by week.
    """
    w = _item_category_weights(items)
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
