"""Compact metrics and training curves, in the files DVC compares across runs.

Why this module exists: the stages' full reports (``reports/*.json``) are large, nested and
git-ignored, so ``dvc metrics show`` was 76 columns wide and ``dvc exp show`` / ``dvc metrics
diff`` could not read them at other revisions. Each stage therefore also writes a few top-level
numbers to ``<tracking.metrics_dir>/<stage>.json`` (committed to git, declared as DVC metrics
with ``cache: false``) and the train stage writes its per-epoch history as one CSV per model that
``dvc.yaml`` declares under ``plots:``.

Pure functions on dicts and files: no torch, no Prefect, no DVC, so every stage (features,
models, serving) can call it and a unit test can check it in milliseconds.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

HISTORY_DIR = "train_history"
# the neural models whose curves dvc.yaml plots; their files are always written (header only when
# a run did not train them) so the plot definitions in dvc.yaml never point at a missing file
PLOTTED_MODELS = ("interest", "sasrec")
HISTORY_FIELDS = ("loss", "valid_ndcg@10", "valid_hr@10")


def _round(x: Any, digits: int = 4) -> float | None:
    """A float rounded for people (4 digits), or None when it is not a finite number."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return round(f, digits) if math.isfinite(f) else None


def metrics_path(metrics_dir: Path, stage: str) -> Path:
    """Where a stage's compact metrics live: ``<metrics_dir>/<stage>.json``."""
    return Path(metrics_dir) / f"{stage}.json"


def write_metrics(path: Path, metrics: Mapping[str, Any]) -> Path:
    """Write one flat JSON object of numbers (and short strings) that ``dvc metrics show`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(metrics), indent=2, sort_keys=False) + "\n")
    log.info("metrics for DVC: %s", path)
    return path


def ingest_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The ingest counts worth comparing between runs: rows in, clean, quarantined, users, items."""
    return {
        "rows_in": int(summary["rows_in"]),
        "rows_clean": int(summary["rows_clean"]),
        "rows_quarantined": int(summary["rows_quarantined"]),
        "users": int(summary["users"]),
        "items": int(summary["items"]),
    }


def evaluate_metrics(report: Mapping[str, Any], k: int = 10) -> dict[str, Any]:
    """The selected model's test HR@k / NDCG@k / MRR and validation NDCG@k, plus the best baseline's,
    and the selected model's test NDCG@k on the cold-item and interest-shift slices (where the
    report has them and they have users): the two cases text and the switch gate are there for.

    Why these few: they answer "did this run get better?" at a glance in ``dvc exp show``; every
    model's full numbers stay in ``reports/metrics.json``.
    """
    models = report["models"]
    selected = report["selected"]
    sel = models[selected]
    out: dict[str, Any] = {
        "selected": selected,
        f"test_ndcg@{k}": _round(sel["test"].get(f"ndcg@{k}")),
        f"test_hr@{k}": _round(sel["test"].get(f"hr@{k}")),
        "test_mrr": _round(sel["test"].get("mrr")),
        f"valid_ndcg@{k}": _round(sel["valid"].get(f"ndcg@{k}")),
    }
    for name, sl in sel.get("test_slices", {}).items():
        if name in ("cold_item", "interest_shift") and sl.get("users"):
            out[f"test_{name}_ndcg@{k}"] = _round(sl.get(f"ndcg@{k}"))
    others = {m: v for m, v in models.items() if m != selected}
    if others:
        best = max(others, key=lambda m: others[m]["test"].get(f"ndcg@{k}", float("-inf")))
        out[f"runner_up_test_ndcg@{k}"] = _round(others[best]["test"].get(f"ndcg@{k}"))
    return out


def monitor_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Drift share of the real windows, of the no-drift control, the threshold used and the decision."""
    keys = ("drift_share", "control_drift_share", "retrain_threshold")
    out: dict[str, Any] = {k: _round(summary[k]) for k in keys if k in summary}
    out["drifted_columns"] = int(summary.get("drifted_columns", 0))
    out["retrain"] = bool(summary.get("retrain", False))
    return out


def history_rows(rows: Any) -> list[dict[str, Any]]:
    """One model's per-epoch rows as ``epoch, loss, valid_ndcg@10, valid_hr@10`` (rounded).

    The hybrid's "history" is its weight search, not epochs: only rows with an epoch are curves."""
    epochs = [r for r in rows or [] if isinstance(r, Mapping) and "epoch" in r]
    return [{"epoch": int(r["epoch"]), **{f: _round(r.get(f), 6) for f in HISTORY_FIELDS}} for r in epochs]


def write_history(folder: Path, history: Mapping[str, list[Mapping[str, Any]]]) -> list[Path]:
    """One CSV per neural model, ``<folder>/<model>.csv`` (header even without rows, so ``dvc plots``
    finds the file).

    Why one file per model: the models stop at different epochs (early stopping). In one wide file
    the model that stopped first had empty cells after its last epoch, and DVC's plot drew them
    as a drop to 0; a file per model ends where its model ended, and ``dvc.yaml`` draws one line
    per file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    models = list(dict.fromkeys([*PLOTTED_MODELS, *sorted(m for m in history if history_rows(history[m]))]))
    paths = []
    for model in models:
        path = folder / f"{model}.csv"
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["epoch", *HISTORY_FIELDS])
            w.writeheader()
            for r in history_rows(history.get(model)):
                w.writerow({c: "" if v is None else v for c, v in r.items()})
        paths.append(path)
    log.info("training curves for dvc plots: %s (%s)", folder, ", ".join(p.stem for p in paths))
    return paths


def write_train_history(metrics_dir: Path, meta: Mapping[str, Any]) -> list[Path]:
    """The train stage's hook: ``meta["history"]`` (as saved in meta.json) -> ``<metrics_dir>/train_history/<model>.csv``."""
    return write_history(Path(metrics_dir) / HISTORY_DIR, meta.get("history") or {})
