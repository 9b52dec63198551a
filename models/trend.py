"""Item trend: how often each item was consumed in the days just before a given moment.

A global temporal split (and a live service) asks "what will this user take next, now?", and
what everyone is taking right now is the strongest single answer there. The interest model reads
it from this table, point in time correct: the row of day d counts the events of days
[d - window, d), never the day being predicted, so a training target never sees itself or
anything later. The last row (one past the data) is the window that ends with the newest event:
the one a request after all known data reads.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from features.transforms import unix_seconds
from models.data import ItemIndex

DAY = 86400


def trend_table(train: pd.DataFrame, index: ItemIndex, window_days: int) -> tuple[torch.Tensor, int]:
    """(D + 1, N + 1) log1p event counts per item over the ``window_days`` before each day, and
    the unix second where day 0 starts (midnight UTC of the first event). Column 0 is padding."""
    if window_days < 1:
        raise ValueError(f"train.trend_days must be >= 1, got {window_days}")
    pos = index.pos
    item = train["item_id"].astype(str).map(pos)
    known = item.notna().to_numpy()
    if not known.any():
        return torch.zeros(1, len(index) + 1), 0
    t = unix_seconds(train["ts"])[known]
    start = int(t.min() // DAY * DAY)
    day = (t - start) // DAY
    counts = np.zeros((int(day.max()) + 1, len(index) + 1))
    np.add.at(counts, (day, item.to_numpy()[known].astype(np.int64)), 1.0)
    before = np.vstack([np.zeros((1, counts.shape[1])), counts.cumsum(0)])  # before[d] = events of days < d
    lo = np.maximum(np.arange(len(before)) - window_days, 0)
    return torch.from_numpy(np.log1p(before - before[lo])).float(), start


def day_rows(now: torch.Tensor, start: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The table row of each moment ``now`` (unix seconds): its day, clamped to the table (a
    moment after the data reads the newest window, one before it the empty first row)."""
    return torch.div(now.long() - start, DAY, rounding_mode="floor").clamp(0, n_rows - 1)
