"""The Feast online store on a real redis-server (``PULSE_ONLINE_STORE``): materialize, the fast
write (``write_online_rows``), ``OnlineBehaviour`` reads, the service's event merge, and two stores
(two replicas) on one Redis seeing each other's writes."""
from __future__ import annotations

import json
import threading
import time

import pandas as pd
import pytest

from features import online, store, transforms
from core.eventlog import Event
from tests.unit.helpers import build_feast_repo
from tests.unit.test_feast_store import EVENTS, HISTORY_LEN, ITEMS, S, _interactions


def test_the_online_store_url_gives_feasts_redis_config():
    assert store.online_store_override("") is None and store.online_store_override("sqlite") is None
    assert store.online_store_override("redis://127.0.0.1:6390") == {
        "type": "redis", "connection_string": "127.0.0.1:6390", "skip_dedup": True}
    assert store.online_store_override("rediss://:s%40cret@cache.internal/2")["connection_string"] == \
        "cache.internal:6379,db=2,password=s@cret,ssl=true"
    for bad in ("postgres://x", "redis://h:1/zero", "redis://:a,b@h:1"):
        with pytest.raises(ValueError):
            store.online_store_override(bad)


@pytest.fixture(scope="module")
def redis_repo(tmp_path_factory, redis_server):
    """The project's Feast repo applied and materialized with its online store on Redis."""
    server = redis_server
    server.client().flushall()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(store.ONLINE_STORE_ENV, server.url)
        repo = tmp_path_factory.mktemp("feast-redis") / "repo"
        inter = _interactions()
        _, timeline = build_feast_repo(repo, inter, ITEMS, HISTORY_LEN, 1.0, 30.0, recent_days=0.5)
        store.materialize(repo, timeline["event_timestamp"].min() - S, inter["ts"].max() + S)
        yield repo, inter, server


def test_materialized_rows_live_in_redis_not_in_sqlite(redis_repo):
    repo, inter, server = redis_repo
    fs = store.get_store(repo)
    assert store.online_store_kind(fs) == "redis"
    u1, nobody = store.online_user_behaviour(fs, ["u1", "nobody"])
    u1_items = inter.loc[inter["user_id"] == "u1", "item_id"].tolist()
    assert list(u1["hist_item_ids"]) == u1_items[-HISTORY_LEN:] and u1["event_count"] == len(u1_items)
    assert all(v is None for k, v in nobody.items() if k != "user_id")
    assert server.client().dbsize() >= len({e[0] for e in EVENTS})  # one hash per user (and per item)
    assert not (repo / "data" / "online_store.db").exists()  # feast apply went to Redis too
    # without the variable the same repo is its SQLite store again: the rows are not there
    assert store.online_store_kind(store.get_store(repo, url="sqlite")) == "sqlite"


def test_every_write_lands_even_an_older_or_same_second_one(redis_repo):
    """Feast's Redis store drops a row not newer than the stored one unless ``skip_dedup``: the
    row pulse writes for a late event carries an older timestamp and must still land."""
    repo, _, _ = redis_repo
    ob = store.OnlineBehaviour(store.get_store(repo))
    row = {"user_id": "late", "hist_item_ids": ["i1"], "hist_ts": [1_700_000_060], "event_count": 1, "last_event_ts": 1_700_000_060,
           "cat_share_short": [1.0, 0.0, 0.0], "cat_share_long": [1.0, 0.0, 0.0], "cat_share_recent": [1.0, 0.0, 0.0],
           "event_timestamp": pd.Timestamp(1_700_000_060, unit="s", tz="UTC")}
    ob.write([row])
    ob.write([{**row, "hist_item_ids": ["i2", "i1"], "hist_ts": [1_700_000_000, 1_700_000_060], "event_count": 2}])  # same time
    assert ob.read(["late"])[0]["hist_item_ids"] == ["i2", "i1"]
    ob.write([{**row, "hist_item_ids": [], "hist_ts": [], "event_count": 0, "event_timestamp": pd.Timestamp(1_600_000_000, unit="s", tz="UTC")}])
    assert ob.read(["late"])[0]["hist_item_ids"] == []


def test_two_replicas_on_one_redis_see_each_others_events(redis_repo):
    """Two stores (as two service processes hold) on the same Redis: an event merged through one
    is in the other's next read, late and same-second events included, each applied once."""
    repo, _, _ = redis_repo
    a, b = store.OnlineBehaviour(store.get_store(repo)), store.OnlineBehaviour(store.get_store(repo))
    cats = transforms.category_vocabulary(ITEMS)
    spec = online.BehaviourSpec(HISTORY_LEN, transforms.category_matrix(ITEMS, cats), len(cats), 1.0, 30.0)
    t = 1_800_000_000
    with a.write_lock():
        assert online.apply_events(a, {"rep": [Event("rep", "i2", t, "view", None)]}, spec) == 1
    assert b.read(["rep"])[0]["hist_item_ids"] == ["i2"]
    with b.write_lock():  # a same-second and a late event through the other replica
        assert online.apply_events(b, {"rep": [Event("rep", "i3", t, "view", None), Event("rep", "i1", t - 60, "view", None)]}, spec) == 2
    assert a.read(["rep"])[0]["hist_item_ids"] == ["i1", "i2", "i3"]
    with a.write_lock():  # a retry through either replica is not applied twice
        assert online.apply_events(a, {"rep": [Event("rep", "i3", t, "view", None)]}, spec) == 0
    assert b.read(["rep"])[0]["event_count"] == 3


def test_the_write_lock_serialises_replicas(redis_repo):
    """Read-modify-writes from two replicas, interleaved by threads, lose no event under the lock."""
    repo, _, _ = redis_repo
    replicas = [store.OnlineBehaviour(store.get_store(repo)) for _ in range(2)]
    cats = transforms.category_vocabulary(ITEMS)
    spec = online.BehaviourSpec(50, transforms.category_matrix(ITEMS, cats), len(cats), 1.0, 30.0)

    def send(ob: store.OnlineBehaviour, offset: int) -> None:
        for k in range(10):
            with ob.write_lock():
                online.apply_events(ob, {"locked": [Event("locked", "i1", 1_800_000_000 + 2 * k + offset, "view", None)]}, spec)

    threads = [threading.Thread(target=send, args=(ob, n)) for n, ob in enumerate(replicas)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    state = replicas[0].read(["locked"])[0]
    assert state["event_count"] == 20 and state["hist_ts"] == sorted(state["hist_ts"]) and len(set(state["hist_ts"])) == 20
    assert store.OnlineBehaviour(store.get_store(repo, url="sqlite")).redis() is None  # SQLite: no Redis lock


def test_features_stage_on_redis_keeps_logged_events(project_with_event_log, redis_server, monkeypatch):
    """The features stage (feast apply, materialize, replay of the event log) with the online store on Redis."""
    from features import features as features_stage

    params, root = project_with_event_log
    redis_server.client().flushall()
    monkeypatch.setenv(store.ONLINE_STORE_ENV, redis_server.url)
    res = features_stage.run(params)  # (one run: test_feast_store checks on SQLite that a rerun applies nothing twice)
    u1, u2 = store.online_user_behaviour(store.get_store(root / "features" / "repo"), ["u1", "u2"])
    assert list(u2["hist_item_ids"]) == ["i6", "i1", "i3"] and u2["event_count"] == 4
    assert list(u1["hist_item_ids"]) == ["i4", "i5", "i6"] and u1["event_count"] == 6
    assert res.replayed_events == 1
    assert not (root / "features" / "repo" / "data" / "online_store.db").exists()



def test_features_stage_replays_the_shared_event_stream(project_with_event_log, redis_server, monkeypatch):
    """The same project with its event log moved to the Redis stream every replica shares
    (``PULSE_EVENT_LOG=redis://...``): the features stage replays it exactly as it does the file."""
    from features import features as features_stage
    from core.eventlog import EventLog, read_events
    from core.streamlog import EVENT_LOG_ENV, open_logs

    params, root = project_with_event_log
    redis_server.client().flushall()
    file_log = root / "data" / "events" / "events.jsonl"
    shared = open_logs(redis_server.url, file_log)
    shared.events.append(read_events(EventLog(file_log)))
    file_log.unlink()
    monkeypatch.setenv(store.ONLINE_STORE_ENV, redis_server.url)
    monkeypatch.setenv(EVENT_LOG_ENV, redis_server.url)
    res = features_stage.run(params)
    u1, u2 = store.online_user_behaviour(store.get_store(root / "features" / "repo"), ["u1", "u2"])
    assert list(u2["hist_item_ids"]) == ["i6", "i1", "i3"] and u2["event_count"] == 4
    assert list(u1["hist_item_ids"]) == ["i4", "i5", "i6"] and u1["event_count"] == 6
    assert res.replayed_events == 1 and not file_log.exists()


from tests.unit.test_feast_store import project_with_event_log  # noqa: E402,F401  (the fixture, shared)


def test_broadcast_reaches_the_other_processes_not_the_sender(redis_server):
    """`/reload` and `/items` on one service process are published on Redis; every other process
    (worker or replica) applies them, the sender does not apply its own twice."""
    from serving.broadcast import Broadcast

    got: dict[str, list] = {"a": [], "b": []}
    a = Broadcast(redis_server.client(), {"reload": lambda m: got["a"].append(m["model_tag"])}, channel="test-signals").start()
    b = Broadcast(redis_server.client(), {"reload": lambda m: got["b"].append(m["model_tag"]),
                                          "items": lambda m: 1 / 0}, channel="test-signals").start()
    try:
        assert a.publish("reload", model_tag="m:2") == 2  # both subscribed; only b applies it
        assert b.publish("items", rows=[]) == 2  # a has no handler; b's own message is skipped (its handler would raise)
        b.handle(json.dumps({"kind": "items", "from": "elsewhere", "rows": []}))  # a failing handler is logged, not raised
        b.handle("not json")
        deadline = time.monotonic() + 10
        while not got["b"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == {"a": [], "b": ["m:2"]}
    finally:
        a.close()
        b.close()
