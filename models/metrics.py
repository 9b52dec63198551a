"""Full-ranking metrics: every item is a candidate, the user's history is excluded, the target is always rankable."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def mask_seen(scores: torch.Tensor, seen: Sequence[np.ndarray | list[int]]) -> torch.Tensor:
    """Set the padding column and each row's ``seen`` item indices to -inf, in place; returns ``scores``.

    One rule for "never recommend what the user already has", shared by the evaluation
    (``target_ranks``), the monitor's recommendation mix and the service's ``/recommend``, so
    what is measured is what is served. ``scores``: (B, N+1), column 0 = padding; ``seen``: one
    array of item indices per row (repeats and empty arrays are fine).
    """
    scores[:, 0] = float("-inf")
    for b, ex in enumerate(seen):
        if len(ex):
            scores[b, torch.as_tensor(ex, dtype=torch.long, device=scores.device)] = float("-inf")
    return scores


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based rank of each target among all items, and the scores with history masked out.

    scores (B, N+1), column 0 = padding. The target competes with its own score even when it
    is in the history (the protocol keeps it rankable). Ties are broken by item index, lower
    first, so a constant scorer cannot look better than it is.
    """
    s = scores.detach().clone().float()
    t = targets.view(-1, 1)
    own = s.gather(1, t)  # (B, 1)
    mask_seen(s, exclude)
    idx = torch.arange(s.shape[1], device=s.device).view(1, -1)
    ahead = (s > own) | ((s == own) & (idx < t))
    return 1 + ahead.sum(1), s


def metrics_from_ranks(ranks: np.ndarray, k: int) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks <= k
    return {
        f"hr@{k}": float(hit.mean()),
        f"ndcg@{k}": float(np.where(hit, 1.0 / np.log2(ranks + 1), 0.0).mean()),
        "mrr": float((1.0 / ranks).mean()),
    }
