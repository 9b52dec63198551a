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


def seen_mask(scores: torch.Tensor, seen: Sequence[np.ndarray | list[int]]) -> torch.Tensor:
    """(B, N+1) True at the padding column and at each row's ``seen`` item indices: ``mask_seen``'s
    cells as a mask, built once, so that scores ranked many times (the hybrid's weight search)
    are masked with one ``masked_fill`` instead of a loop over rows."""
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    mask[:, 0] = True
    lengths = [len(ex) for ex in seen]
    if sum(lengths):
        rows = torch.repeat_interleave(torch.arange(len(seen), device=scores.device), torch.as_tensor(lengths, device=scores.device))
        cols = torch.as_tensor(np.concatenate([np.asarray(ex, dtype=np.int64) for ex in seen]), device=scores.device)
        mask[rows, cols] = True
    return mask


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: list[np.ndarray] | torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based rank of each target among all items, and the scores with history masked out.

    scores (B, N+1), column 0 = padding; ``exclude``: each row's history (or its ``seen_mask``).
    The target competes with its own score even when it is in the history (the protocol keeps it
    rankable). Ties are broken by item index, lower first, so a constant scorer cannot look better
    than it is.
    """
    s = scores.detach().float()
    t = targets.view(-1, 1)
    own = s.gather(1, t)  # (B, 1)
    s = s.masked_fill(exclude if isinstance(exclude, torch.Tensor) else seen_mask(s, exclude), float("-inf"))
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
