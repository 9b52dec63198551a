"""The event log and the items log on Redis Streams, shared by every replica, and the choice of backend.

With ``PULSE_EVENT_LOG=redis://[:password@]host:port[/db]`` (``rediss://`` for TLS) the service
appends accepted events and tombstones to the stream ``pulse:events`` and posted items to
``pulse:items`` on that server, and the pipeline's ingest and features stages read the same
streams: with two replicas on two machines, ingest sees the events of both. Anything else in
``PULSE_EVENT_LOG`` is a file path (the JSONL ``core.eventlog.EventLog``, the default, at
``data.event_log`` / the model's metadata when the variable is unset).

One stream entry per record (``XADD``), with the record's JSON fields as the entry's fields, each
value JSON-encoded (``user_id`` -> ``"u1"``, ``ts`` -> ``1767225600``, ``value`` -> ``null``), so
the same readers (``core.eventlog``) decode both backends into the same objects. A batch is
one ``MULTI``/``EXEC``: it lands whole or not at all, and the service acknowledges it only after
``EXEC`` returned. How durable that is depends on the server's persistence: with ``appendonly yes``
and ``appendfsync always`` Redis fsyncs each write before answering, which is what the file log's
fsync promised ("an accepted event is never lost"); ``appendfsync everysec`` may lose the last
second on a power loss, no persistence loses everything on a restart.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

from core.eventlog import Entry, Event, EventLog, RecordLog, as_record, decode_json, items_log_path

log = logging.getLogger(__name__)

EVENT_LOG_ENV = "PULSE_EVENT_LOG"
EVENTS_STREAM = "pulse:events"
ITEMS_STREAM = "pulse:items"
PAGE = 1000  # entries per XRANGE: a long log is read in pages, never in one reply


def encode_fields(record: Event | dict) -> dict[str, str]:
    """A record as stream entry fields: its JSON keys, each value JSON-encoded (types survive)."""
    fields = {str(k): json.dumps(v) for k, v in as_record(record).items()}
    if not fields:
        raise ValueError("a stream entry needs at least one field; an empty record cannot be logged")
    return fields


def decode_fields(fields: Mapping[Any, Any]) -> tuple[dict | None, str | None]:
    """(the record, None) or (None, why not) of a stream entry's fields."""
    out = {}
    for k, v in fields.items():
        key = k.decode() if isinstance(k, bytes) else str(k)
        value, problem = decode_json(v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v))
        if problem is not None:
            return None, f"field {key}: {problem}"
        out[key] = value
    return out, None


def next_id(entry_id: str) -> str:
    """The smallest stream id after ``entry_id`` (``ms-seq`` -> ``ms-(seq+1)``): an exclusive start
    that Redis 5 and 6.0 understand too (``(id`` needs 6.2)."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


class RedisStreamLog:
    """The Redis Streams backend of ``core.eventlog.RecordLog``: one stream, one entry per record."""

    def __init__(self, client: Any, key: str, page: int = PAGE, lock_timeout_s: float = 30.0) -> None:
        self.client = client
        self.key = key
        self.page = page
        self.lock_timeout_s = lock_timeout_s
        self._thread_lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"redis stream {self.key}"

    def exists(self) -> bool:
        return bool(self.client.exists(self.key))

    def append(self, records: Sequence[Event | dict]) -> None:
        """XADD each record, the batch in one transaction; returns once Redis has answered (with
        ``appendfsync always``, once the entries are on its disk)."""
        if not records:
            return
        pipe = self.client.pipeline(transaction=True)
        for r in records:
            pipe.xadd(self.key, encode_fields(r))
        pipe.execute()

    def entries(self, since: str | None = None) -> Iterator[Entry]:
        """The entries after stream id ``since`` (default: from the first), ``page`` per XRANGE."""
        start = "-" if since is None else next_id(since)
        while True:
            batch = self.client.xrange(self.key, min=start, max="+", count=self.page)
            for raw_id, fields in batch:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                record, problem = decode_fields(fields)
                yield Entry(f"entry {entry_id}", entry_id, record, problem)
            if len(batch) < self.page:
                return
            start = next_id(entry_id)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time across threads and every process of every replica (a Redis lock,
        ``SET NX`` with an expiry, beside the stream): the service's check for duplicates, the
        append and the online write it feeds stay one step, as under the file log's flock."""
        with self._thread_lock:
            lock = self.client.lock(f"{self.key}:lock", timeout=self.lock_timeout_s, blocking_timeout=self.lock_timeout_s)
            if not lock.acquire():
                raise TimeoutError(f"could not take the Redis lock {self.key}:lock in {self.lock_timeout_s:.0f} s")
            try:
                yield
            finally:
                try:
                    lock.release()
                except Exception:  # noqa: BLE001 (expired meanwhile: another writer may hold it now)
                    log.warning("the Redis lock %s:lock expired before its release", self.key)

    def repair(self) -> int:
        """Nothing to cut: an XADD lands whole or not at all."""
        return 0


@dataclass(frozen=True)
class ServiceLogs:
    """The two logs of one deployment and this machine's folder for what is never shared (the
    encoder's cache of posted items' vectors)."""

    events: RecordLog
    items: RecordLog
    local_dir: Path

    @property
    def shared(self) -> bool:
        """Every replica appends to these same logs (Redis), so a record is logged once, by the
        process that accepted it."""
        return isinstance(self.events, RedisStreamLog)


def is_redis_url(setting: str) -> bool:
    return urlsplit(setting).scheme in ("redis", "rediss")


def open_logs(setting: str | None, default: Path, resolve: Callable[[str], Path] = Path) -> ServiceLogs:
    """The logs ``setting`` (a ``PULSE_EVENT_LOG`` value) names: a Redis URL gives the streams
    ``pulse:events`` / ``pulse:items`` there; a path, resolved by ``resolve``, the JSONL file with
    ``items.jsonl`` beside it; empty, the file at ``default``."""
    setting = (setting or "").strip()
    if is_redis_url(setting):
        import redis

        if not urlsplit(setting).hostname:
            raise ValueError(f"{EVENT_LOG_ENV}={setting!r}: expected redis://host:port[/db]")
        client = redis.Redis.from_url(setting)
        log.info("event log and items log: Redis streams %s and %s", EVENTS_STREAM, ITEMS_STREAM)
        return ServiceLogs(RedisStreamLog(client, EVENTS_STREAM), RedisStreamLog(client, ITEMS_STREAM), Path(default).parent)
    path = resolve(setting) if setting else Path(default)
    return ServiceLogs(EventLog(path), EventLog(items_log_path(path)), path.parent)


def logs_from_env(default: Path, resolve: Callable[[str], Path] = Path, env: Mapping[str, str] | None = None) -> ServiceLogs:
    """The one place the backend is chosen: ``$PULSE_EVENT_LOG`` (``open_logs``). Callers read it
    once, at start, and pass the result down."""
    return open_logs((os.environ if env is None else env).get(EVENT_LOG_ENV), default, resolve)
