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


def test_a_large_batch_waits_between_chunks_in_proportion_to_its_cpu(tmp_path, monkeypatch):
    """``bulk_share``: after each chunk but the last the writer sleeps chunk CPU x (1 - share) / share;
    a share of 1 never sleeps, and a share outside (0, 1] is refused (also from the environment)."""
    import serving.event_writer as ew

    from types import SimpleNamespace

    slept = []
    monkeypatch.setattr(ew, "time", SimpleNamespace(sleep=slept.append, thread_time=time.thread_time))
    events = [Event(f"u{i % 4}", "a", T0 + i) for i in range(40)]
    writer = EventWriter(SlowLog(tmp_path / "a.jsonl", 0.0), DictOnlineStore(), lambda: SPEC,
                         run_chunk=lambda fn: (fn()[0], 0.01), chunk_events=10, bulk_share=0.25)
    writer.write(events)
    assert slept == pytest.approx([0.03, 0.03, 0.03])  # 4 chunks of one user each: 3 waits of 0.01 x 3
    EventWriter(SlowLog(tmp_path / "b.jsonl", 0.0), DictOnlineStore(), lambda: SPEC, run_chunk=lambda fn: (fn()[0], 0.01),
                chunk_events=10, bulk_share=1.0).write(events)
    assert len(slept) == 3
    for bad in (0.0, 1.5, -1):
        with pytest.raises(ValueError, match="bulk_share"):
            EventWriter(SlowLog(tmp_path / "c.jsonl", 0.0), DictOnlineStore(), lambda: SPEC, bulk_share=bad)
    monkeypatch.setenv(ew.BULK_SHARE_ENV, "0.5")
    assert ew.bulk_share_from_env() == 0.5
    for bad in ("0", "2", "half", "nan"):
        monkeypatch.setenv(ew.BULK_SHARE_ENV, bad)
        with pytest.raises(ValueError, match=ew.BULK_SHARE_ENV):
            ew.bulk_share_from_env()
    monkeypatch.delenv(ew.BULK_SHARE_ENV)
    assert ew.bulk_share_from_env() == 0.15
