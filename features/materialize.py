"""Incremental materialization of the online store: a full load the first time, then Feast's
``materialize_incremental`` so that a daily run writes only the rows after the last run.

Feast records each view's materialized intervals in its registry (they survive ``feast apply``);
``materialize_incremental(end_date)`` loads each view from its most recent end to ``end_date``.
That is exact only when nothing before the last end changed. So beside the registry this module
keeps ``<repo>/data/materialized.json``: the end it materialized up to and, per view, a hash of
each entity's newest row, what the online store holds. The next run loads incrementally only if
that leaves the online store as a full load would: every entity without a new row must have the
same newest row as last time. Otherwise (events that arrived late, a re-ingest of other data,
changed feature parameters or definitions), or when the online store file is gone, or when the
registry's end is not the one recorded here (a manual ``feast materialize``), it loads in full.

Calls into Feast go through ``features.store`` where it has them (``get_store``, ``materialize``);
``materialize_incremental`` is called here.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from features import store

log = logging.getLogger(__name__)

STATE = "materialized.json"  # in <repo>/data, beside the registry and the SQLite online store
TS = "event_timestamp"
EPS = pd.Timedelta(microseconds=1)  # the end is just past the newest row, whatever the store's end inclusivity


@dataclass
class MaterializeReport:
    mode: str                      # full | incremental
    reason: str                    # why this mode
    start: str | None              # incremental: the previous end (Feast's start); full: the earliest row
    end: str
    rows: dict[str, int] = field(default_factory=dict)  # per view: offline rows in [start, end]

    def summary(self) -> dict:
        return asdict(self)


def _row_hash(values: tuple) -> str:
    blob = json.dumps([v.tolist() if hasattr(v, "tolist") else v for v in values], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def online_image(rows: pd.DataFrame, keys: list[str], before: pd.Timestamp | None = None) -> dict[str, str]:
    """What a materialization of ``rows`` (those strictly before ``before``) leaves online: each
    entity's newest row, as entity -> a hash of the row's values."""
    part = rows if before is None else rows[rows[TS] < before]
    latest = part.sort_values(TS, kind="stable").groupby(keys, sort=False).tail(1)
    cols = sorted(latest.columns)
    return {"|".join(str(v) for v in key): _row_hash(vals)
            for key, vals in zip(latest[keys].itertuples(index=False, name=None), latest[cols].itertuples(index=False, name=None))}


def stale_entities(rows: pd.DataFrame, keys: list[str], before: pd.Timestamp, previous: dict[str, str]) -> list[str]:
    """Entities an incremental load from ``before`` would leave wrong: those without a row from
    ``before`` on whose newest earlier row is not the one the last load wrote (late events, changed
    features, a user never loaded)."""
    new = set("|".join(str(v) for v in k) for k in rows.loc[rows[TS] >= before, keys].itertuples(index=False, name=None))
    now = online_image(rows, keys, before)
    return [e for e, h in now.items() if e not in new and previous.get(e) != h]


def _state_path(repo: Path) -> Path:
    return Path(repo) / "data" / STATE


def read_state(repo: Path) -> dict | None:
    p = _state_path(repo)
    return json.loads(p.read_text()) if p.exists() else None


def _online_store_missing(fs, repo: Path) -> bool:
    cfg = fs.config.online_store
    if getattr(cfg, "type", "") != "sqlite":  # a remote store (Redis) is not ours to check
        return False
    path = Path(cfg.path)
    return not (path if path.is_absolute() else Path(repo) / path).exists()


def _keys(fs, names) -> dict[str, list[str]]:
    return {fv.name: [c.name for c in fv.entity_columns] for fv in fs.list_feature_views() if fv.name in names}


def plan(repo: Path, sources: dict[str, pd.DataFrame], fs=None) -> tuple[str, str, pd.Timestamp | None]:
    """(mode, reason, previous end): whether ``sources`` (view name -> its offline rows, as written)
    can be loaded incrementally on top of what the online store holds, leaving it as a full load would."""
    state = read_state(repo)
    if state is None:
        return "full", "first load (no materialization recorded)", None
    fs = fs or store.get_store(repo)
    prev_end = pd.Timestamp(state["end"])
    if _online_store_missing(fs, repo):
        return "full", "the online store file is missing", prev_end
    recorded = {fv.name: fv.most_recent_end_time for fv in fs.list_feature_views() if fv.name in sources}
    keys = _keys(fs, sources)
    for name, rows in sources.items():
        end = recorded.get(name)
        if end is None or pd.Timestamp(end) != prev_end:
            return "full", f"Feast's registry has {name} materialized up to {end}, not {prev_end}", prev_end
        if name not in state.get("online", {}):
            return "full", f"{name}: not in the last materialization", prev_end
        stale = stale_entities(rows, keys[name], prev_end, state["online"][name])
        if stale:
            return "full", f"{name}: rows before {prev_end} changed since the last materialization ({len(stale)} entities, e.g. {stale[0]})", prev_end
    return "incremental", f"rows before {prev_end} unchanged", prev_end


def materialize_online(repo: Path, sources: dict[str, pd.DataFrame], full: bool = False) -> MaterializeReport:
    """Load ``sources`` (view name -> the offline rows ``store.write_offline`` wrote, already applied)
    into the online store: everything the first time (or with ``full``, or when ``plan`` says the
    past changed), else only the rows after the previous end, through ``materialize_incremental``."""
    repo = Path(repo)
    fs = store.get_store(repo)
    first = min(df[TS].min() for df in sources.values())
    # just past the newest row, in whole microseconds (the registry keeps no finer time)
    end = max(df[TS].max() for df in sources.values()).floor("us") + EPS
    mode, reason, prev_end = ("full", "full load requested", None) if full else plan(repo, sources, fs)
    if mode == "incremental" and end <= prev_end:  # no new rows: nothing to write
        reason, start, end = f"nothing after {prev_end}", prev_end, prev_end
    elif mode == "incremental":
        start = prev_end
        fs.materialize_incremental(end_date=end.to_pydatetime(), feature_views=list(sources))
    else:
        start = first - pd.Timedelta(seconds=1)
        store.materialize(repo, start, end)
    rows = {n: int(((df[TS] >= start) & (df[TS] <= end)).sum()) for n, df in sources.items()}
    keys = _keys(fs, sources)
    # what the online store now holds, per entity (what a full load of these rows would hold)
    online = {n: online_image(df, keys[n]) for n, df in sources.items()}
    if mode == "incremental":  # entities without a row this time keep the previous load's
        online = {n: {**read_state(repo)["online"][n], **img} for n, img in online.items()}
    _state_path(repo).parent.mkdir(parents=True, exist_ok=True)
    _state_path(repo).write_text(json.dumps({"end": str(end), "mode": mode, "online": online}))
    report = MaterializeReport(mode, reason, str(start), str(end), rows)
    log.info("materialized the online store (%s: %s) from %s to %s: %s", mode, reason, start, end, rows)
    return report
