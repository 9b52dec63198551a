"""Behavioural tests of a trained interest model (Made-With-ML's directional/invariance tests).

A small model is trained on synthetic data whose users consume mostly one category at a time;
the tests check what "following changing interests" means, not exact numbers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from features.adapters.synthetic import generate
from core.params import SyntheticParams, TrainParams
from models.data import item_index, leave_one_out, user_sequences, windows_from_sequences
from models.interest_fit import fit_interest
from models.settings import model_config

pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    inter, items, _ = generate(SyntheticParams(n_users=150, n_items=120, n_categories=4, events_per_user=30, seed=3))
    inter["ts"] = pd.to_datetime(inter["ts"], unit="s", utc=True)
    index = item_index(items)
    seqs = user_sequences(inter, index)
    tp = TrainParams(dim=32, max_len=20, n_layers=1, epochs=25, patience=25, lr=3e-3, batch_size=64, seed=0)
    rng = np.random.default_rng(0)
    text = torch.as_tensor(rng.normal(size=(len(index) + 1, 8)), dtype=torch.float32)
    text[0] = 0
    cfg = model_config("interest", tp, len(index), 8)
    fit = fit_interest(cfg, text, windows_from_sequences(seqs, tp.max_len), leave_one_out(seqs, "valid", tp.max_len), tp, "cpu")
    primary = {index.pos[i]: c[0] for i, c in zip(items["item_id"], items["categories"])}
    return fit.model.eval(), primary, tp


def _category_share_top10(model, seq, ts, primary, category) -> float:
    with torch.no_grad():
        s = model.score_all(torch.as_tensor(seq)[None], torch.as_tensor(ts)[None])[0]
    s[0] = float("-inf")
    top = s.topk(10).indices.tolist()
    return sum(primary[i] == category for i in top) / 10


def test_a_burst_in_a_new_category_moves_the_top10_there(trained):
    model, primary, tp = trained
    cats = sorted(set(primary.values()))
    old, new = cats[0], cats[1]
    old_items = [i for i, c in primary.items() if c == old][:12]
    new_items = [i for i, c in primary.items() if c == new][:5]
    seq_before = np.zeros(tp.max_len, dtype=np.int64)
    seq_before[-12:] = old_items
    ts_before = np.zeros(tp.max_len, dtype=np.int64)
    ts_before[-12:] = 1_700_000_000 + 3600 * np.arange(12)
    seq_after = np.concatenate([seq_before[5:], new_items])
    ts_after = np.concatenate([ts_before[5:], 1_700_000_000 + 3600 * (12 + np.arange(5))])
    before = _category_share_top10(model, seq_before, ts_before, primary, new)
    after = _category_share_top10(model, seq_after, ts_after, primary, new)
    assert after >= before + 0.3, (before, after)


def test_padding_and_a_clock_shift_do_not_change_the_ranking(trained):
    model, primary, tp = trained
    seq = np.zeros(tp.max_len, dtype=np.int64)
    seq[-4:] = [3, 7, 11, 15]
    ts = np.zeros(tp.max_len, dtype=np.int64)
    ts[-4:] = 1_700_000_000 + 60 * np.arange(4)
    with torch.no_grad():
        a = model.score_all(torch.as_tensor(seq)[None], torch.as_tensor(ts)[None])[0]
        # the same history, shorter padding: same scores (padding is invisible)
        b = model.score_all(torch.as_tensor(seq[-8:])[None], torch.as_tensor(ts[-8:])[None])[0]
        # only elapsed time matters, not the absolute clock
        shifted = np.where(seq > 0, ts + 86400 * 365, 0)
        c = model.score_all(torch.as_tensor(seq)[None], torch.as_tensor(shifted)[None])[0]
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a, c, atol=1e-4)
