"""The event log and items log on both backends (``core.eventlog.EventLog``, a JSONL file, and
``core.streamlog.RedisStreamLog``, a stream on a real redis-server): the same input reads back
as the same events, frame, tombstones, duplicates and items; long streams are read in pages; two
replicas sharing one Redis append and ingest reads both."""
from __future__ import annotations

import threading
import uuid

import pandas as pd
import pytest
import yaml

from core import schema
from features import ingest
from core.eventlog import (Event, EventLog, forgotten_users, read_event_frame, read_events, read_items_log,
                               tombstone)
from core.params import load_params
from core.streamlog import (EVENT_LOG_ENV, EVENTS_STREAM, ITEMS_STREAM, RedisStreamLog, ServiceLogs, logs_from_env,
                                next_id, open_logs)
from tests.unit.helpers import locked_appends_from_threads

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
EVENTS = [Event("gone", "a", T0), Event("007", "12", T0 + 1, "click", None), Event("u2", "b", T0 + 2, "view", 2.5)]
ITEMS = [{"item_id": "n1", "title": "One", "text": "first", "categories": ["x"]},
         {"item_id": "n2", "title": "Two", "text": "second", "categories": []},
         {"item_id": "n1", "title": "One v2", "text": "newer", "categories": ["x", "y"]}]


def stream_logs(server, tmp_path, page: int = 1000) -> ServiceLogs:
    """Streams of this test's own (a fresh key pair on the session's server)."""
    key = f"test:{uuid.uuid4().hex[:8]}"
    client = server.client()
    return ServiceLogs(RedisStreamLog(client, f"{key}:events", page), RedisStreamLog(client, f"{key}:items", page), tmp_path)


@pytest.fixture(params=["file", "redis"])
def logs(request, tmp_path) -> ServiceLogs:
    if request.param == "file":
        return open_logs(None, tmp_path / "events" / "events.jsonl")
    return stream_logs(request.getfixturevalue("redis_server"), tmp_path)


def fill(logs: ServiceLogs) -> None:
    """The same appends on any backend: events, a forget, an event after it, and items."""
    logs.events.append(EVENTS)
    logs.events.append([tombstone("gone", T0 + 10)])
    logs.events.append([Event("gone", "c", T0 + 20)])  # came back after the forget: a new history
    logs.items.append(ITEMS[:2])
    logs.items.append(ITEMS[2:])


def test_the_backend_is_chosen_by_the_variable(tmp_path, redis_server):
    default = tmp_path / "data" / "events.jsonl"
    plain = logs_from_env(default, env={})
    assert isinstance(plain.events, EventLog) and plain.events.path == default and plain.items.path == default.with_name("items.jsonl")
    moved = logs_from_env(default, resolve=lambda p: tmp_path / "elsewhere" / p, env={EVENT_LOG_ENV: "log.jsonl"})
    assert moved.events.path == tmp_path / "elsewhere" / "log.jsonl" and not moved.shared
    shared = logs_from_env(default, env={EVENT_LOG_ENV: redis_server.url.replace("/0", "/3")})
    assert shared.shared and (shared.events.key, shared.items.key) == (EVENTS_STREAM, ITEMS_STREAM)
    assert shared.local_dir == default.parent  # the encoder cache stays on this machine
    assert shared.events.client.connection_pool.connection_kwargs["db"] == 3
    with pytest.raises(ValueError):
        open_logs("redis://", default)


def test_append_then_read_gives_the_logged_events(logs):
    fill(logs)
    assert read_events(logs.events) == [EVENTS[1], EVENTS[2], Event("gone", "c", T0 + 20)]
    assert forgotten_users(logs.events) == {"gone": T0 + 10}
    frame = read_event_frame(logs.events)
    assert list(frame.columns) == schema.INTERACTION_COLUMNS
    assert frame[["user_id", "item_id", "ts", "event"]].values.tolist() == [
        ["007", "12", str(T0 + 1), "click"], ["u2", "b", str(T0 + 2), "view"], ["gone", "c", str(T0 + 20), "interaction"]]
    items = read_items_log(logs.items)
    assert items["item_id"].tolist() == ["n2", "n1"] and items.set_index("item_id").loc["n1", "title"] == "One v2"


def test_both_backends_read_the_same_input_identically(tmp_path, redis_server):
    file, stream = open_logs(None, tmp_path / "f" / "events.jsonl"), stream_logs(redis_server, tmp_path)
    for logs in (file, stream):
        fill(logs)
        logs.events.append(EVENTS[:2])  # duplicates: a batch logged twice (the log keeps both copies)
    assert read_events(file.events) == read_events(stream.events)
    pd.testing.assert_frame_equal(read_event_frame(file.events), read_event_frame(stream.events))
    pd.testing.assert_frame_equal(read_items_log(file.items), read_items_log(stream.items))
    assert forgotten_users(file.events) == forgotten_users(stream.events)
    # ingest's rule for duplicates (exact duplicates quarantined once validated) then gives the same counts
    items = pd.DataFrame({"item_id": ["a", "b", "c", "12"], "title": "", "text": "t", "categories": [[]] * 4})
    checked = [schema.validate(read_event_frame(x.events), items) for x in (file, stream)]
    assert checked[0].counts == checked[1].counts and len(checked[0].interactions) == len(checked[1].interactions)


def test_duplicates_are_kept_in_log_order_on_both_backends(logs):
    """The log stores what it is given; what counts as a duplicate (same user, item, second) is
    decided before the append, against the online row (``features.online.fresh_events``)."""
    logs.events.append([EVENTS[1], EVENTS[1]])
    logs.events.append([EVENTS[1]])
    assert read_events(logs.events) == [EVENTS[1]] * 3


def test_read_since_a_cursor_gives_only_what_came_after(logs):
    logs.events.append(EVENTS)
    entries = list(logs.events.entries())
    assert [e.record["item_id"] for e in logs.events.entries(since=entries[0].cursor)] == ["12", "b"]
    assert list(logs.events.entries(since=entries[-1].cursor)) == []
    logs.events.append([Event("u3", "z", T0 + 3)])
    assert [e.record["item_id"] for e in logs.events.entries(since=entries[-1].cursor)] == ["z"]


def test_a_stream_longer_than_one_page_is_read_whole(redis_server, tmp_path):
    logs = stream_logs(redis_server, tmp_path, page=7)
    sent = [Event(f"u{k % 5}", f"i{k}", T0 + k) for k in range(50)]
    for k in range(0, 50, 9):
        logs.events.append(sent[k:k + 9])
    assert read_events(logs.events) == sent  # 8 pages of XRANGE, in order, nothing lost or repeated
    assert len(read_event_frame(logs.events)) == 50
    exactly = stream_logs(redis_server, tmp_path, page=10)  # a last page that is exactly full
    exactly.events.append(sent[:20])
    assert read_events(exactly.events) == sent[:20]
    assert next_id("1700000000000-9") == "1700000000000-10"


def test_an_unreadable_stream_entry_is_skipped_with_a_warning(redis_server, tmp_path, caplog):
    logs = stream_logs(redis_server, tmp_path)
    logs.events.append(EVENTS[1:2])
    redis_server.client().xadd(logs.events.key, {"user_id": "not json", "item_id": '"a"'})  # a hand edit
    logs.items.append(ITEMS[:1])
    redis_server.client().xadd(logs.items.key, {"title": '"no id"'})
    with caplog.at_level("WARNING"):
        assert read_events(logs.events) == EVENTS[1:2]
        assert read_items_log(logs.items)["item_id"].tolist() == ["n1"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "field user_id: not valid JSON" in warned and "no item_id" in warned and "skipped 1 invalid line(s)" in warned
    assert logs.events.repair() == 0  # an XADD is whole or absent: nothing to cut


def test_concurrent_locked_appends_never_interleave(logs):
    n_threads, per_thread = 4, 25
    errors = locked_appends_from_threads(logs.events, n_threads, per_thread, lambda t, k: Event(f"user-{t}", f"i{k}", T0 + k))
    assert not errors
    got = read_events(logs.events)
    assert len(got) == n_threads * per_thread
    for t in range(n_threads):
        assert [e.ts for e in got if e.user_id == f"user-{t}"] == [T0 + k for k in range(per_thread)]


def test_ingest_reads_the_events_of_two_replicas_sharing_one_redis(tmp_path, redis_server, monkeypatch):
    """Two replicas (two connections, as two machines have) append to the shared streams at once;
    ingest, given only ``PULSE_EVENT_LOG``, folds in both replicas' events, items and tombstones."""
    url = redis_server.url.replace("/0", "/4")
    import redis

    redis.Redis.from_url(url).flushdb()
    cfg = {"data": {"dataset": "synthetic", "raw_dir": "data/raw", "event_log": "data/events/events.jsonl"},
           "ingest": {"max_bad_fraction": 0.5, "synthetic": {"n_users": 10, "n_items": 20, "events_per_user": 6}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    params = load_params(tmp_path / "params.yaml")
    ingest.run(params)  # no variable: the file log (absent), the source alone
    raw = pd.read_parquet(tmp_path / "data" / "raw" / "interactions.parquet")
    known, late = raw["item_id"].astype(str).tolist(), int(raw["ts"].max().timestamp()) + 100
    a, b = (open_logs(url, tmp_path / "data" / "events" / "events.jsonl") for _ in range(2))
    sent = {"a": [Event("from-a", known[k], late + k) for k in range(30)], "b": [Event("from-b", known[k], late + k) for k in range(30)]}

    def replica(logs: ServiceLogs, events: list[Event]) -> None:
        for e in events:
            with logs.events.locked():
                logs.events.append([e])

    threads = [threading.Thread(target=replica, args=(logs, sent[name])) for logs, name in ((a, "a"), (b, "b"))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    b.items.append([{"item_id": "posted-to-b", "title": "B", "text": "an item posted to replica B", "categories": []}])
    a.events.append([tombstone(raw["user_id"].iloc[0], late)])
    monkeypatch.setenv(EVENT_LOG_ENV, url)
    ingest.run(params)
    after = pd.read_parquet(tmp_path / "data" / "raw" / "interactions.parquet")
    for name in ("a", "b"):
        assert len(after[after["user_id"] == f"from-{name}"]) == 30, name
    assert raw["user_id"].iloc[0] not in set(after["user_id"])  # the tombstone appended through A
    assert "posted-to-b" in set(pd.read_parquet(tmp_path / "data" / "raw" / "items.parquet")["item_id"])
    assert not (tmp_path / "data" / "events").exists()  # nothing went to a file
