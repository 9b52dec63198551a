"""Stage `ingest`: load a source, validate it, quarantine bad rows, write the canonical tables.

Outputs (under ``data.raw_dir``): ``interactions.parquet``, ``items.parquet``,
``quarantine.parquet`` (every rejected row with its reason) and, for the synthetic source,
``ground_truth.parquet``. Counts go to ``reports/ingest.json``. The stage fails *after*
writing the quarantine and the report when the bad fraction exceeds
``ingest.max_bad_fraction``, so nothing is lost even when it fails.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from core import tracking
from features import adapters
from core.eventlog import drop_forgotten, forgotten_users, read_event_frame, read_items_log
from core.cli import stage_main
from core.params import Params
from core.schema import DataError, validate
from core.streamlog import ServiceLogs, logs_from_env

log = logging.getLogger(__name__)

REPORT = "reports/ingest.json"


class IngestError(DataError):
    """Too many bad rows: the data needs a look before anything trains on it (not retried)."""


@dataclass
class IngestResult:
    dataset: str
    rows_in: int
    rows_clean: int
    rows_quarantined: int
    items: int
    users: int
    bad_fraction: float
    quarantine_counts: dict[str, int]
    raw_dir: str

    def summary(self) -> dict:
        return asdict(self)


def run(params: Params, logs: ServiceLogs | None = None) -> IngestResult:
    """Ingest the source plus what the service accepted: ``logs`` (default: ``$PULSE_EVENT_LOG``,
    else ``data.event_log``; a file or the Redis streams every replica appends to)."""
    logs = logs or logs_from_env(params.path(params.data.event_log), params.path)
    raw_int, raw_items, extra = adapters.load(params)
    log.info("loaded %d interactions and %d items from '%s'", len(raw_int), len(raw_items), params.data.dataset)
    raw_int, raw_items = add_logged(raw_int, raw_items, logs)
    v = validate(raw_int, raw_items)
    out = params.path(params.data.raw_dir)
    out.mkdir(parents=True, exist_ok=True)
    v.interactions.to_parquet(out / "interactions.parquet", index=False)
    v.items.to_parquet(out / "items.parquet", index=False)
    v.quarantine.to_parquet(out / "quarantine.parquet", index=False)
    for name, df in extra.items():
        df.to_parquet(out / f"{name}.parquet", index=False)
    rows_in = len(raw_int) + len(raw_items)
    n_bad = len(v.quarantine)
    result = IngestResult(
        dataset=params.data.dataset,
        rows_in=rows_in,
        rows_clean=len(v.interactions) + len(v.items),
        rows_quarantined=n_bad,
        items=len(v.items),
        users=int(v.interactions["user_id"].nunique()),
        bad_fraction=n_bad / max(rows_in, 1),
        quarantine_counts=v.counts,
        raw_dir=str(out),
    )
    assert result.rows_clean + n_bad == rows_in, "ingest must account for every row"
    report = params.path(REPORT)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({k: v for k, v in result.summary().items() if k != "raw_dir"}, indent=2))
    tracking.write_metrics(tracking.metrics_path(params.path(params.tracking.metrics_dir), "ingest"), tracking.ingest_metrics(result.summary()))
    log.info("ingest: %d clean rows, %d quarantined (%s)", result.rows_clean, n_bad, v.counts or "none")
    if result.bad_fraction > params.ingest.max_bad_fraction:
        raise IngestError(
            f"{n_bad} of {rows_in} rows ({result.bad_fraction:.2%}) were quarantined, above "
            f"ingest.max_bad_fraction={params.ingest.max_bad_fraction:.2%}; see {out / 'quarantine.parquet'} and {report}"
        )
    return result


def add_logged(raw_int: pd.DataFrame, raw_items: pd.DataFrame, logs: ServiceLogs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) with the service's logs folded in: posted items replace the source's
    of the same id, logged events are appended, forgotten users' rows up to their tombstone dropped."""
    added = read_items_log(logs.items)
    if len(added):
        log.info("upserting %d items added through the service", len(added))
        raw_items = pd.concat([raw_items[~raw_items["item_id"].astype(str).isin(set(added["item_id"]))], added], ignore_index=True)
    events = read_event_frame(logs.events)
    if len(events):
        log.info("appending %d events from the service's event log %s", len(events), logs.events.name)
        raw_int = pd.concat([raw_int, events], ignore_index=True)
    forgotten = forgotten_users(logs.events)
    raw_int, n_forgotten = drop_forgotten(raw_int, forgotten)
    if n_forgotten:
        log.info("forgot %d source rows of %d user(s) who asked to be forgotten (POST /forget)", n_forgotten, len(forgotten))
    return raw_int, raw_items


def main() -> None:
    stage_main(run, "ingest: validate a source into the canonical tables")


if __name__ == "__main__":
    main()
