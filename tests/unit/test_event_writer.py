"""serving.event_writer.EventWriter's group commit: concurrent writes of one process share one log
append and one online write, each caller gets its own answer once its events are durable, and the
result is that of writing the batches one after another (a retry inside a group is a duplicate)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.eventlog import Event, EventLog, read_events
from features.online import BehaviourSpec
from serving.event_writer import EventWriter
from tests.unit.helpers import DictOnlineStore

T0 = 1_780_000_000
SPEC = BehaviourSpec(50, {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}, 2, 1.0, 30.0)


class SlowLog(EventLog):
    """The real file log, each append slowed as a busy disk's fsync is: what makes groups form."""

    def __init__(self, path, delay_s: float = 0.05) -> None:  # noqa: ANN001
        super().__init__(path)
        self.delay_s, self.appends = delay_s, 0

    def append(self, records) -> None:  # noqa: ANN001
        time.sleep(self.delay_s)
        self.appends += 1
        super().append(records)


def _concurrently(writer: EventWriter, batches: list[list[Event]]) -> list:
    out: list = [None] * len(batches)

    def go(i: int) -> None:
        try:
            out[i] = writer.write(batches[i])
        except BaseException as e:  # noqa: BLE001
            out[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_writes_are_committed_in_groups_and_every_event_once(tmp_path):
    log, rows = SlowLog(tmp_path / "events.jsonl"), DictOnlineStore()
    writer = EventWriter(log, rows, lambda: SPEC)
    batches = [[Event(f"u{i % 5}", "a" if i % 2 else "b", T0 + i)] for i in range(24)]
    answers = _concurrently(writer, batches)
    assert all(a.accepted == 1 and a.duplicates == 0 for a in answers)
    assert sorted((e.user_id, e.ts) for e in read_events(log.path)) == sorted((b[0].user_id, b[0].ts) for b in batches)
    assert log.appends < len(batches) and rows.writes == log.appends  # groups formed: fewer commits than requests
    for u in range(5):  # every user's row holds all their events, in time order
        assert rows.rows[f"u{u}"]["hist_ts"] == sorted(T0 + i for i in range(24) if i % 5 == u)


def test_a_retry_in_the_same_group_is_a_duplicate_and_logged_once(tmp_path):
    log, rows = SlowLog(tmp_path / "events.jsonl", delay_s=0.2), DictOnlineStore()
    writer = EventWriter(log, rows, lambda: SPEC)
    first = threading.Thread(target=writer.write, args=([Event("w", "a", T0 - 5)],))
    first.start()  # holds the writer's turn for 0.2 s while the two below queue up as one group
    time.sleep(0.05)
    same = [[Event("u", "a", T0)], [Event("u", "a", T0), Event("u", "b", T0 + 1)]]
    answers = _concurrently(writer, same)
    first.join()
    assert sorted(a.duplicates for a in answers) == [0, 1]
    assert [(e.user_id, e.item_id, e.ts) for e in read_events(log.path)].count(("u", "a", T0)) == 1
    assert len(read_events(log.path)) == 3


def test_a_failed_commit_fails_every_caller_of_its_group(tmp_path):
    writer = EventWriter(SlowLog(tmp_path / "events.jsonl", delay_s=0.0), DictOnlineStore(fail=True), lambda: SPEC)
    answers = _concurrently(writer, [[Event("u", "a", T0 + i)] for i in range(4)])
    assert all(isinstance(a, OSError) for a in answers)
    with pytest.raises(OSError):
        writer.write([Event("v", "a", T0)])


def test_a_large_batch_is_written_in_chunks_of_whole_users_with_a_pause_between(tmp_path):
    """A batch larger than ``chunk_events`` is logged and applied chunk by chunk (each user's events
    in one chunk, in request order), each chunk through ``run_chunk`` (the service's scoring thread):
    the same rows, log lines and answer (duplicates included) as one commit."""
    events = [Event(f"u{i % 7}", "a" if i % 3 else "b", T0 + i) for i in range(60)]
    events.append(Event("u3", "b", T0 + 3))  # a retry of an event in the same batch: a duplicate
    runs = []
    chunked_log, chunked_rows = SlowLog(tmp_path / "chunked.jsonl", 0.0), DictOnlineStore()
    chunked = EventWriter(chunked_log, chunked_rows, lambda: SPEC, run_chunk=lambda fn: runs.append(1) or fn(), chunk_events=10)
    whole_log, whole_rows = SlowLog(tmp_path / "whole.jsonl", 0.0), DictOnlineStore()
    whole = EventWriter(whole_log, whole_rows, lambda: SPEC)
    got, want = chunked.write(events), whole.write(events)
    assert (got.accepted, got.duplicates, got.users) == (want.accepted, want.duplicates, want.users) == (61, 1, [f"u{u}" for u in range(7)])
    assert chunked_rows.rows == whole_rows.rows
    assert chunked_log.appends > 1 and len(runs) == chunked_log.appends  # every chunk through run_chunk
    small = EventWriter(SlowLog(tmp_path / "small.jsonl", 0.0), DictOnlineStore(), lambda: SPEC, run_chunk=lambda fn: runs.append(1) or fn(),
                        chunk_events=10)
    small.write(events[:10])
    assert len(runs) == chunked_log.appends  # a batch within one chunk is written where it arrived
    logged = [(e.user_id, e.item_id, e.ts) for e in read_events(chunked_log.path)]
    assert sorted(logged) == sorted((e.user_id, e.item_id, e.ts) for e in read_events(whole_log.path))
    for u in range(7):  # each user's events in request order
        assert [x for x in logged if x[0] == f"u{u}"] == [(e.user_id, e.item_id, e.ts) for e in events[:60] if e.user_id == f"u{u}"]
