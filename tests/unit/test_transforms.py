"""Unit tests of features.transforms: the pure feature functions shared by training and serving.

Expected values are written as formulas from the definitions (RecBole style), not produced by
re-running the code under test.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.transforms import (
    SECONDS_PER_DAY,
    category_matrix,
    category_vocabulary,
    decayed_shares,
    event_clock,
    feature_timestamps,
    latest_decayed_shares,
    latest_decayed_shares_many,
    recent_shares,
    item_profile,
    unix_seconds,
    user_behaviour_timeline,
)
from tests.unit.helpers import events_frame

T0 = pd.Timestamp("2024-01-01", tz="UTC")
S = pd.Timedelta(seconds=1)
D = pd.Timedelta(days=1)
US = pd.Timedelta(microseconds=1)


ITEMS = pd.DataFrame(
    {
        "item_id": ["i1", "i2", "i3", "i4"],
        "title": ["t1", "t2", "t3", "t4"],
        "text": ["x1", "x2", "x3", "x4"],
        "categories": [["a", "b"], ["b"], ["c", "a", "b"], []],
    }
)


# ---------------------------------------------------------------- decayed_shares


def test_decayed_shares_two_events_one_half_life_apart():
    h = 3600.0
    times = np.array([0.0, h])
    vecs = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = decayed_shares(times, vecs, half_life_s=h)
    # after event 1: only category 0; after event 2: event 1 has weight 0.5, event 2 weight 1
    np.testing.assert_allclose(out[0], [1.0, 0.0])
    np.testing.assert_allclose(out[1], [1 * 0.5 / 1.5, 1 / 1.5])


def test_decayed_shares_general_formula_and_zero_rows():
    h = 2.0 * SECONDS_PER_DAY
    times = np.array([0.0, 1.0 * SECONDS_PER_DAY, 1.0 * SECONDS_PER_DAY, 5.0 * SECONDS_PER_DAY])
    vecs = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out = decayed_shares(times, vecs, half_life_s=h)
    for k in range(len(times)):
        w = 0.5 ** ((times[k] - times[: k + 1]) / h)  # weight of each earlier event at time k
        acc = (w[:, None] * vecs[: k + 1]).sum(0)
        np.testing.assert_allclose(out[k], acc / acc.sum(), rtol=1e-12)
        assert out[k].sum() == pytest.approx(1.0)
    # no category at all -> all-zero shares, not NaN
    zero = decayed_shares(np.array([0.0, 10.0]), np.zeros((2, 3)), half_life_s=h)
    assert np.array_equal(zero, np.zeros((2, 3)))
    assert decayed_shares(np.array([]), np.zeros((0, 3)), half_life_s=h).shape == (0, 3)


@pytest.mark.parametrize("seed", range(6))
def test_latest_decayed_shares_is_the_newest_row_bit_for_bit(seed):
    """The online merge's one-pass shares equal the offline features' newest row exactly (not
    approximately): same-second events, long gaps, items without a category, up to 220 events."""
    rng = np.random.default_rng(seed)
    for n in (0, 1, 2, 7, 50, 220):
        vecs = np.zeros((n, 5))
        for k in range(n):
            cats = rng.choice(5, size=int(rng.integers(0, 3)), replace=False)  # 0 categories: a zero row
            vecs[k, cats] = 1.0 / max(len(cats), 1)
        times = np.sort(rng.integers(1_700_000_000, 1_700_000_000 + 10 ** int(rng.integers(1, 9)), size=n)).astype(np.float64)
        clocks = [(times, 3 * SECONDS_PER_DAY), (times, 60 * SECONDS_PER_DAY), (event_clock(n), 2.0)]
        got = latest_decayed_shares(vecs, clocks)
        full = [decayed_shares(times, vecs, clocks[0][1]), decayed_shares(times, vecs, clocks[1][1]), recent_shares(vecs, 2.0)]
        assert got.shape == (3, 5)
        for row, rows in zip(got, full):
            assert np.array_equal(row, rows[-1] if n else np.zeros(5)), (n, row, rows[-1:])


def test_latest_decayed_shares_of_many_users_at_once_are_each_users_own_bit_for_bit():
    """The service merges a batch's users in one pass (left-padded with steps that change nothing):
    each user's shares must be exactly those of the one-user pass, whatever the lengths."""
    rng = np.random.default_rng(3)
    users = []
    for n in (0, 1, 5, 37, 200, 3):
        vecs = rng.dirichlet(np.ones(4), size=n) * (rng.random((n, 1)) > 0.2)  # some behaviours without a category
        times = np.sort(rng.integers(1_700_000_000, 1_700_900_000, size=n)).astype(np.float64)
        users.append((vecs, [(times, 3 * SECONDS_PER_DAY), (times, 60 * SECONDS_PER_DAY), (event_clock(n), 2.0)]))
    many = latest_decayed_shares_many(users, 4)
    assert len(many) == len(users) and latest_decayed_shares_many([], 4) == []
    for got, (vecs, clocks) in zip(many, users):
        assert np.array_equal(got, latest_decayed_shares(vecs, clocks))
        assert np.array_equal(got[0], decayed_shares(clocks[0][0], vecs, clocks[0][1])[-1] if len(vecs) else np.zeros(4))


# ---------------------------------------------------------------- categories


def test_category_vocabulary_sorted_unique():
    assert category_vocabulary(ITEMS) == ["a", "b", "c"]


def test_category_matrix_weights_one_over_len():
    cats = ["a", "b", "c"]
    m = category_matrix(ITEMS, cats)
    np.testing.assert_allclose(m["i1"], [1 / 2, 1 / 2, 0.0])
    np.testing.assert_allclose(m["i2"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(m["i3"], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(m["i4"], [0.0, 0.0, 0.0])  # no category -> zero vector
    for item in ("i1", "i2", "i3"):
        assert m[item].sum() == pytest.approx(1.0)
    # categories outside the vocabulary are ignored; the known ones still sum to 1
    m2 = category_matrix(pd.DataFrame({"item_id": ["x"], "categories": [["a", "zzz"]]}), cats)
    np.testing.assert_allclose(m2["x"], [1.0, 0.0, 0.0])


# ---------------------------------------------------------------- feature_timestamps


def test_feature_timestamps_ties_ordered_by_row_and_strictly_increasing():
    ev = events_frame(
        [
            ("u1", "i1", T0),
            ("u2", "i2", T0),       # same second, other user: its own rank 0
            ("u1", "i2", T0),       # u1 tie #1
            ("u1", "i3", T0),       # u1 tie #2
            ("u1", "i4", T0 + S),
            ("u2", "i1", T0),       # u2 tie #1
        ]
    )
    ft = feature_timestamps(ev)
    expected = [T0, T0, T0 + 1 * US, T0 + 2 * US, T0 + S, T0 + 1 * US]
    assert list(ft) == expected
    for _, g in ft.groupby(ev["user_id"]):
        assert g.is_monotonic_increasing and g.is_unique


# ---------------------------------------------------------------- user_behaviour_timeline


def _timeline_events() -> pd.DataFrame:
    return events_frame(
        [
            ("u1", "i1", T0),
            ("u2", "i3", T0 + 5 * S),
            ("u1", "i2", T0 + 1 * D),
            ("u1", "i3", T0 + 1 * D),   # same-second tie with the previous u1 event
            ("u1", "i4", T0 + 3 * D),
        ]
    )


def test_user_behaviour_timeline_last_n_and_counts():
    ev = _timeline_events()
    cats = category_vocabulary(ITEMS)
    tl = user_behaviour_timeline(ev, ITEMS, cats, history_len=2, short_half_life_days=1.0, long_half_life_days=10.0)
    assert len(tl) == len(ev)
    assert tl["event_timestamp"].is_monotonic_increasing
    u1 = tl[tl["user_id"] == "u1"].reset_index(drop=True)
    assert [list(h) for h in u1["hist_item_ids"]] == [["i1"], ["i1", "i2"], ["i2", "i3"], ["i3", "i4"]]
    assert u1["event_count"].tolist() == [1, 2, 3, 4]
    t = unix_seconds(ev.loc[ev["user_id"] == "u1", "ts"])
    assert [list(h) for h in u1["hist_ts"]] == [[t[0]], [t[0], t[1]], [t[1], t[2]], [t[2], t[3]]]
    assert u1["last_event_ts"].tolist() == list(t)
    assert list(u1["event_timestamp"]) == [T0, T0 + D, T0 + D + US, T0 + 3 * D]
    # hist_ts is aligned with hist_item_ids everywhere
    for ids, ts in zip(tl["hist_item_ids"], tl["hist_ts"]):
        assert len(ids) == len(ts)
    u2 = tl[tl["user_id"] == "u2"]
    assert [list(h) for h in u2["hist_item_ids"]] == [["i3"]]
    assert u2["event_count"].tolist() == [1]


def test_user_behaviour_timeline_category_shares():
    ev = _timeline_events()
    cats = category_vocabulary(ITEMS)  # a, b, c
    short_hl, long_hl = 1.0, 10.0
    tl = user_behaviour_timeline(ev, ITEMS, cats, history_len=2, short_half_life_days=short_hl, long_half_life_days=long_hl)
    u1 = tl[tl["user_id"] == "u1"].reset_index(drop=True)
    cm = category_matrix(ITEMS, cats)
    vecs = np.stack([cm[i] for i in ["i1", "i2", "i3", "i4"]])
    days = np.array([0.0, 1.0, 1.0, 3.0])
    for hl, col in ((short_hl, "cat_share_short"), (long_hl, "cat_share_long")):
        for k in range(4):
            # shares cover ALL past events (not just the last history_len), decayed by age
            w = 0.5 ** ((days[k] - days[: k + 1]) / hl)
            acc = (w[:, None] * vecs[: k + 1]).sum(0)
            np.testing.assert_allclose(u1[col][k], acc / acc.sum(), rtol=1e-5)
    # the last u1 event (i4) has no category, so shares are still those of the older events
    assert u1["cat_share_short"][3].sum() == pytest.approx(1.0, rel=1e-5)


def user_behaviour_snapshot(timeline: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Each user's latest timeline row at or before ``now``: what materializing up to ``now`` puts online."""
    past = timeline[timeline["event_timestamp"] <= now]
    return past.groupby("user_id", sort=False).tail(1).reset_index(drop=True)


def test_user_behaviour_snapshot_respects_now():
    ev = _timeline_events()
    tl = user_behaviour_timeline(ev, ITEMS, category_vocabulary(ITEMS), 5, 1.0, 10.0)
    snap = user_behaviour_snapshot(tl, T0 + 2 * D).set_index("user_id")
    assert set(snap.index) == {"u1", "u2"}
    assert list(snap.loc["u1", "hist_item_ids"]) == ["i1", "i2", "i3"]  # i4 (day 3) is after now
    assert snap.loc["u1", "event_count"] == 3
    assert snap.loc["u2", "event_count"] == 1
    # an event exactly at `now` is included; users with nothing before `now` are absent
    snap0 = user_behaviour_snapshot(tl, T0).set_index("user_id")
    assert list(snap0.index) == ["u1"]
    assert snap0.loc["u1", "event_count"] == 1
    snap_tie = user_behaviour_snapshot(tl, T0 + D).set_index("user_id")
    assert snap_tie.loc["u1", "event_count"] == 2  # the same-second tie sits 1 us later


# ---------------------------------------------------------------- item_profile


def test_item_profile_popularity_and_recent_window():
    now = T0 + 10 * D
    ev = events_frame(
        [
            ("u1", "i1", T0),                 # old
            ("u2", "i1", now - 2 * D),        # recent
            ("u3", "i1", now),                # exactly now: counted, recent
            ("u1", "i2", now - 3 * D),        # exactly on the window edge: not recent (> now - 3d)
            ("u2", "i2", now - 1 * D),        # recent
            ("u3", "i3", now + S),            # after now: ignored
            ("u1", "i2", now + 5 * D),        # after now: ignored
        ]
    )
    prof = item_profile(ev, ITEMS, now, recent_days=3).set_index("item_id")
    assert prof.loc[["i1", "i2", "i3", "i4"], "popularity"].tolist() == [3, 2, 0, 0]
    assert prof.loc[["i1", "i2", "i3", "i4"], "recent_popularity"].tolist() == [2, 1, 0, 0]
    assert (prof["event_timestamp"] == now).all()
    assert list(prof.loc["i3", "categories"]) == ["c", "a", "b"]
    assert prof["popularity"].dtype == np.int64 and prof["recent_popularity"].dtype == np.int64
