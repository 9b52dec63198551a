"""Baselines behind the same interface as the interest model (``score_all(seq, ts)``).

They ignore the sequence on purpose: they are the floor any sequential model must clear.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from models.data import ItemIndex


class StaticScores(nn.Module):
    """Same score vector for every user (popularity-style baselines)."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scores", scores.float())

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        return self.scores.unsqueeze(0).expand(seq.shape[0], -1)

    def interest_weights(self, seq: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """No interest model: the most recent behaviours explain, equally."""
        w = (seq > 0).float()
        return w / w.sum(1, keepdim=True).clamp(min=1)


def _counts(train: pd.DataFrame, index: ItemIndex) -> torch.Tensor:
    pos = index.pos
    v = np.zeros(len(index) + 1)
    for item, c in train["item_id"].value_counts().items():
        if item in pos:
            v[pos[item]] = c
    return torch.tensor(v)


def popularity(train: pd.DataFrame, index: ItemIndex) -> StaticScores:
    """Train-set interaction counts."""
    return StaticScores(_counts(train, index))


def recent_popularity(train: pd.DataFrame, index: ItemIndex, days: float) -> StaticScores:
    """Counts over the last ``days`` before the latest train event (all-time counts break ties)."""
    cutoff = train["ts"].max() - pd.Timedelta(days=days)
    recent = _counts(train[train["ts"] > cutoff], index)
    return StaticScores(recent + _counts(train, index) / (len(train) + 1.0))
