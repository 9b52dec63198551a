"""Unit tests of models.slices: each slice mask as a formula on a tiny hand-made EvalSet."""
from __future__ import annotations

import numpy as np
import pytest

from models import slices
from models.data import EvalSet, pad_left

L = 6


def _evalset(hists: list[list[int]], targets: list[int], hist_len: list[int] | None = None) -> EvalSet:
    seq = np.stack([pad_left(np.array(h, dtype=np.int64), L) for h in hists]) if hists else np.zeros((0, L), dtype=np.int64)
    return EvalSet(
        users=[f"u{b}" for b in range(len(hists))],
        seq=seq,
        ts=np.where(seq > 0, 1_700_000_000, 0),
        targets=np.array(targets, dtype=np.int64),
        exclude=[np.unique(h) for h in hists],
        target_ts=np.full(len(hists), 1_700_000_100),
        hist_len=None if hist_len is None else np.array(hist_len),
    )


def test_cold_item_is_target_not_in_train_items():
    data = _evalset([[1, 2], [3], [1, 4], [2]], targets=[5, 2, 9, 1])
    train_items = {1, 2, 3, 4}
    mask = slices.cold_item(data, train_items)
    assert mask.dtype == bool
    assert mask.tolist() == [True, False, True, False]
    assert mask.tolist() == [int(t) not in train_items for t in data.targets]
    # the target's presence in the user's own history is irrelevant: only train items count
    assert slices.cold_item(_evalset([[7]], [7]), {1}).tolist() == [True]
    assert slices.cold_item(_evalset([[7]], [7]), set()).tolist() == [True]


# items 1..3: category a, 4..5: b, 6: c, 7: [c, d], 8: d, 9: no category
CATS = {1: ["a"], 2: ["a"], 3: ["a"], 4: ["b"], 5: ["b"], 6: ["c"], 7: ["c", "d"], 8: ["d"], 9: []}


@pytest.mark.parametrize(
    "hist,target,shift",
    [
        ([1, 2, 3, 4, 5, 6], 6, True),   # a:3, b:2, c:1 -> top-2 {a, b}; target c misses them
        ([1, 2, 3, 4, 5, 6], 8, True),   # d: never seen at all
        ([1, 2, 3, 4, 5, 6], 1, False),  # a: the dominant category
        ([1, 2, 3, 4, 5, 6], 4, False),  # b: second dominant still counts
        ([1, 2, 3, 4, 5, 6], 7, True),   # [c, d]: neither dominant
        ([1, 2, 7, 7, 7, 4], 8, False),  # c:3, d:3, a:2, b:1 -> top-2 {c, d}: target d overlaps
        ([1, 2, 7, 7, 7, 4], 1, True),   # a is third
        ([6, 6, 6, 1, 1, 4], 5, True),   # top-2 {c, a}: b misses
        ([6, 6, 6, 1, 1, 4], 7, False),  # [c, d] overlaps on c
        ([1, 2, 3, 4, 5, 6], 9, False),  # a target without categories never counts as a shift
        ([9, 9], 1, False),              # a history without categories has no dominant interest
        ([1, 1], 99, False),             # target unknown to the category map: no categories
    ],
)
def test_interest_shift_formula(hist, target, shift):
    data = _evalset([hist], [target])
    assert slices.interest_shift(data, CATS).tolist() == [shift]


def test_interest_shift_padding_is_ignored_and_top_n_is_honoured():
    # a category map that (wrongly) names the padding index must not matter: padding is skipped
    cats = {**CATS, 0: ["b"]}
    data = _evalset([[1, 2, 6]], [4])  # left padded with three zeros
    assert slices.interest_shift(data, cats).tolist() == [True]  # a:2, c:1 -> b misses
    # top_n=1: only the single dominant category counts
    data = _evalset([[1, 2, 3, 4, 5, 6]], [4])
    assert slices.interest_shift(data, CATS, top_n=1).tolist() == [True]
    assert slices.interest_shift(data, CATS, top_n=3).tolist() == [False]
    # batch: one row per user, in order
    data = _evalset([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [6, 6]], [6, 1, 6])
    assert slices.interest_shift(data, CATS).tolist() == [True, False, False]


def test_short_history_is_the_lowest_quartile_of_hist_len():
    lengths = [7, 1, 3, 12, 2, 30, 5, 8]
    data = _evalset([[1]] * len(lengths), [1] * len(lengths), hist_len=lengths)
    mask = slices.short_history(data)
    q = np.quantile(lengths, 0.25)  # 2.75
    assert q == pytest.approx(2.75)
    assert mask.tolist() == [n <= q for n in lengths]
    assert mask.tolist() == [False, True, False, False, True, False, False, False]
    # ties at the boundary are in the slice
    data = _evalset([[1]] * 4, [1] * 4, hist_len=[2, 2, 2, 9])
    assert slices.short_history(data).tolist() == [True, True, True, False]
    # another quantile
    assert slices.short_history(_evalset([[1]] * 4, [1] * 4, hist_len=[1, 2, 3, 4]), quantile=0.5).tolist() == [True, True, False, False]


def test_short_history_falls_back_to_visible_history_and_uses_full_hist_len():
    # without hist_len, the visible (non-padding) length of the window is used
    data = _evalset([[1], [1, 2, 3], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]], [1] * 4)
    assert slices.short_history(data).tolist() == [True, False, False, False]
    # hist_len (the full history, which can exceed the window) takes precedence over the window
    data = _evalset([[1, 2, 3, 4, 5, 6]] * 4, [1] * 4, hist_len=[6, 40, 50, 60])
    assert slices.short_history(data).tolist() == [True, False, False, False]


def test_slices_of_an_empty_evalset_are_empty():
    data = _evalset([], [], hist_len=[])
    assert slices.cold_item(data, {1}).shape == (0,)
    assert slices.interest_shift(data, CATS).shape == (0,)
    assert slices.short_history(data).shape == (0,)
