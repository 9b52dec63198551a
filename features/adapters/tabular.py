"""Any dataset already in the canonical columns, as CSV or Parquet files.

Expects ``interactions.<ext>`` and ``items.<ext>`` in ``data.source_dir`` (or $PULSE_DATA_DIR).
In CSV, ``categories`` is a ``|``-separated string.
"""
from __future__ import annotations

import pandas as pd

from features.params import DATA_DIR_ENV, Params


def load(params: Params) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    ext = params.data.dataset  # "csv" or "parquet"
    src = params.data.resolved_source_dir()
    if not src:
        raise FileNotFoundError(f"data.dataset={ext} needs data.source_dir in params.yaml or {DATA_DIR_ENV}")
    base = params.path(src)
    paths = {name: base / f"{name}.{ext}" for name in ("interactions", "items")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"missing input file(s): {missing}")
    read = (lambda p: pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])) if ext == "csv" else pd.read_parquet
    return read(paths["interactions"]), read(paths["items"]), {}
