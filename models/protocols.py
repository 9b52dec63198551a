"""The evaluation protocols: what the models train on, validate on and are tested on (the ranking
benchmark runs each; the `evaluate` stage is leave-one-out, with the same slices, `models.slices`).

- ``loo``: leave-one-out by time with full ranking (../shared/BENCHMARK.md);
- ``temporal``: a global temporal split, validated on the same split one level down;
- ``cold``: 10% of the catalogue held out of training; the test users' last items are among them.

Training windows come from the same pure function the Feast path is tested against
(``windows_from_sequences``), so many runs need no feature-store round trip.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from core.params import TrainParams
from models import slices
from models.data import (EvalSet, ItemIndex, Windows, cold_item_split, item_index, leave_one_out, temporal_split, train_interactions,
                         user_sequences, windows_from_sequences)

log = logging.getLogger(__name__)


@dataclass
class Split:
    """One protocol's data. ``items``, ``text_emb`` and ``index`` are the cold protocol's reordered ones."""
    items: pd.DataFrame
    text_emb: torch.Tensor
    index: ItemIndex
    seqs: dict
    windows: Windows
    valid: EvalSet
    test: EvalSet
    train_df: pd.DataFrame
    cold: tuple | None = None  # cold protocol: (warm index, warm text rows, held-out text rows), added after training
    refit_df: pd.DataFrame | None = None  # temporal protocol: what the seed-free models are refit on for the test
    ease_test_df: pd.DataFrame | None = None  # leave-one-out: what EASE is refit on for the test (train + valid)

    def fit_catalogue(self) -> tuple[ItemIndex, torch.Tensor]:
        """The index and text rows the models train on (cold: the warm catalogue)."""
        return (self.index, self.text_emb) if self.cold is None else self.cold[:2]

    def test_masks(self) -> dict[str, np.ndarray]:
        """The test rows of each slice (``models.slices.slice_masks``, as the `evaluate` stage cuts
        them); warm items are those of the events the tested models count (temporal: the refit)."""
        train = self.train_df if self.refit_df is None else self.refit_df
        return slices.slice_masks(self.test, slices.trained_items(train, self.index), self.items["categories"])


def split_for(protocol: str, interactions: pd.DataFrame, items: pd.DataFrame, text_emb: torch.Tensor, tp: TrainParams) -> Split:
    """``protocol``'s split of the data (``loo``, ``temporal``, ``cold``); ValueError for another name."""
    if protocol == "loo":
        return _leave_one_out(interactions, items, text_emb, tp)
    if protocol == "cold":
        return _cold(interactions, items, text_emb, tp)
    if protocol == "temporal":
        return _temporal(interactions, items, text_emb, tp)
    raise ValueError(f"unknown protocol '{protocol}' (loo, temporal, cold)")


def _leave_one_out(interactions: pd.DataFrame, items: pd.DataFrame, text_emb: torch.Tensor, tp: TrainParams) -> Split:
    index = item_index(items)
    seqs = user_sequences(interactions, index)
    windows = windows_from_sequences(seqs, tp.max_len, holdout=2)
    valid, test = leave_one_out(seqs, "valid", tp.max_len), leave_one_out(seqs, "test", tp.max_len)
    train_df = train_interactions(interactions)
    # EASE (no epochs, its regularisation picked on validation) is refit on train + valid for the
    # test, as the peer EASE of ../shared/BENCHMARK.md was; every other model keeps its train-only fit
    ease_test_df = interactions[interactions.groupby("user_id", sort=False).cumcount(ascending=False) >= 1]
    return Split(items, text_emb, index, seqs, windows, valid, test, train_df, ease_test_df=ease_test_df)


def _cold(interactions: pd.DataFrame, items: pd.DataFrame, text_emb: torch.Tensor, tp: TrainParams) -> Split:
    pos_before = item_index(items).pos
    items, n_warm, seqs, train_df, test = cold_item_split(interactions, items, tp.max_len, seed=tp.seed)
    text_emb = text_emb[[0] + [pos_before[i] for i in items["item_id"]]]  # rows in the new order
    index = item_index(items)
    cold = (type(index)(index.ids[:n_warm]), text_emb[: n_warm + 1], text_emb[n_warm + 1 :])
    windows = windows_from_sequences(seqs, tp.max_len, holdout=1)
    valid = leave_one_out(seqs, "test", tp.max_len)  # last training event: early stopping only
    log.info("cold-item protocol: %d test users, every target held out of training", len(test.targets))
    return Split(items, text_emb, index, seqs, windows, valid, test, train_df, cold=cold)


def _temporal(interactions: pd.DataFrame, items: pd.DataFrame, text_emb: torch.Tensor, tp: TrainParams) -> Split:
    index = item_index(items)
    cutoff, _, test = temporal_split(interactions, index, tp.max_len)
    before = interactions[interactions["ts"] < cutoff]
    # validation is the same split one level down: train before the 90th percentile of the
    # pre-cut-off time, validate on each user's first event after it. Its users, like the test's,
    # are those active right after a cut-off, where recent popularity is strong; every user's
    # last event (months earlier for most) would hide that from early stopping and the hybrid
    inner, seqs, valid = temporal_split(before, index, tp.max_len)
    if not len(valid.targets) or not len(test.targets):
        raise ValueError("temporal protocol: no user has events on both sides of the test or the validation cut-off")
    windows = windows_from_sequences(seqs, tp.max_len, holdout=0)
    train_df = before[before["ts"] < inner]
    log.info("temporal split at %s: %d test users; validation split at %s: %d users", cutoff, len(test.targets),
             inner, len(valid.targets))
    # the test's seed-free models count everything before the cut-off (ranking._for_test)
    return Split(items, text_emb, index, seqs, windows, valid, test, train_df, refit_df=before)
