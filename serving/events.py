"""Real-time events: validate, append durably to the event log, update the user's online features.

The event log (JSONL, one event per line) is the source of truth that the next ingest reads;
the online store is a cache of each user's recent behaviour that the next ``/recommend`` reads.
Order of writes: the log first (fsync'd), then the online store, both under one lock, so
concurrent writers never lose each other's updates and an accepted event is on disk before it
is acknowledged.

A process killed between those two writes leaves events in the log that the online store lacks
(their client got no answer). At start the service replays the log into the online store
(``features.online.unapplied`` picks what is missing), and an event already in a user's online history (same item,
same second) is never applied twice, so replays and client retries are harmless.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pandas as pd

from features.online import Event, lock_path, log_lock, read_logged_events
from features.schema import parse_timestamps
from serving.validate import AGE_ENV, AHEAD_ENV, Rejected, TimeWindow, id_problem

log = logging.getLogger(__name__)


class EventRejected(Rejected):
    """A batch with at least one bad event: nothing of it was written."""

    what = "event"


def _short(v: object, n: int = 40) -> str:
    s = str(v)
    return s if len(s) <= n else s[:n] + "..."


def parse_events(raw: list[dict], known_items: set[str], now: int | None = None, window: TimeWindow | None = None) -> list[Event]:
    """All-or-nothing validation of a batch: every reason is reported, or every event is returned.

    Ids follow ``serving.validate.id_problem``; ``ts`` (unix seconds or ISO-8601, default now)
    must fall inside ``window`` around now; ``value`` must be a finite number.
    """
    now = int(datetime.now(timezone.utc).timestamp()) if now is None else now
    lo, hi = (window or TimeWindow()).bounds(now)
    out, reasons = [], []
    for i, e in enumerate(raw):
        why = []
        if not isinstance(e, dict):
            reasons.append({"index": i, "reason": "not a JSON object"})
            continue
        why += [p for p in (id_problem(e.get("user_id"), "user_id"), id_problem(e.get("item_id"), "item_id")) if p]
        item = str(e.get("item_id") or "").strip()
        if not any("item_id" in w for w in why) and item not in known_items:
            why.append(f"unknown item_id '{_short(item)}'")
        ts = e.get("ts")
        if ts is None:
            ts = now
        elif isinstance(ts, bool) or not isinstance(ts, (int, float, str)) or (isinstance(ts, float) and not math.isfinite(ts)):
            why.append(f"unparsable ts '{_short(ts)}': unix seconds or ISO-8601 expected")
            ts = None
        else:  # the same parser as ingest: unix seconds (number or numeric string) or ISO-8601
            # whole unix seconds in range, the common case, skip the pandas parse (~1.5 ms of an event's ~5)
            parsed = ts if isinstance(ts, int) and abs(ts) < 1e11 else parse_timestamps(pd.Series([ts], dtype=object)).iloc[0]
            if not isinstance(parsed, int) and pd.isna(parsed):
                why.append(f"unparsable ts '{_short(ts)}'")
                ts = None
            else:
                ts = parsed if isinstance(parsed, int) else int(parsed.timestamp())
                if not lo <= ts <= hi:
                    why.append(f"ts {ts} is outside the accepted window {_iso(lo)} .. {_iso(hi)} "
                               f"({AGE_ENV} back, {AHEAD_ENV} ahead)")
        value = e.get("value")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                why.append("value must be a number")
            elif not math.isfinite(value):
                why.append("value must be a finite number (not NaN or Infinity)")
        kind = e.get("event")
        if kind is not None and kind != "" and (p := id_problem(kind, "event")):
            why.append(p)
        if why:
            reasons.append({"index": i, "reason": ", ".join(why)})
        else:
            out.append(Event(str(e["user_id"]).strip(), item, int(ts), str(kind or "interaction").strip(),
                             None if value is None else float(value)))
    if reasons:
        raise EventRejected(reasons)
    return out


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventLog:
    """Append-only JSONL; appends are fsync'd and serialised across threads and processes."""

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

    def append(self, events: list[Event] | list[dict]) -> None:
        lines = "".join(json.dumps(e if isinstance(e, dict) else e.__dict__) + "\n" for e in events)
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
        return read_logged_events(self.path)


