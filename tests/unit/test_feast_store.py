"""features.store against a real (local) Feast repo in a temporary folder.

The key property: a point-in-time lookup just before an event sees exactly the events before it
(same-second ties by row order) and never an event after it.
"""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from features import store, transforms
from tests.unit.helpers import REPO_SRC, build_feast_repo, events_frame

T0 = pd.Timestamp("2024-03-01 12:00:00", tz="UTC")
S = pd.Timedelta(seconds=1)
US = pd.Timedelta(microseconds=1)
HISTORY_LEN = 3

ITEMS = pd.DataFrame(
    {
        "item_id": [f"i{k}" for k in range(1, 7)],
        "title": [f"t{k}" for k in range(1, 7)],
        "text": [f"x{k}" for k in range(1, 7)],
        "categories": [["a"], ["b"], ["a", "c"], ["c"], [], ["b", "c"]],
    }
)

EVENTS = [
    ("u1", "i1", T0),
    ("u2", "i2", T0),
    ("u1", "i2", T0 + 60 * S),
    ("u1", "i3", T0 + 60 * S),      # same-second tie (#1)
    ("u1", "i4", T0 + 60 * S),      # same-second tie (#2)
    ("u3", "i5", T0 + 90 * S),
    ("u2", "i6", T0 + 120 * S),
    ("u2", "i1", T0 + 120 * S),     # tie
    ("u1", "i5", T0 + 3600 * S),
    ("u3", "i6", T0 + 7200 * S),
    ("u1", "i6", T0 + 86400 * S),
]


def _interactions() -> pd.DataFrame:
    return events_frame(EVENTS)


def _as_list(v) -> list | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return list(v)


@pytest.fixture(scope="module")
def feast_repo(tmp_path_factory):
    yield from _build_repo(tmp_path_factory)


def _build_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("feast") / "repo"
    inter = _interactions()
    names, timeline = build_feast_repo(repo, inter, ITEMS, HISTORY_LEN, 1.0, 30.0, recent_days=0.5)
    assert {"user", "item", "user_behaviour", "item_profile", "recommender_v1"} <= set(names)
    store.materialize(repo, timeline["event_timestamp"].min() - S, inter["ts"].max() + S)
    yield repo, inter


def test_point_in_time_history_is_exactly_the_past(feast_repo):
    repo, inter = feast_repo
    ft = transforms.feature_timestamps(inter)
    entity = pd.DataFrame({"user_id": inter["user_id"], "event_timestamp": ft - US, "row": np.arange(len(inter))})
    out = store.historical_user_behaviour(repo, entity)
    out = out.set_index("row").sort_index()
    assert out.index.is_unique
    t_sec = transforms.unix_seconds(inter["ts"])
    for r in range(len(inter)):
        u = inter["user_id"][r]
        T = ft[r] - US
        before = [k for k in range(r) if inter["user_id"][k] == u]  # same user, earlier rows
        if r not in out.index:
            # Feast 0.67's file offline store drops entity rows that match no feature row; only a
            # user's first event (nothing before it) may be missing
            assert not before, f"row {r} ({u} @ {T}) has {len(before)} earlier events but no result row"
            continue
        hist = _as_list(out.loc[r, "hist_item_ids"])
        hts = _as_list(out.loc[r, "hist_ts"])
        if not before:
            assert hist in (None, []), f"row {r}: first event of {u} must have no history, got {hist}"
            continue
        # never an event at or after the target
        assert hts is not None and all(pd.Timestamp(int(t), unit="s", tz="UTC") <= T for t in hts), (r, hts, T)
        # exactly the last HISTORY_LEN events strictly before the target, in row order
        expected = [inter["item_id"][k] for k in before][-HISTORY_LEN:]
        assert hist == expected, f"row {r} ({u} @ {T}): {hist} != {expected}"
        assert [int(t) for t in hts] == [int(t_sec[k]) for k in before][-HISTORY_LEN:]
        assert int(out.loc[r, "event_count"]) == len(before)
        assert int(out.loc[r, "last_event_ts"]) == int(t_sec[before[-1]])


def test_query_at_target_time_would_leak(feast_repo):
    """Control: at the target's own feature time (no -1 us), the join includes the target itself."""
    repo, inter = feast_repo
    ft = transforms.feature_timestamps(inter)
    r = 3  # u1's first same-second tie, stamped T0 + 60 s + 1 us
    entity = pd.DataFrame({"user_id": [inter["user_id"][r]], "event_timestamp": [ft[r]]})
    out = store.historical_user_behaviour(repo, entity)
    assert _as_list(out["hist_item_ids"].iloc[0])[-1] == inter["item_id"][r]


def test_online_user_behaviour(feast_repo):
    repo, inter = feast_repo
    fs = store.get_store(repo)
    res = store.online_user_behaviour(fs, ["u1", "u3", "nobody"])
    assert len(res) == 3
    u1_items = inter.loc[inter["user_id"] == "u1", "item_id"].tolist()
    assert res[0]["user_id"] == "u1"
    assert list(res[0]["hist_item_ids"]) == u1_items[-HISTORY_LEN:]
    assert res[0]["event_count"] == len(u1_items)
    assert res[0]["last_event_ts"] == int(transforms.unix_seconds(inter["ts"]).max())
    assert len(res[0]["cat_share_short"]) == len(transforms.category_vocabulary(ITEMS))
    assert list(res[1]["hist_item_ids"]) == ["i5", "i6"] and res[1]["event_count"] == 2
    unknown = res[2]
    assert unknown["user_id"] == "nobody"
    assert all(v is None for k, v in unknown.items() if k != "user_id")
    assert set(unknown) == set(res[0])


def test_write_online_rows_reads_back_as_feasts_own_write(feast_repo):
    """The fast online write (protos straight to the provider) and Feast's DataFrame write store
    the same row; a resolved feature service reads it as the default lookup does."""
    repo, _ = feast_repo
    fs = store.get_store(repo)
    row = {"hist_item_ids": ["i1", "i3"], "hist_ts": [1_700_000_000, 1_700_000_060], "event_count": 7,
           "last_event_ts": 1_700_000_060, "cat_share_short": [0.25, 0.5, 0.25], "cat_share_long": [0.5, 0.25, 0.25],
           "cat_share_recent": [0.0, 1.0, 0.0], "event_timestamp": pd.Timestamp(1_700_000_060, unit="s", tz="UTC")}
    fs.write_to_online_store("user_behaviour", pd.DataFrame([{"user_id": "w-feast", **row}]))
    store.write_online_rows(fs, "user_behaviour", [{"user_id": "w-fast", **row}])
    store.write_online_rows(fs, "user_behaviour", [])  # nothing to write: no error
    service = store.user_service(fs)
    a, b = store.online_user_behaviour(fs, ["w-feast", "w-fast"], service)
    assert {k: v for k, v in a.items() if k != "user_id"} == {k: v for k, v in b.items() if k != "user_id"}
    assert b["hist_item_ids"] == ["i1", "i3"] and b["event_count"] == 7 and b["cat_share_recent"] == [0.0, 1.0, 0.0]


def test_online_behaviour_commits_through_a_synced_write_ahead_log(feast_repo):
    """The service's writer puts the SQLite store in WAL mode with every commit fsync'd
    (synchronous=FULL): as durable as the rollback journal, one sync per event instead of several.
    A write is visible at once to another connection (another worker, the pipeline)."""
    import sqlite3

    repo, _ = feast_repo
    ob = store.OnlineBehaviour(store.get_store(repo))
    conn = ob.store._get_provider().online_store._get_conn(ob.store.config)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    other = sqlite3.connect(repo / "data" / "online_store.db")
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # recorded in the file: every opener uses it
    finally:
        other.close()
    row = {"user_id": "w-wal", "hist_item_ids": ["i2"], "hist_ts": [1_700_000_100], "event_count": 1, "last_event_ts": 1_700_000_100,
           "cat_share_short": [0.0, 1.0, 0.0], "cat_share_long": [0.0, 1.0, 0.0], "cat_share_recent": [0.0, 1.0, 0.0],
           "event_timestamp": pd.Timestamp(1_700_000_100, unit="s", tz="UTC")}
    ob.write([row])
    assert store.online_user_behaviour(store.get_store(repo), ["w-wal"])[0]["hist_item_ids"] == ["i2"]


def test_retrieval_goes_through_the_registered_feature_service(feast_repo):
    """What the models read is the `user_online_v1` service in the registry (as `feast ui` shows
    it), not a list in code: a service without cat_share_long serves rows without it."""
    repo, _ = feast_repo
    fs = store.get_store(repo)
    service = fs.get_feature_service(store.USER_SERVICE)
    names = [f"{p.name}:{f.name}" for p in service.feature_view_projections for f in p.features]
    assert sorted(names) == sorted(store.USER_BEHAVIOUR_FEATURES)
    assert {fs_.name for fs_ in fs.list_feature_services()} == {"user_online_v1", "item_profile_v1", "recommender_v1"}
    from feast import FeatureService

    narrowed = FeatureService(name=store.USER_SERVICE, features=[fs.get_feature_view("user_behaviour")[["hist_item_ids", "event_count"]]])
    fs.apply([narrowed])
    try:
        row = store.online_user_behaviour(store.get_store(repo), ["u1"])[0]
    finally:
        fs.apply([service])
    assert set(row) == {"user_id", "hist_item_ids", "event_count"}
    assert set(store.online_user_behaviour(store.get_store(repo), ["u1"])[0]) == {"user_id", *(n.split(":")[1] for n in names)}


def test_item_profile_online(feast_repo):
    repo, inter = feast_repo
    fs = store.get_store(repo)
    resp = fs.get_online_features(
        features=["item_profile:popularity", "item_profile:recent_popularity", "item_profile:categories"],
        entity_rows=[{"item_id": "i6"}, {"item_id": "i4"}],
    ).to_dict()
    assert resp["popularity"] == [3, 1]
    # recent window: the 12 h before the last event (T0 + 1 day): only u1's i6 at T0 + 1 day is inside
    assert resp["recent_popularity"] == [1, 0]
    assert list(resp["categories"][0]) == ["b", "c"]


# ---------------------------------------------------------------- features stage + event log


@pytest.fixture()
def project_with_event_log(tmp_path):
    """A project folder with raw data, the Feast repo and an event log holding one event that
    ingest already folded in and one it has not seen yet."""
    from core.params import load_params

    root = tmp_path / "proj"
    shutil.copytree(REPO_SRC, root / "features" / "repo", ignore=shutil.ignore_patterns("data", "__pycache__"))
    shutil.copy(REPO_SRC.parents[1] / "params.yaml", root / "params.yaml")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    _interactions().to_parquet(raw / "interactions.parquet")
    ITEMS.to_parquet(raw / "items.parquet")
    log = root / "data" / "events" / "events.jsonl"
    log.parent.mkdir(parents=True)
    ingested = {"user_id": "u1", "item_id": "i6", "ts": int((T0 + 86400 * S).timestamp()), "event": "view", "value": 1.0}
    new = {"user_id": "u2", "item_id": "i3", "ts": int((T0 + 2 * 86400 * S).timestamp()), "event": "view", "value": None}
    log.write_text("\n".join(__import__("json").dumps(e) for e in (ingested, new)) + "\n")
    yield load_params(root / "params.yaml", {"features.history_len": HISTORY_LEN}), root


def test_features_rerun_keeps_logged_events_that_no_ingest_has_folded_in(project_with_event_log):
    """Materializing writes each user's state as of the raw data; events the service accepted since
    the last ingest must be re-applied, once, or a features rerun would silently drop them."""
    from features import features as features_stage

    params, root = project_with_event_log
    for attempt in range(2):  # a rerun must not apply the event twice
        res = features_stage.run(params)
        fs = store.get_store(root / "features" / "repo")
        u1, u2 = store.online_user_behaviour(fs, ["u1", "u2"])
        assert list(u2["hist_item_ids"]) == ["i6", "i1", "i3"], attempt  # the logged event, newest
        assert u2["event_count"] == 4 and u2["last_event_ts"] == int((T0 + 2 * 86400 * S).timestamp())
        assert list(u1["hist_item_ids"]) == ["i4", "i5", "i6"] and u1["event_count"] == 6  # already ingested: not again
        # the rerun materializes incrementally (features/materialize.py): nothing new, so u2's online
        # row, which holds the logged event already, is not rewritten and there is nothing to replay
        assert res.replayed_events == (1 if attempt == 0 else 0), attempt
        assert res.materialized["mode"] == ("full" if attempt == 0 else "incremental")


def test_service_rows_read_what_get_online_features_answers(feast_repo):
    """The direct read (features/rows.py) gives Feast's own answer: every value, the join key,
    None for an unknown entity, and the rows' event timestamps in whole seconds, in request order."""
    from features.rows import ServiceRows

    repo, _ = feast_repo
    fs = store.get_store(repo)
    for service, key, ids in ((store.user_service(fs), "user_id", ["u3", "nobody", "u1", "u1"]),
                              (store.item_service(fs), "item_id", ["i6", "i1", "posted-later"])):
        feast = fs.get_online_features(features=service, entity_rows=[{key: i} for i in ids]).to_dict(include_event_timestamps=True)
        got = ServiceRows(fs, service).read(ids)
        names = [k for k in feast if not k.endswith("__ts")]
        assert [row for row, _ in got] == [{k: feast[k][n] for k in names} for n in range(len(ids))]
        stamps = [max(feast[k + "__ts"][n] for k in names if k != key) for n in range(len(ids))]
        assert [ts for _, ts in got] == [s or None for s in stamps]
        assert got[1 if key == "user_id" else 2][1] is None and got[0][1] is not None
