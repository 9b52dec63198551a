"""Any dataset already in the canonical columns, as CSV or Parquet files.

Expects ``interactions.<ext>`` and ``items.<ext>`` in ``data.source_dir`` (or $PULSE_DATA_DIR).
In CSV, ``categories`` is a ``|``-separated string (``jazz|rock``) or a JSON list
(``["jazz","rock"]``); README.md, section "Your own data", has a runnable example.
"""
from __future__ import annotations

import pandas as pd

from core.params import DATA_DIR_ENV, Params
from core.schema import OWN_DATA_DOC, DataError, require_columns


class MissingSourceError(DataError, FileNotFoundError):
    """The configured source files are not there: a path to fix, not a transient failure."""


def load(params: Params) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    ext = params.data.dataset  # "csv" or "parquet"
    src = params.data.resolved_source_dir()
    if not src:
        raise MissingSourceError(f"data.dataset={ext} needs data.source_dir in params.yaml or {DATA_DIR_ENV} "
                                 f"(the folder holding interactions.{ext} and items.{ext}); see {OWN_DATA_DOC}")
    base = params.path(src)
    paths = {name: base / f"{name}.{ext}" for name in ("interactions", "items")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise MissingSourceError(f"missing input file(s): {missing}; data.dataset={ext} reads interactions.{ext} and "
                                 f"items.{ext} from {base}; see {OWN_DATA_DOC}")
    read = (lambda p: pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""])) if ext == "csv" else pd.read_parquet
    tables = {name: read(path) for name, path in paths.items()}
    for name, df in tables.items():
        require_columns(df, name, str(paths[name]))
    return tables["interactions"], tables["items"], {}
