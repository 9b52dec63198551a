"""The benchmark's training windows equal the training stage's Feast windows, on a small synthetic dataset.

Path A (stage `train`): user_behaviour_timeline -> Feast offline store -> training_entity_df ->
point-in-time join (historical_user_behaviour) -> windows_from_features.
Path B (benchmark): windows_from_sequences(user_sequences(...), max_len, holdout=2).

Both must give the same multiset of (seq, ts, labels) rows. Also the global temporal split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import store
from tests.unit.helpers import build_feast_repo
from features.adapters.synthetic import generate
from core.params import SyntheticParams
from core.schema import validate
from models.data import (
    PAD,
    item_index,
    temporal_split,
    training_entity_df,
    user_sequences,
    windows_from_features,
    windows_from_sequences,
)
from features.transforms import unix_seconds

HISTORY_LEN = 5  # the timeline's history length; max_len == HISTORY_LEN is the production setting


@pytest.fixture(scope="module")
def dataset():
    raw_int, raw_items, _ = generate(SyntheticParams(n_users=12, n_items=30, n_categories=4, events_per_user=15))
    v = validate(raw_int, raw_items)
    assert len(v.quarantine) == 0
    return v.interactions, v.items


@pytest.fixture(scope="module")
def feast_repo(tmp_path_factory, dataset):
    yield _build_repo(tmp_path_factory, *dataset)  # `feast apply` runs in a subprocess: no repo module stays behind


def _build_repo(tmp_path_factory, inter: pd.DataFrame, items: pd.DataFrame) -> Path:
    repo = tmp_path_factory.mktemp("feast_windows") / "repo"
    names, _ = build_feast_repo(repo, inter, items, HISTORY_LEN, 3.0, 60.0, recent_days=30)
    assert {"user_behaviour", "item_profile"} <= set(names)
    return repo


def _rows(windows: tuple[np.ndarray, ...]) -> list[tuple]:
    assert len({a.shape for a in windows}) == 1
    return sorted(tuple(tuple(a.tolist()) for a in row) for row in zip(*windows))


@pytest.mark.parametrize("max_len", [HISTORY_LEN, 3])  # history_len == max_len, and a longer stored history
def test_feast_windows_equal_sequence_windows(feast_repo, dataset, max_len):
    inter, items = dataset
    index = item_index(items)
    # path A: the training stage
    entity = training_entity_df(inter, max_len)
    feats = store.historical_user_behaviour(feast_repo, entity)
    assert len(feats) == len(entity)  # every query (target q >= 1) has an earlier state to join
    win_a = windows_from_features(feats, index, max_len)
    # path B: the benchmark
    seqs = user_sequences(inter, index)
    win_b = windows_from_sequences(seqs, max_len, holdout=2)
    rows_a, rows_b = _rows(win_a), _rows(win_b)
    assert len(rows_a) == len(rows_b) == len(entity)
    assert rows_a == rows_b

    # the windows are sensible, not just equal: every train target (positions 1..n-3) labelled exactly once
    seq, ts, lab, lab_ts = win_b
    assert seq.shape[1] == max_len
    labelled = sorted(lab[lab > 0].tolist())
    expected = sorted(x for s in seqs.values() for x in s.items[1 : len(s.items) - 2].tolist())
    assert labelled == expected
    assert np.all(lab[seq == PAD] == PAD)
    assert np.all((ts > 0) == (seq > 0))
    assert np.all(lab_ts[lab > 0] >= ts[lab > 0])  # a label is never before its input
    # the data exercises both cases: full windows and left-padded ones
    assert (seq[:, 0] > 0).any() and (seq[:, 0] == PAD).any()


def test_temporal_split(dataset):
    inter, items = dataset
    index = item_index(items)
    pos = index.pos
    max_len = 6
    cutoff, train_seqs, test = temporal_split(inter, index, max_len, quantile=0.7)
    assert cutoff == inter["ts"].quantile(0.7)
    cut_s = cutoff.value / 1e9
    t_all = unix_seconds(inter["ts"])

    # train sequences: exactly each user's events before the cut-off, in order
    before = inter[inter["ts"] < cutoff]
    assert sorted(train_seqs) == sorted(before["user_id"].unique())
    for u, s in train_seqs.items():
        g = before[before["user_id"] == u]
        assert s.items.tolist() == g["item_id"].map(pos).tolist()
        assert np.all(s.ts < cut_s)

    # test: each user with history before and an event after the cut-off; target = first post-cut-off event
    expected_users = []
    for u, g in inter.groupby("user_id", sort=True):
        t = t_all[g.index]
        if (t < cut_s).any() and (t >= cut_s).any():
            expected_users.append(u)
    assert sorted(test.users) == expected_users and len(set(test.users)) == len(test.users)
    assert len(test.users) >= 3
    assert test.seq.shape == test.ts.shape == (len(test.users), max_len)
    for b, u in enumerate(test.users):
        g = inter[inter["user_id"] == u]
        t = t_all[g.index]
        after = np.flatnonzero(t >= cut_s)
        first = after[0]
        assert test.targets[b] == pos[g["item_id"].iloc[first]]
        assert test.target_ts[b] == t[first] and test.target_ts[b] >= cut_s
        hist_ts = test.ts[b][test.seq[b] > 0]
        assert np.all(hist_ts < cut_s) and np.all(hist_ts <= test.target_ts[b])
        pre = g[t < cut_s]
        assert test.hist_len[b] == len(pre)
        assert test.seq[b].tolist() == np.pad(pre["item_id"].map(pos).to_numpy()[-max_len:], (max(0, max_len - len(pre)), 0)).tolist()
        assert sorted(test.exclude[b].tolist()) == sorted(set(pre["item_id"].map(pos)))
    # every test target timestamp is at/after the cut-off, every history timestamp before it
    assert np.all(test.target_ts >= cut_s)
    assert np.all(test.ts[test.seq > 0] < cut_s)
