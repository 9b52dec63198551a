"""Named evaluation slices: boolean masks over the users of an EvalSet (Made-With-ML's slicing idea).

cold_item       the target item never appears in training data: only content (text) can rank it
interest_shift  the target's categories miss the user's dominant categories: interests moved
short_history   the user's history is in the shortest quarter: little to learn from

``slice_masks`` is the one place an EvalSet is cut into these slices: the `evaluate` stage
(``models/evaluate.py``, test split) and the ranking benchmark (``models/protocols.py``, every
protocol's test split) both call it, and ``models.evaluate.slice_metrics`` measures each slice.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from models.data import EvalSet, ItemIndex


def slice_masks(data: EvalSet, train_items: set[int], categories: Sequence[Iterable[str]]) -> dict[str, np.ndarray]:
    """Each slice's rows of ``data``, by name. ``train_items``: the index positions
    of the items the models trained on (``trained_items``); ``categories``: every item's categories
    in index order (item ``i`` is row ``i - 1``, as in ``items.json`` and the items table)."""
    cats = {i: list(c) for i, c in enumerate(categories, 1)}
    return {"cold_item": cold_item(data, train_items), "interest_shift": interest_shift(data, cats),
            "short_history": short_history(data)}


def trained_items(train: pd.DataFrame, index: ItemIndex) -> set[int]:
    """The index positions of the items in the training events ``train`` (items outside the
    index, which no model can rank, are left out): what makes a target warm."""
    pos = index.pos
    return {pos[i] for i in train["item_id"].unique() if i in pos}


def cold_item(data: EvalSet, train_items: set[int]) -> np.ndarray:
    return np.array([t not in train_items for t in data.targets], dtype=bool)


def interest_shift(data: EvalSet, item_categories: dict[int, list[str]], top_n: int = 2) -> np.ndarray:
    """True when none of the target's categories is among the user's ``top_n`` categories so far."""
    out = np.zeros(len(data.targets), dtype=bool)
    for b, (seq, target) in enumerate(zip(data.seq, data.targets)):
        counts = Counter(c for i in seq[seq > 0] for c in item_categories.get(int(i), []))
        dominant = {c for c, _ in counts.most_common(top_n)}
        cats = set(item_categories.get(int(target), []))
        out[b] = bool(dominant) and bool(cats) and not (cats & dominant)
    return out


def short_history(data: EvalSet, quantile: float = 0.25) -> np.ndarray:
    lengths = data.hist_len if data.hist_len is not None else (data.seq > 0).sum(1)
    if not len(lengths):  # no users (np.quantile of nothing raises)
        return np.zeros(0, dtype=bool)
    return lengths <= np.quantile(lengths, quantile)
