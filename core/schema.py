"""The canonical schema and the validation that splits raw rows into clean and quarantined.

Every row that enters ingest leaves it either in the clean tables or in the quarantine table
with a reason: nothing is dropped silently.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

INTERACTION_COLUMNS = ["user_id", "item_id", "ts", "event", "value"]
ITEM_COLUMNS = ["item_id", "title", "text", "categories"]

# quarantine reasons (the `reason` column of quarantine.parquet)
MISSING_USER = "missing_user_id"
MISSING_ITEM = "missing_item_id"
BAD_TIMESTAMP = "unparsable_timestamp"
UNKNOWN_ITEM = "unknown_item"
DUPLICATE = "exact_duplicate"
DUPLICATE_ITEM = "duplicate_item_id"

REQUIRED_COLUMNS = {"interactions": ("user_id", "item_id", "ts"), "items": ("item_id",)}
# column names other sources often use for a canonical one: named in the error as the likely fix
COMMON_NAMES = {
    "ts": ("timestamp", "time", "datetime", "date", "event_time", "created_at"),
    "user_id": ("user", "userid", "userId", "uid", "customer_id"),
    "item_id": ("item", "itemid", "itemId", "movieId", "movie_id", "product_id", "sku"),
}
OWN_DATA_DOC = "README.md, section 'Your own data'"


class DataError(ValueError):
    """The input itself is wrong: a person has to fix the data, so retrying the stage cannot help
    (the Prefect flows do not retry these)."""


class SchemaError(DataError):
    """A table lacks a canonical column or holds a value in a format ingest cannot read."""


def require_columns(df: pd.DataFrame, table: str, where: str) -> None:
    """Fail with the file, the column and the fix when ``df`` lacks a required canonical column.

    ``table`` is "interactions" or "items"; ``where`` names the source (a file path) for the message.
    """
    for col in REQUIRED_COLUMNS[table]:
        if col in df.columns:
            continue
        alias = next((c for c in df.columns if c in COMMON_NAMES.get(col, ()) or c.lower() in COMMON_NAMES.get(col, ())), None)
        fix = f"rename its column '{alias}' to '{col}'" if alias else f"add a '{col}' column"
        raise SchemaError(
            f"{where}: no '{col}' column (it has {list(map(str, df.columns))}). {table} needs the columns "
            f"{', '.join(INTERACTION_COLUMNS if table == 'interactions' else ITEM_COLUMNS)} "
            f"(required: {', '.join(REQUIRED_COLUMNS[table])}); {fix}. See {OWN_DATA_DOC}."
        )


@dataclass
class Validated:
    interactions: pd.DataFrame
    items: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def _clean_id(s: pd.Series) -> pd.Series:
    """Ids become stripped strings; NaN/None/'' become NA (so they can be quarantined)."""
    out = s.astype("string").str.strip()
    out = out.where(~out.isin(["", "nan", "None", "NaN", "<NA>"]))
    # integer-like floats ("12.0") read from CSVs are the same id as "12"
    return out.str.replace(r"^(\d+)\.0$", r"\1", regex=True)


def parse_timestamps(raw: pd.Series) -> pd.Series:
    """Unix seconds (numbers or numeric strings) or ISO-8601 strings -> UTC timestamps (NaT if unparsable)."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        ts = pd.to_datetime(raw, utc=True)
        return ts
    numeric = pd.to_numeric(raw, errors="coerce")
    # Only the in-range numbers go to pandas: it rounds every slot of its work array, masked ones
    # included (uninitialised memory), and under a process-wide np.seterr(over="raise") left by
    # another library that was a FloatingPointError now and then (a flaky test), not a data error.
    ok = numeric.notna() & (numeric.abs() < 1e11)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    with np.errstate(all="ignore"):
        if ok.any():
            out[ok] = pd.to_datetime(numeric[ok].astype("float64"), unit="s", utc=True)
        text = numeric.isna()
        if text.any():
            out[text] = pd.to_datetime(raw[text].astype("string"), utc=True, errors="coerce", format="ISO8601")
    return out


def parse_categories(v: object) -> list[str]:
    """An item's categories: a list, a JSON list (``'["jazz", "rock"]'``) or ``|``-separated text
    (``'jazz|rock'``), the two forms a CSV cell can hold. Anything else in brackets is an error,
    not one category named ``["jazz"``."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [str(c).strip() for c in v if str(c).strip()]
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return []
    text = str(v).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as e:
            raise SchemaError(f"categories value {text!r} starts with '[' but is not a JSON list ({e}); "
                              f"write it as '[\"jazz\", \"rock\"]' or 'jazz|rock'. See {OWN_DATA_DOC}.") from None
        if not isinstance(parsed, list):
            raise SchemaError(f"categories value {text!r} is not a JSON list. See {OWN_DATA_DOC}.")
        return [str(c).strip() for c in parsed if str(c).strip()]
    return [c.strip() for c in text.split("|") if c.strip()]


def _item_categories(item_id: str, v: object) -> list[str]:
    """parse_categories, with the item named in the error: the row to fix in the source file."""
    try:
        return parse_categories(v)
    except SchemaError as e:
        raise SchemaError(f"items: item '{item_id}': {e}") from None


def _warn_other_separators(categories: pd.Series) -> None:
    """A ',' or ';' inside one category is most often a separator ingest does not split on."""
    odd = [c for cats in categories for c in cats if "," in c or ";" in c]
    if odd:
        log.warning("%d categories contain ',' or ';' (e.g. %r) and are kept whole: separate categories with '|' "
                    "or write a JSON list (%s)", len(odd), odd[0], OWN_DATA_DOC)


def _quarantine_rows(df: pd.DataFrame, mask: pd.Series, reason: str, table: str) -> pd.DataFrame:
    q = df.loc[mask].copy()
    q = q.astype({c: "string" for c in q.columns})
    q.insert(0, "reason", reason)
    q.insert(0, "table", table)
    return q


class _Quarantine:
    """The rows set aside so far, each with its table and reason, and a count per ``table.reason``."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.counts: dict[str, int] = {}

    def take(self, df: pd.DataFrame, mask: pd.Series, reason: str, table: str) -> pd.DataFrame:
        """Quarantine the rows of ``df`` where ``mask`` holds; return the others."""
        n = int(mask.sum())
        if n:
            self.frames.append(_quarantine_rows(df, mask, reason, table))
            self.counts[f"{table}.{reason}"] = n
        return df.loc[~mask]

    def table(self) -> pd.DataFrame:
        if self.frames:
            return pd.concat(self.frames, ignore_index=True)
        return pd.DataFrame({"table": pd.Series(dtype="string"), "reason": pd.Series(dtype="string")})


def validate(interactions: pd.DataFrame, items: pd.DataFrame) -> Validated:
    """Split raw tables into canonical clean tables and a quarantine table with a reason per row.

    Order of checks (a row is quarantined for the first reason that applies): missing ids,
    unparsable timestamp, unknown item, exact duplicate. Clean interactions keep the original
    row order inside equal timestamps, which the evaluation protocol uses to break ties.
    """
    require_columns(interactions, "interactions", "interactions table")
    require_columns(items, "items", "items table")
    q = _Quarantine()
    it = _clean_items(items, q)
    ev = _clean_interactions(interactions, set(it["item_id"]), q)
    return Validated(interactions=ev, items=it, quarantine=q.table(), counts=q.counts)


def _clean_items(items: pd.DataFrame, q: _Quarantine) -> pd.DataFrame:
    """Canonical items: ids cleaned, missing and repeated ids quarantined, title/text/categories filled."""
    it = items.copy()
    it["item_id"] = _clean_id(it["item_id"])
    it = q.take(it, it["item_id"].isna(), MISSING_ITEM, "items")
    it = q.take(it, it["item_id"].duplicated(keep="first"), DUPLICATE_ITEM, "items")
    it["title"] = it.get("title", pd.Series("", index=it.index)).fillna("").astype(str)
    it["text"] = it.get("text", it["title"]).fillna("").astype(str)
    raw_cats = it.get("categories", pd.Series([[]] * len(it), index=it.index))
    it["categories"] = [_item_categories(i, c) for i, c in zip(it["item_id"], raw_cats)]
    _warn_other_separators(it["categories"])
    extra = [c for c in ("published_ts",) if c in it.columns]
    return it[ITEM_COLUMNS + extra].reset_index(drop=True)


def _clean_interactions(interactions: pd.DataFrame, item_ids: set, q: _Quarantine) -> pd.DataFrame:
    """Canonical interactions in time order (file order inside equal timestamps); bad rows quarantined."""
    ev = interactions.copy()
    for col in ("event", "value"):
        if col not in ev.columns:
            ev[col] = None
    ev["ts_raw"] = ev["ts"].astype("string")  # quarantine keeps what the source said
    raw_ts = ev["ts"]
    ev["user_id"] = _clean_id(ev["user_id"])
    ev["item_id"] = _clean_id(ev["item_id"])
    ev["ts"] = parse_timestamps(raw_ts)
    ev = q.take(ev, ev["user_id"].isna(), MISSING_USER, "interactions")
    ev = q.take(ev, ev["item_id"].isna(), MISSING_ITEM, "interactions")
    ev = q.take(ev, ev["ts"].isna(), BAD_TIMESTAMP, "interactions")
    ev = q.take(ev, ~ev["item_id"].isin(item_ids), UNKNOWN_ITEM, "interactions")
    ev["event"] = ev["event"].fillna("interaction").astype(str)
    ev["value"] = pd.to_numeric(ev["value"], errors="coerce").astype("float64")
    ev = q.take(ev, ev.duplicated(subset=INTERACTION_COLUMNS, keep="first"), DUPLICATE, "interactions")
    ev = ev[INTERACTION_COLUMNS].sort_values("ts", kind="stable").reset_index(drop=True)
    ev["user_id"] = ev["user_id"].astype(str)
    ev["item_id"] = ev["item_id"].astype(str)
    return ev
