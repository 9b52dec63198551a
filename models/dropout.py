"""Dropout that trains the same model whether a batch runs in one process or is split across several.

Data-parallel training (``models.distributed``) gives each process every N-th row of a global
batch. torch's dropout draws each process's masks for its own rows, so N processes drew other
masks than one process would and trained another model. ``SplitInvariantDropout`` draws the whole
global batch's mask on every process, from the one generator state they share, and keeps the rows
the process holds (``BatchRows``, set by the training step); measured on the default data: 2
processes reach the single process's test NDCG@10 to the fourth decimal (docs/scaling-training.md).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn as nn


class BatchRows:
    """Which rows of the global training batch a forward pass holds: set by the training step for
    the length of its forward (``spread``), read by every ``SplitInvariantDropout`` of the model."""

    def __init__(self) -> None:
        self.global_n: int | None = None
        self.rows: torch.Tensor | None = None

    @contextlib.contextmanager
    def spread(self, global_n: int, rows: torch.Tensor) -> Iterator[None]:
        """For the block: this pass holds rows ``rows`` of a global batch of ``global_n``."""
        self.global_n, self.rows = global_n, rows
        try:
            yield
        finally:
            self.global_n, self.rows = None, None


class SplitInvariantDropout(nn.Module):
    """Dropout whose masks do not depend on how a batch is split across processes.

    Why: with torch's dropout each process of a data-parallel run draws masks for its own rows, so two
    processes train another model than one does (a seed's worth of difference in test NDCG@10,
    docs/scaling-training.md). Here every process draws the mask of the whole global batch, from the
    same generator state, and keeps its own rows (``BatchRows``). With no split (one process, or
    outside training's ``spread``) it is ``F.dropout`` on the CPU bit for bit: the same Bernoulli draw
    of the input's shape, divided by 1 - p, times the input."""

    def __init__(self, p: float, batch: BatchRows | None = None) -> None:
        """``batch``: the model's ``BatchRows``, shared by all its dropouts (None: a layer alone, never split)."""
        super().__init__()
        self.p, self.batch = p, batch if batch is not None else BatchRows()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        global_n, rows = self.batch.global_n, self.batch.rows
        if global_n is None:
            global_n, rows = x.shape[0], None
        noise = x.new_empty((global_n, *x.shape[1:])).bernoulli_(1 - self.p).div_(1 - self.p)
        return x * (noise if rows is None else noise[rows])
