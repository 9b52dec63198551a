"""The event log and the items log: what the service accepted, kept as JSONL until the next ingest.

One module for the whole concept, because four places use it and must agree byte for byte:
the service appends to both logs (``POST /events``, ``POST /items``) and replays the event log
into the online store at start; the ``features`` stage replays it after materializing; the
``ingest`` stage folds both logs into the canonical tables.

Format: one JSON object per line. An event line is an ``Event`` (``user_id``, ``item_id``,
``ts`` in unix seconds, ``event``, ``value``); an items line is ``item_id``, ``title``, ``text``,
``categories``. The items log lives beside the event log (``items_log_path``).

Forgetting a user (``POST /forget``) appends a tombstone, ``{"forget": user_id, "at": unix s}``:
every reader drops that user's events logged before it, ingest drops the user's source rows up to
``at`` (``drop_forgotten``), and the features stage does the same before it builds the offline and
online stores, so after the next pipeline run nothing of the user remains in the data, the feature
store or the online rows. The tombstone stays (it holds no behaviour): it is what keeps a re-run
of ingest on the same source from bringing the user back.

The log is the source of truth that the next ingest reads; the online store is a cache of each
user's recent behaviour. Writers hold ``log_lock`` (an flock beside the log, so it holds across
processes: service workers and a pipeline run) around the append *and* the online write it
feeds, log first, so concurrent writers never lose each other's updates; every append is fsync'd
before it returns, so an accepted event is on disk before it is acknowledged. A process killed
between the two writes leaves events the online store lacks: the next replay
(``features.online.replay_events``) applies them, and never twice. A process killed in the middle
of an append leaves a torn last line that was never acknowledged: ``EventLog.repair`` cuts it and
both readers skip it.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from features.schema import INTERACTION_COLUMNS, ITEM_COLUMNS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One accepted behaviour, as logged and as merged into the online store."""

    user_id: str
    item_id: str
    ts: int  # unix seconds
    event: str = "interaction"
    value: float | None = None


def event_from_dict(d: dict) -> Event:
    value = d.get("value")
    return Event(str(d["user_id"]), str(d["item_id"]), int(d["ts"]), str(d.get("event") or "interaction"),
                 None if value is None else float(value))


def events_by_user(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events grouped by user, users in order of first appearance, each user's events in log order
    (the unit of an online read-modify-write)."""
    out: dict[str, list[Event]] = {}
    for e in events:
        out.setdefault(e.user_id, []).append(e)
    return out


def items_log_path(event_log: Path) -> Path:
    """Items posted to the service live beside its event log."""
    return Path(event_log).with_name("items.jsonl")


def lock_path(event_log: Path) -> Path:
    return Path(event_log).with_suffix(Path(event_log).suffix + ".lock")


@contextmanager
def log_lock(event_log: Path) -> Iterator[None]:
    """The writers' lock of an event log and the online rows it feeds (an flock, so it holds
    across processes: service workers and a pipeline run)."""
    path = lock_path(event_log)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------- readers


def _log_records(path: Path) -> Iterator[dict]:
    """The JSON objects of an event log in order; a torn (never acknowledged) line is skipped."""
    if not Path(path).exists():
        return
    with Path(path).open() as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                log.warning("event log %s: skipping a torn line", path)
                continue
            if isinstance(rec, dict):
                yield rec


def tombstone(user_id: str, at: int) -> dict:
    """The log line that forgets ``user_id``: everything of theirs up to ``at`` (unix seconds)."""
    return {"forget": str(user_id), "at": int(at)}


def _live_records(path: Path) -> tuple[list[dict], dict[str, int]]:
    """(the event records no later tombstone erases, in log order; {forgotten user: latest ``at``})."""
    records = list(_log_records(path))
    last_forget: dict[str, int] = {}  # user -> log position of their last tombstone
    forgotten: dict[str, int] = {}
    for n, rec in enumerate(records):
        if "forget" in rec:
            user = str(rec["forget"])
            last_forget[user] = n
            forgotten[user] = max(forgotten.get(user, 0), int(rec.get("at") or 0))
    live = [rec for n, rec in enumerate(records)
            if "forget" not in rec and n > last_forget.get(str(rec.get("user_id")), -1)]
    return live, forgotten


def forgotten_users(path: Path) -> dict[str, int]:
    """{user_id: unix seconds} of every tombstone in the log (the latest per user)."""
    return _live_records(path)[1]


def read_events(path: Path) -> list[Event]:
    """Every live event of a JSONL event log, in log order: a torn last line (never acknowledged)
    is skipped, and so is every event logged before its user's tombstone."""
    return [event_from_dict(rec) for rec in _live_records(path)[0]]


def read_event_frame(path: Path) -> pd.DataFrame:
    """The live events of the log as raw interaction rows (the canonical columns) for ingest to
    validate with every other source; ``ts`` stays text, so ingest's one timestamp parser reads it."""
    live = _live_records(Path(path))[0]
    if not live:
        return pd.DataFrame(columns=INTERACTION_COLUMNS)
    df = pd.DataFrame([{c: r.get(c) for c in INTERACTION_COLUMNS} for r in live], columns=INTERACTION_COLUMNS)
    for c in ("user_id", "item_id", "ts"):
        df[c] = df[c].map(lambda v: None if v is None else str(v))
    return df


def drop_forgotten(interactions: pd.DataFrame, forgotten: dict[str, int]) -> tuple[pd.DataFrame, int]:
    """(``interactions`` without the forgotten users' rows up to their tombstone, rows dropped).
    A row whose timestamp cannot be read counts as before it: when in doubt, forget."""
    if not forgotten or interactions.empty:
        return interactions, 0
    from features.schema import parse_timestamps

    users = interactions["user_id"].astype(str)
    hit = users.isin(set(forgotten))
    if not hit.any():
        return interactions, 0
    ts = parse_timestamps(interactions.loc[hit, "ts"]) if not pd.api.types.is_datetime64_any_dtype(interactions["ts"]) \
        else interactions.loc[hit, "ts"]
    at = pd.to_datetime(users[hit].map(forgotten), unit="s", utc=True)
    drop = pd.Series(False, index=interactions.index)
    drop[hit] = (ts.isna() | (ts <= at)).to_numpy()
    return interactions[~drop].reset_index(drop=True), int(drop.sum())


def read_items_log(path: Path) -> pd.DataFrame:
    """Items upserted through the service (JSONL); the latest line for an id wins.

    A line that is not a JSON object with a non-blank ``item_id`` (a torn write, a hand edit) is
    skipped with a WARNING naming its line number, so one bad line never keeps the service (which
    reads this log at start) or the next ingest from running."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=ITEM_COLUMNS)
    rows, skipped = [], 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                row, why = None, f"not valid JSON ({e.msg})"
            else:
                why = "not a JSON object" if not isinstance(row, dict) else None
            if why is None and not str(row.get("item_id") or "").strip():
                why = "no item_id"
            if why is not None:
                skipped += 1
                log.warning("items log %s: skipping line %d: %s", path, n, why)
                continue
            rows.append({**{c: row.get(c) for c in ITEM_COLUMNS}, "item_id": str(row["item_id"])})
    if skipped:
        log.warning("items log %s: skipped %d invalid line(s), read %d", path, skipped, len(rows))
    df = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    return df.drop_duplicates("item_id", keep="last").reset_index(drop=True)


# ---------------------------------------------------------------- the writer


class EventLog:
    """Append-only JSONL (events or items); appends are fsync'd and serialised across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_path = lock_path(self.path)
        self._thread_lock = threading.Lock()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time, across threads (lock) and worker processes (flock)."""
        with self._thread_lock, log_lock(self.path):
            yield

    def append(self, records: list[Event] | list[dict]) -> None:
        lines = "".join(json.dumps(r if isinstance(r, dict) else r.__dict__) + "\n" for r in records)
        with self.path.open("a") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def repair(self) -> int:
        """Cut a torn last line (a process killed in the middle of an append, whose batch was never
        acknowledged), so the log stays valid JSONL for the next append and the next ingest.
        Call it under ``locked()``. Returns the number of bytes cut."""
        if not self.path.exists():
            return 0
        with self.path.open("rb+") as f:
            end = keep = f.seek(0, os.SEEK_END)
            while keep > 0:  # back to just after the last newline, a block at a time
                start = max(0, keep - 65536)
                f.seek(start)
                nl = f.read(keep - start).rfind(b"\n")
                if nl >= 0:
                    keep = start + nl + 1
                    break
                keep = start
            if keep == end:
                return 0
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        log.warning("%s: cut a torn last line (%d bytes)", self.path, end - keep)
        return end - keep

    def read(self) -> list[Event]:
        """Every logged event, in log order."""
        return read_events(self.path)
