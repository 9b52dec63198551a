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

Where the records are stored is the log's backend (``RecordLog``): ``EventLog`` here, a JSONL file
per machine (the default), or ``core.streamlog.RedisStreamLog``, a Redis stream that every
replica shares (``PULSE_EVENT_LOG=redis://...``, chosen by ``core.streamlog.logs_from_env``).
A backend only stores and returns JSON objects (``Entry``); every reader below (live events,
tombstones, the ingest frame, the items frame) works on those entries, so both backends give the
same events, the same frame and the same warnings for the same records.
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
from typing import Any, ContextManager, Iterable, Iterator, Protocol, Sequence, Union

import pandas as pd

from core.schema import INTERACTION_COLUMNS, ITEM_COLUMNS

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


# ---------------------------------------------------------------- the backend interface


@dataclass(frozen=True)
class Entry:
    """One stored record of a log, as a backend returns it: the decoded JSON value, or None with
    the ``problem`` that kept it from being read (a torn line, a hand edit). ``where`` names it in
    warnings (``line 3``, ``entry 1700000000000-0``); ``cursor`` is the position after it, what
    ``entries(since=...)`` continues from."""

    where: str
    cursor: str
    record: Any
    problem: str | None = None


class RecordLog(Protocol):
    """An append-only log of JSON objects (events and tombstones, or items): append, read all
    (``entries()``), read since a cursor (``entries(since)``). ``locked`` serialises the writers
    of every process that shares the log; ``repair`` cuts what a killed writer left half-written."""

    @property
    def name(self) -> str: ...

    def append(self, records: Sequence[Event | dict]) -> None: ...

    def entries(self, since: str | None = None) -> Iterator[Entry]: ...

    def locked(self) -> ContextManager[None]: ...

    def repair(self) -> int: ...

    def exists(self) -> bool: ...


LogLike = Union[RecordLog, Path, str]  # a path means the JSONL file there


def as_log(log_: LogLike) -> RecordLog:
    """A backend for a reader's argument: a path is the JSONL file there (callers that only know a path)."""
    return EventLog(Path(log_)) if isinstance(log_, (str, Path)) else log_


def as_record(r: Event | dict) -> dict:
    """The JSON object that is logged for an event (its fields) or a tombstone / item (as is)."""
    return dict(r) if isinstance(r, dict) else dict(r.__dict__)


def decode_json(text: str) -> tuple[Any, str | None]:
    """(the value, None) or (None, why not): one parser for every backend's stored text."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg})"


# ---------------------------------------------------------------- readers


def _log_records(log_: LogLike) -> Iterator[dict]:
    """The JSON objects of an event log in order; a torn (never acknowledged) record is skipped."""
    source = as_log(log_)
    for entry in source.entries():
        if entry.problem is not None:
            log.warning("event log %s: skipping %s: %s", source.name, entry.where, entry.problem)
        elif isinstance(entry.record, dict):
            yield entry.record


def tombstone(user_id: str, at: int) -> dict:
    """The log line that forgets ``user_id``: everything of theirs up to ``at`` (unix seconds)."""
    return {"forget": str(user_id), "at": int(at)}


def _live_records(log_: LogLike) -> tuple[list[dict], dict[str, int]]:
    """(the event records no later tombstone erases, in log order; {forgotten user: latest ``at``})."""
    records = list(_log_records(log_))
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


def forgotten_users(log_: LogLike) -> dict[str, int]:
    """{user_id: unix seconds} of every tombstone in the log (the latest per user)."""
    return _live_records(log_)[1]


def read_events(log_: LogLike) -> list[Event]:
    """Every live event of an event log, in log order: a torn last line (never acknowledged)
    is skipped, and so is every event logged before its user's tombstone."""
    return [event_from_dict(rec) for rec in _live_records(log_)[0]]


def read_event_frame(log_: LogLike) -> pd.DataFrame:
    """The live events of the log as raw interaction rows (the canonical columns) for ingest to
    validate with every other source; ``ts`` stays text, so ingest's one timestamp parser reads it."""
    live = _live_records(log_)[0]
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
    from core.schema import parse_timestamps

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


def _item_problem(entry: Entry) -> str | None:
    """Why an items log entry cannot be an item (None: it can)."""
    if entry.problem is not None:
        return entry.problem
    if not isinstance(entry.record, dict):
        return "not a JSON object"
    return None if str(entry.record.get("item_id") or "").strip() else "no item_id"


def read_items_log(log_: LogLike) -> pd.DataFrame:
    """Items upserted through the service; the latest record for an id wins.

    A record that is not a JSON object with a non-blank ``item_id`` (a torn write, a hand edit) is
    skipped with a WARNING naming where it is, so one bad record never keeps the service (which
    reads this log at start) or the next ingest from running."""
    source = as_log(log_)
    rows, skipped = [], 0
    for entry in source.entries():
        why = _item_problem(entry)
        if why is not None:
            skipped += 1
            log.warning("items log %s: skipping %s: %s", source.name, entry.where, why)
            continue
        rows.append({**{c: entry.record.get(c) for c in ITEM_COLUMNS}, "item_id": str(entry.record["item_id"])})
    if skipped:
        log.warning("items log %s: skipped %d invalid line(s), read %d", source.name, skipped, len(rows))
    df = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    return df.drop_duplicates("item_id", keep="last").reset_index(drop=True)


# ---------------------------------------------------------------- the file backend


class EventLog:
    """The file backend of ``RecordLog``: append-only JSONL (events or items) on this machine;
    appends are fsync'd and serialised across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = lock_path(self.path)
        self._thread_lock = threading.Lock()

    @property
    def name(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time, across threads (lock) and worker processes (flock)."""
        with self._thread_lock, log_lock(self.path):
            yield

    def append(self, records: Sequence[Event | dict]) -> None:
        """One JSON line per record, fsync'd before it returns: an acknowledged record is on disk."""
        lines = "".join(json.dumps(as_record(r)) + "\n" for r in records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def entries(self, since: str | None = None) -> Iterator[Entry]:
        """The records from byte offset ``since`` (default: the start), one per non-blank line. An
        unterminated last line (a torn append) keeps the cursor at its start, so a later
        ``entries(since)`` reads it again once whole."""
        if not self.path.exists():
            return
        offset = int(since or 0)
        with self.path.open("rb") as f:
            f.seek(offset)
            for n, raw in enumerate(f, 1):
                start, offset = offset, offset + len(raw)
                text = raw.decode("utf-8", errors="replace")
                if not text.strip():
                    continue
                value, problem = decode_json(text)
                where = f"line {n}" if not since else f"line {n} after byte {since}"
                yield Entry(where, str(offset if raw.endswith(b"\n") else start), value, problem)

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
        """Every live logged event, in log order."""
        return read_events(self)
