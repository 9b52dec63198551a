"""The service's write path of user behaviour: accepted events, a forgotten user, the replay at start.

Every write takes the event log's lock and then the online store's write lock, so a user's
read-modify-write of their online row is serialised across threads, the processes of one
machine (the log's file lock) and replicas (the Redis lock of a shared online store). The log is
appended first and the online row written after: a process killed between the two leaves an
event the online store lacks, which the replay at the next start puts back (``replay``).

Concurrent ``write`` calls of one process are committed as a group: whichever caller takes the
writer's turn first writes every batch queued by then, with one log append (one fsync) and one
online-store write, and the others find their batch done. Each caller still gets its own answer
only after its events are durable, and the group is the same as writing the batches one after
another in queue order (a retry of an event earlier in the group is a duplicate). Why: the
fsync and the online commit cost a few ms each and are taken under a lock every writer shares,
so one event per commit caps a process at a few hundred events a second however many clients.

A large group is written in chunks of whole users, about ``CHUNK_EVENTS`` events each (each
chunk logged, then applied online, under the locks), each chunk run by ``run_chunk`` (the
service: as a job of its scoring thread). Why: merging thousands of events is interpreter work,
and a ``/recommend`` scored on another thread meanwhile waited for the interpreter lock at each of
its torch operations, hundreds of times (a 10,000-event batch took one from 6 to 370 ms,
docs/deploying.md). On the one thread the two take turns instead: a request queued during a chunk
is scored before the next, and between chunks the writer waits (``bulk_share``, ``PULSE_BULK_SHARE``:
by default a group takes 15% of a core: a 10,000-event batch takes about 3 s on the 2-core machine),
so a bulk upload leaves most of the cores to ``/recommend`` (docs/deploying.md, "Stop 24"). Each chunk keeps the log-first order, so a crash between chunks loses
nothing: what was logged is replayed, and the client, without an answer, retries (the logged part
counts as duplicates).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from core.eventlog import Event, RecordLog, events_by_user, read_events, tombstone
from features.online import BehaviourSpec, forgotten_row, fresh_events, replay_events, write_merged
from features.store import OnlineBehaviour
from serving.env import number_from_env

log = logging.getLogger(__name__)

BULK_SHARE_ENV = "PULSE_BULK_SHARE"
CHUNK_EVENTS = 100  # events per log append and online write of a large group (chunks of whole users)


@dataclass
class _Pending:
    """One caller's batch in the write queue, and what became of it."""

    events: list[Event]
    done: bool = False
    result: Written | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Written:
    """What a batch of accepted events did: ``duplicates`` of them were retries, not logged again."""

    accepted: int
    duplicates: int
    users: list[str]


def bulk_share_from_env(default: float = 0.15) -> float:
    """``PULSE_BULK_SHARE``: the share of a core a large ``/events`` batch may take (0 < share <= 1)."""
    return number_from_env(BULK_SHARE_ENV, default, "a share of a core in (0, 1]", high=1.0, low_open=True)


class EventWriter:
    """Writes validated events and tombstones to the event log and the online store, under both locks.

    ``spec`` is called at each write: the merge needs the item categories of the model being
    served, which a reload replaces."""

    def __init__(self, event_log: RecordLog, online: OnlineBehaviour, spec: Callable[[], BehaviourSpec],
                 run_chunk: Callable[[Callable[[], tuple[set[int], float]]], tuple[set[int], float]] | None = None,
                 chunk_events: int = CHUNK_EVENTS, bulk_share: float = 1.0) -> None:
        """``run_chunk``: how each chunk of a group larger than ``chunk_events`` is run (the
        service: on its scoring thread, between ``/recommend`` passes); None: here.
        ``bulk_share``: the share of a core such a group may take: after a chunk that took ``t``
        seconds of CPU the writer waits ``t * (1 - share) / share`` before the next (1: no wait)."""
        if not 0.0 < bulk_share <= 1.0:
            raise ValueError(f"bulk_share must be in (0, 1], got {bulk_share}")
        self.event_log, self.online, self.spec = event_log, online, spec
        self.run_chunk, self.chunk_events, self.bulk_share = run_chunk, chunk_events, bulk_share
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()  # one group at a time in this process (the locks below: across processes)

    def write(self, events: list[Event]) -> Written:
        """Log and apply a batch (already validated), returning once it is durable. An event the
        user's row already holds (same item, same second: a client's retry) is acknowledged but not
        logged again, so retries leave one log line, not five; the log keeps the request's order."""
        mine = _Pending(events)
        with self._queue_lock:
            self._queue.append(mine)
        with self._turn:
            if not mine.done:  # else the group of an earlier turn held it
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit(group)
        if mine.error is not None:
            raise mine.error
        assert mine.result is not None
        return mine.result

    def _commit(self, group: list[_Pending]) -> None:
        """Write every queued batch as one (one append, one online write; a large group chunk by chunk,
        ``_chunks``); each batch's own answer."""
        events = [e for p in group for e in p.events]
        try:
            chunks = self._chunks(events)
            run = self.run_chunk if self.run_chunk is not None and len(chunks) > 1 else (lambda fn: fn())
            new_ids: set[int] = set()
            for n, chunk in enumerate(chunks):
                fresh_ids, cpu_s = run(lambda chunk=chunk: self._write_chunk(chunk))
                new_ids |= fresh_ids
                if n + 1 < len(chunks) and self.bulk_share < 1.0:  # leave the cores to the requests meanwhile
                    time.sleep(cpu_s * (1.0 - self.bulk_share) / self.bulk_share)
            for p in group:
                fresh_here = sum(id(e) in new_ids for e in p.events)
                p.result = Written(accepted=len(p.events), duplicates=len(p.events) - fresh_here,
                                   users=sorted({e.user_id for e in p.events}))
        except BaseException as e:  # noqa: BLE001 (handed to every caller of the group, raised there)
            for p in group:
                p.error = e
        finally:
            for p in group:
                p.done = True
        if len(group) > 1:
            log.debug("committed %d requests' events (%d) as one group", len(group), len(events))

    def _write_chunk(self, chunk: list[Event]) -> tuple[set[int], float]:
        """Log and apply one chunk under both locks: the ids (``id``) of its events that were new, and
        the CPU seconds the chunk took on the thread that ran it."""
        started = time.thread_time()
        with self.event_log.locked(), self.online.write_lock():
            states, fresh = fresh_events(self.online, events_by_user(chunk))
            fresh_ids = {id(e) for evs in fresh.values() for e in evs}
            new = [e for e in chunk if id(e) in fresh_ids]  # log order = queue order, then request order (per chunk)
            if new:
                self.event_log.append(new)
            write_merged(self.online, states, fresh, self.spec())
        return fresh_ids, time.thread_time() - started

    def _chunks(self, events: list[Event]) -> list[list[Event]]:
        """The events in chunks of whole users (each user's online row is read and written once per
        chunk), about ``chunk_events`` each, every chunk in queue and request order."""
        if len(events) <= self.chunk_events:
            return [events]
        chunk_of: dict[str, int] = {}
        sizes: list[int] = []
        for user, evs in events_by_user(events).items():  # users in order of first appearance
            if not sizes or sizes[-1] >= self.chunk_events:
                sizes.append(0)
            chunk_of[user] = len(sizes) - 1
            sizes[-1] += len(evs)
        chunks: list[list[Event]] = [[] for _ in sizes]
        for e in events:
            chunks[chunk_of[e.user_id]].append(e)
        return chunks

    def forget(self, user_id: str) -> tuple[int, int]:
        """Tombstone the user in the log and empty their online row, after any write of theirs in
        flight and before the next: (the tombstone's unix seconds, the online events removed)."""
        at = int(time.time())
        with self.event_log.locked(), self.online.write_lock():
            held = self.online.read([user_id])[0]
            self.event_log.append([tombstone(user_id, at)])
            self.online.write([forgotten_row(user_id, self.spec().n_categories, at)])
        return at, len(held.get("hist_item_ids") or [])

    def replay(self) -> int:
        """Merge into the online store the logged events it lacks (a process killed between the log
        append and the online write), so it agrees with the log again; returns how many."""
        with self.event_log.locked(), self.online.write_lock():
            self.event_log.repair()
            n = replay_events(self.online, read_events(self.event_log), self.spec())
        if n:
            log.warning("replayed %d logged event(s) missing from the online store", n)
        return n
