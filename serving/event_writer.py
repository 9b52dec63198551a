"""The service's write path of user behaviour: accepted events, a forgotten user, the replay at start.

Every write takes the event log's lock and then the online store's write lock, so a user's
read-modify-write of their online row is serialised across threads, the processes of one
machine (the log's file lock) and replicas (the Redis lock of a shared online store). The log is
appended first and the online row written after: a process killed between the two leaves an
event the online store lacks, which the replay at the next start puts back (``replay``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from core.eventlog import Event, RecordLog, events_by_user, read_events, tombstone
from features.online import BehaviourSpec, forgotten_row, fresh_events, replay_events, write_merged
from features.store import OnlineBehaviour

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """What a batch of accepted events did: ``duplicates`` of them were retries, not logged again."""

    accepted: int
    duplicates: int
    users: list[str]


class EventWriter:
    """Writes validated events and tombstones to the event log and the online store, under both locks.

    ``spec`` is called at each write: the merge needs the item categories of the model being
    served, which a reload replaces."""

    def __init__(self, event_log: RecordLog, online: OnlineBehaviour, spec: Callable[[], BehaviourSpec]) -> None:
        self.event_log, self.online, self.spec = event_log, online, spec

    def write(self, events: list[Event]) -> Written:
        """Log and apply a batch (already validated). An event the user's row already holds (same
        item, same second: a client's retry) is acknowledged but not logged again, so retries
        leave one log line, not five; the log keeps the request's order."""
        by_user = events_by_user(events)
        with self.event_log.locked(), self.online.write_lock():
            states, fresh = fresh_events(self.online, by_user)
            order = {id(e): n for n, e in enumerate(events)}
            new = sorted((e for evs in fresh.values() for e in evs), key=lambda e: order[id(e)])
            if new:
                self.event_log.append(new)
            write_merged(self.online, states, fresh, self.spec())
        return Written(accepted=len(events), duplicates=len(events) - len(new), users=sorted(by_user))

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
