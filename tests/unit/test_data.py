"""Unit tests of models.data: id maps, sequences, leave-one-out, training windows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.transforms import feature_timestamps, unix_seconds
from models.data import (
    PAD,
    ItemIndex,
    item_index,
    leave_one_out,
    pad_left,
    train_interactions,
    training_entity_df,
    user_sequences,
    windows_from_features,
)
from tests.unit.helpers import events_frame

T0 = pd.Timestamp("2024-01-01", tz="UTC")
S = pd.Timedelta(seconds=1)
US = pd.Timedelta(microseconds=1)

ITEM_IDS = [f"i{k}" for k in range(1, 11)]  # i1..i10 -> indices 1..10
INDEX = ItemIndex(tuple(ITEM_IDS))


def _interleaved() -> pd.DataFrame:
    """u1: 5 events (one repeat, one same-second tie), u2: 2 events, u3: 3 events, interleaved."""
    return events_frame(
        [
            ("u1", "i1", T0 + 10 * S),
            ("u2", "i9", T0 + 11 * S),
            ("u3", "i4", T0 + 12 * S),
            ("u1", "i2", T0 + 20 * S),
            ("u1", "i1", T0 + 20 * S),   # tie with the previous u1 event, and a repeat of i1
            ("u3", "i5", T0 + 30 * S),
            ("u1", "i3", T0 + 40 * S),
            ("u2", "i8", T0 + 41 * S),
            ("u3", "i6", T0 + 42 * S),
            ("u1", "i7", T0 + 50 * S),
        ]
    )


def test_item_index_positions_start_at_one():
    idx = item_index(pd.DataFrame({"item_id": ["b", "a", "c"]}))
    assert idx.pos == {"b": 1, "a": 2, "c": 3}
    assert len(idx) == 3


def test_pad_left():
    assert pad_left(np.array([3, 4]), 4).tolist() == [0, 0, 3, 4]
    assert pad_left(np.array([1, 2, 3, 4, 5]), 3).tolist() == [3, 4, 5]  # keeps the newest
    assert pad_left(np.array([], dtype=np.int64), 3).tolist() == [0, 0, 0]
    assert pad_left(np.array([7, 8, 9]), 3).tolist() == [7, 8, 9]
    assert pad_left([1], 2).dtype == np.int64


def test_user_sequences_keep_row_order():
    ev = _interleaved()
    seqs = user_sequences(ev, INDEX)
    assert sorted(seqs) == ["u1", "u2", "u3"]
    assert seqs["u1"].items.tolist() == [1, 2, 1, 3, 7]
    assert seqs["u1"].ts.tolist() == unix_seconds(ev.loc[ev["user_id"] == "u1", "ts"]).tolist()
    assert seqs["u2"].items.tolist() == [9, 8]


def test_leave_one_out_valid_and_test():
    seqs = user_sequences(_interleaved(), INDEX)
    L = 4
    for split, cut in (("valid", 2), ("test", 1)):
        es = leave_one_out(seqs, split, L)
        assert es.users == ["u1", "u3"]  # u2 has fewer than 3 events
        assert es.seq.shape == (2, L) and es.ts.shape == (2, L)
        for b, u in enumerate(es.users):
            s = seqs[u]
            n = len(s.items)
            hist = s.items[: n - cut]
            assert es.seq[b].tolist() == pad_left(hist, L).tolist()
            assert es.ts[b].tolist() == pad_left(s.ts[: n - cut], L).tolist()
            assert es.targets[b] == s.items[n - cut]
            assert es.target_ts[b] == s.ts[n - cut]
            assert sorted(es.exclude[b].tolist()) == sorted(set(hist.tolist()))
    # concretely, u1 = [1, 2, 1, 3, 7]
    v = leave_one_out(seqs, "valid", L)
    assert v.seq[0].tolist() == [0, 1, 2, 1] and v.targets[0] == 3 and v.exclude[0].tolist() == [1, 2]
    t = leave_one_out(seqs, "test", L)
    assert t.seq[0].tolist() == [1, 2, 1, 3] and t.targets[0] == 7 and t.exclude[0].tolist() == [1, 2, 3]
    # u3 = [4, 5, 6]: valid target 5 from history [4]
    assert v.seq[1].tolist() == [0, 0, 0, 4] and v.targets[1] == 5
    with pytest.raises(KeyError):
        leave_one_out(seqs, "train", L)


def test_leave_one_out_all_users_short():
    seqs = user_sequences(events_frame([("u", "i1", T0), ("u", "i2", T0 + S)]), INDEX)
    es = leave_one_out(seqs, "test", 3)
    assert es.users == [] and es.seq.shape == (0, 3) and es.targets.shape == (0,)


def test_train_interactions_drop_last_two_per_user():
    ev = _interleaved()
    tr = train_interactions(ev)
    got = {u: g["item_id"].tolist() for u, g in tr.groupby("user_id", sort=True)}
    full = {u: g["item_id"].tolist() for u, g in ev.groupby("user_id", sort=True)}
    assert got == {"u1": full["u1"][:-2], "u3": full["u3"][:-2]}
    assert "u2" not in got
    assert tr.index.is_monotonic_increasing  # original row order kept


def _long_user_events(n: int, user: str = "u1", start: int = 0) -> list[tuple[str, str, pd.Timestamp]]:
    rows = []
    for k in range(n):
        # pairs of same-second events exercise the microsecond tie offsets
        rows.append((user, ITEM_IDS[k % 10], T0 + (start + k // 2) * S))
    return rows


@pytest.mark.parametrize("max_len", [1, 3, 4, 20])
def test_training_entity_df_windows_cover_every_train_target_once(max_len):
    n_by_user = {"u1": 12, "u2": 7, "u3": 3, "u4": 4}
    rows = []
    for j, (u, n) in enumerate(n_by_user.items()):
        rows += _long_user_events(n, u, start=100 * j)
    ev = events_frame(rows)
    # interleave users, keeping each user's own order (stable sort on time)
    ev = ev.sort_values("ts", kind="stable").reset_index(drop=True)
    ent = training_entity_df(ev, max_len)
    assert list(ent.columns) == ["user_id", "event_timestamp", "target_item", "target_ts"]
    assert str(ent["event_timestamp"].dt.tz) == "UTC"
    ft_all = feature_timestamps(ev)
    for u, n in n_by_user.items():
        g = ev[ev["user_id"] == u]
        ft = ft_all[g.index].reset_index(drop=True)
        items = g["item_id"].tolist()
        ts = g["ts"].reset_index(drop=True)
        e = ent[ent["user_id"] == u].reset_index(drop=True)
        covered: list[int] = []
        for _, r in e.iterrows():
            # the query sits strictly before the target's feature time, at/after the previous event's
            matches = [q for q in range(n) if ft[q] - US == r["event_timestamp"]]
            assert len(matches) == 1
            q = matches[0]
            assert 1 <= q <= n - 3  # never a valid/test target, never the history-less first event
            assert r["event_timestamp"] < ft[q]
            assert r["event_timestamp"] >= ft[q - 1]  # the point-in-time join sees event q-1
            assert r["target_item"] == items[q] and r["target_ts"] == ts[q]
            covered += [p for p in range(q - max_len + 1, q + 1) if p >= 1]
        train_targets = list(range(1, n - 2))  # positions 1..n-3
        assert len(e) == (0 if n < 4 else -(-(n - 3) // max_len))
        assert sorted(covered) == train_targets  # each exactly once


def _features_rows(hists, hts, targets, tts) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "hist_item_ids": hists,
            "hist_ts": hts,
            "target_item": targets,
            "target_ts": pd.to_datetime(tts, unit="s", utc=True),
        }
    )


def test_windows_from_features_labels_are_inputs_shifted_by_one():
    L = 4
    rows = _features_rows(
        hists=[["i1", "i2", "i3", "i4", "i5"], ["i2", "i3"], None, ["i6"]],
        hts=[[1, 2, 3, 4, 5], [10, 11], None, [20]],
        targets=["i6", "i4", "i7", "i8"],
        tts=[6, 12, 30, 21],
    )
    seq, ts, lab, lab_ts = windows_from_features(rows, INDEX, L)
    assert seq.shape == ts.shape == lab.shape == lab_ts.shape == (4, L)
    # the labels' timestamps are the inputs' shifted by one, the last one the target's
    assert lab_ts[0].tolist() == [3, 4, 5, 6] and lab_ts[1].tolist() == [0, 0, 11, 12] and lab_ts[3].tolist() == [0, 0, 0, 21]
    # row 0: history longer than L keeps the newest L
    assert seq[0].tolist() == [2, 3, 4, 5] and lab[0].tolist() == [3, 4, 5, 6] and ts[0].tolist() == [2, 3, 4, 5]
    # row 1: left padded
    assert seq[1].tolist() == [0, 0, 2, 3] and lab[1].tolist() == [0, 0, 3, 4] and ts[1].tolist() == [0, 0, 10, 11]
    # row 2: no history -> nothing to predict from
    assert seq[2].tolist() == [0] * L and lab[2].tolist() == [0] * L
    # row 3: one behaviour
    assert seq[3].tolist() == [0, 0, 0, 6] and lab[3].tolist() == [0, 0, 0, 8]
    # in general: label at position j is the input at j + 1, the last label is the target
    for b in range(len(rows)):
        valid = seq[b] > 0
        assert (lab[b][:-1][valid[:-1] & valid[1:]] == seq[b][1:][valid[:-1] & valid[1:]]).all()
        assert ((lab[b] == PAD) | valid).all()


def test_windows_from_features_unknown_items_become_padding():
    rows = _features_rows(hists=[["i1", "nope", "i2"]], hts=[[1, 2, 3]], targets=["i3"], tts=[4])
    seq, _, lab, _ = windows_from_features(rows, INDEX, 4)
    assert seq[0].tolist() == [0, 1, 0, 2]
    assert lab[0].tolist() == [0, 0, 0, 3]  # label of i1 is the unknown item -> 0; no input at 'nope' -> 0
