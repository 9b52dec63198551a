"""The Evidently drift report: does each per-user profile column (``models/drift.py``) drift
between the reference and the current window?

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

import pandas as pd


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


def _parse_metrics(d: dict[str, Any], columns: list[str]
                   ) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, float] | None]:
    """Per-column {drifted: None, score, method, threshold}, metric id -> column, and the
    DriftedColumnsCount value, from the snapshot's ``metrics``."""
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
    return per_col, by_metric_id, count_value


def _parse_snapshot(d: dict[str, Any], columns: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, float] | None]:
    """Per-column {drifted, score, method, threshold} and the DriftedColumnsCount value, from ``snap.dict()``."""
    per_col, by_metric_id, count_value = _parse_metrics(d, columns)
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
    _check_inputs(reference, current, columns)
    snap, evidently_json = _run_evidently(reference, current, numerical, categorical, drift_share)
    summary = _summary(evidently_json, numerical, categorical, drift_share, len(reference), len(current))
    _save(snap, {**evidently_json, "summary": summary}, Path(html_path), Path(json_path))
    return summary


def _summary(evidently_json: dict[str, Any], numerical: list[str], categorical: list[str], drift_share: float,
             n_reference: int, n_current: int) -> dict[str, Any]:
    """The report's summary (see :func:`drift_report`) from Evidently's snapshot JSON."""
    columns = numerical + categorical
    per_col, count_value = _parse_snapshot(evidently_json, columns)
    absent = [c for c in columns if c not in per_col]
    if absent:
        raise RuntimeError(f"Evidently returned no ValueDrift result for columns {absent}")
    share, n_drifted = _drift_share(per_col, count_value, columns)
    kind = {c: "numerical" for c in numerical} | {c: "categorical" for c in categorical}
    return {
        "drift_share": float(share),
        "drifted_columns": int(n_drifted),
        "n_columns": len(columns),
        "dataset_drift": bool(share >= float(drift_share)),
        "drift_share_threshold": float(drift_share),
        "columns": {c: {"drifted": bool(per_col[c]["drifted"]), "score": per_col[c]["score"], "method": per_col[c]["method"],
                        "threshold": per_col[c]["threshold"], "kind": kind[c]} for c in columns},
        "n_reference": int(n_reference),
        "n_current": int(n_current),
    }


def _save(snap: Any, report: dict[str, Any], html_path: Path, json_path: Path) -> None:
    """Evidently's HTML page, and its JSON with the summary, creating the folders."""
    html_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    snap.save_html(str(html_path))  # Evidently treats a non-str argument as an open file
    json_path.write_text(json.dumps(report, indent=2))


def _check_inputs(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> None:
    """ValueError for no columns, a column listed twice, a window under 2 rows or a missing column."""
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


def _prepare(frame: pd.DataFrame, numerical: list[str], categorical: list[str]) -> pd.DataFrame:
    """The drift columns only: numerical as float64, categorical as str (missing values kept)."""
    out = pd.DataFrame(index=range(len(frame)))
    for c in numerical:
        out[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64").to_numpy()
    for c in categorical:
        s = frame[c]
        out[c] = s.where(s.isna(), s.astype(str)).astype(object).to_numpy()
    return out


def _run_evidently(reference: pd.DataFrame, current: pd.DataFrame, numerical: list[str], categorical: list[str],
                   drift_share: float) -> tuple[Any, dict[str, Any]]:
    """Evidently's snapshot of a DataDriftPreset with per-column tests, and its JSON as a dict."""
    # Evidently is imported here: it is heavy, and the profile functions do not need it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = numerical + categorical
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    ref_ds = Dataset.from_pandas(_prepare(reference, numerical, categorical), data_definition=definition)
    cur_ds = Dataset.from_pandas(_prepare(current, numerical, categorical), data_definition=definition)
    report = Report([DataDriftPreset(columns=columns, drift_share=float(drift_share))], include_tests=True)
    with warnings.catch_warnings():
        # constant columns make the correlation widgets divide by a zero std: harmless noise
        warnings.simplefilter("ignore", RuntimeWarning)
        snap = report.run(cur_ds, ref_ds)  # current FIRST, then reference
        evidently_json = json.loads(snap.json())
    return snap, evidently_json


def _drift_share(per_col: dict[str, dict[str, Any]], count_value: dict[str, float] | None,
                 columns: list[str]) -> tuple[float, int]:
    """(share, count) of drifted columns: Evidently's DriftedColumnsCount when it gave one."""
    n_drifted = sum(1 for c in columns if per_col[c]["drifted"])
    share = count_value["share"] if count_value is not None else n_drifted / len(columns)
    if count_value is not None and int(round(count_value["count"])) != n_drifted:
        # should not happen; trust the aggregate metric but say so in the summary
        warnings.warn(
            f"Evidently counted {count_value['count']} drifted columns, per-column tests say {n_drifted}",
            RuntimeWarning,
            stacklevel=4,  # drift_report's caller
        )
        n_drifted = int(round(count_value["count"]))
    return share, n_drifted
