"""features.materialize: the first run loads the online store in full, a later run after new events
materializes only the interval after the previous end (Feast's recorded intervals, and the rows
the online store actually receives), and a changed past falls back to a full load."""
from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from features import materialize, store, transforms
from tests.unit.helpers import build_feast_repo, events_frame
from tests.unit.test_feast_store import EVENTS, HISTORY_LEN, ITEMS, S, T0

NEW = [("u1", "i2", T0 + 2 * 86400 * S), ("u1", "i4", T0 + 2 * 86400 * S + 60 * S)]  # only u1 comes back


def _sources(inter: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """What the features stage writes and materializes for ``inter``."""
    timeline = transforms.user_behaviour_timeline(inter, ITEMS, transforms.category_vocabulary(ITEMS), HISTORY_LEN, 1.0, 30.0)
    profile = transforms.item_profile(inter, ITEMS, inter["ts"].max(), recent_days=0.5)
    return {"user_behaviour": timeline, "item_profile": profile}


def _write(repo, inter, apply: bool = False):
    src = _sources(inter)
    store.write_offline(repo, src["user_behaviour"], src["item_profile"])
    if apply:  # as the features stage does every run: the recorded intervals survive it (a `feast apply` costs seconds)
        store.apply_repo(repo)
    return src


@pytest.fixture()
def written(monkeypatch):
    """Entity rows each online write receives, by view (the SQLite store's online_write_batch)."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    counts: Counter = Counter()
    real = SqliteOnlineStore.online_write_batch

    def spy(self, config, table, data, progress):
        counts[table.name] += len(data)
        return real(self, config, table, data, progress)

    monkeypatch.setattr(SqliteOnlineStore, "online_write_batch", spy)
    return counts


def _intervals(repo) -> dict[str, list]:
    return {fv.name: [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in fv.materialization_intervals]
            for fv in store.get_store(repo).list_feature_views()}


def test_second_run_materializes_only_the_new_interval(tmp_path, written):
    repo = tmp_path / "repo"
    first = events_frame(EVENTS)
    build_feast_repo(repo, first, ITEMS, HISTORY_LEN, 1.0, 30.0, recent_days=0.5)
    rep1 = materialize.materialize_online(repo, _sources(first))
    assert rep1.mode == "full"
    assert written["user_behaviour"] == 3 and written["item_profile"] == len(ITEMS)  # every user and item
    end1 = pd.Timestamp(rep1.end)

    written.clear()
    both = pd.concat([first, events_frame(NEW)], ignore_index=True)
    rep2 = materialize.materialize_online(repo, _write(repo, both, apply=True))
    assert rep2.mode == "incremental", rep2.reason
    assert pd.Timestamp(rep2.start) == end1
    assert written["user_behaviour"] == 1  # u1 only: u2 and u3 have no row after the previous end
    assert rep2.rows["user_behaviour"] == len(NEW)
    end2 = pd.Timestamp(rep2.end)
    for name, iv in _intervals(repo).items():  # Feast's own record: the full load, then exactly the new interval
        assert len(iv) == 2 and iv[0][1] == end1 and iv[1] == (end1, end2), name
    fs = store.get_store(repo)
    u1, u2 = store.online_user_behaviour(fs, ["u1", "u2"])
    assert list(u1["hist_item_ids"]) == ["i6", "i2", "i4"] and u1["event_count"] == 8  # the new events are online
    assert list(u2["hist_item_ids"]) == ["i2", "i6", "i1"]  # untouched, still right

    written.clear()  # a third run with nothing new writes nothing
    rep3 = materialize.materialize_online(repo, _write(repo, both))
    assert rep3.mode == "incremental" and sum(written.values()) == 0


def test_a_changed_past_or_a_lost_online_store_loads_in_full(tmp_path, written):
    repo = tmp_path / "repo"
    first = events_frame(EVENTS)
    build_feast_repo(repo, first, ITEMS, HISTORY_LEN, 1.0, 30.0, recent_days=0.5)
    end1 = pd.Timestamp(materialize.materialize_online(repo, _sources(first)).end)
    late = pd.concat([first, events_frame([("u3", "i1", T0 + 100 * S)])], ignore_index=True)  # before the last end
    late = late.sort_values("ts", kind="stable", ignore_index=True)  # in time order, as ingest writes them
    src = _write(repo, late)
    mode, reason, _ = materialize.plan(repo, src)
    assert mode == "full" and "changed" in reason
    rep = materialize.materialize_online(repo, src)
    assert rep.mode == "full" and pd.Timestamp(rep.end) == end1  # same newest event: same end
    (_u3,) = store.online_user_behaviour(store.get_store(repo), ["u3"])
    assert "i1" in list(_u3["hist_item_ids"])  # the late event is online
    (repo / "data" / "online_store.db").unlink()
    assert materialize.plan(repo, src)[0] == "full"
