"""Which of the switch gate's evidence likelihoods serving already holds, and which rows it must score.

The gate (``models.switch``) weighs each of a user's newest ``h`` events by how well each expert
predicted it from what came before; ``SwitchGate._frozen_pass`` scores those evidence rows in one
batch. With a ``models.memo.LikelihoodMemo`` (serving), a (history, event) pair scored at an earlier
request is looked up instead: this module names the pairs, picks the rows that are new, and puts
the (h*B, 1) likelihoods back together from both, in the gate's step-major order.
"""
from __future__ import annotations

import torch

from models.memo import LikelihoodMemo


def shift_back(x: torch.Tensor, t: int) -> torch.Tensor:
    """(B, L) left-padded rows without their newest ``t`` entries (still left-padded, same width):
    the history before the ``t``-th newest event, the input of that event's evidence row."""
    if t == 0:
        return x
    return torch.cat([x.new_zeros(x.shape[0], t), x[:, :-t]], 1)


class EvidenceLookup:
    """For ``SwitchGate._frozen_pass``: which evidence likelihoods a ``LikelihoodMemo`` holds, which
    rows must be scored, and the (h*B, 1) likelihoods (step-major, as ``idx``) from both. Without a
    memo every row is scored. Expert 0 is the frozen long row, expert e + 1 the window ``windows[e]``."""

    def __init__(self, memo: LikelihoodMemo | None, rows: torch.Tensor, rows_ts: torch.Tensor, idx: torch.Tensor,
                 B: int, h: int, windows: tuple[int, ...]) -> None:
        self.B, self.h = B, h
        self.table = None if memo is None else memo.table()
        self.targets, self.device = idx[:, 0], idx.device
        if self.table is None:
            return
        r, t, y = rows.cpu().numpy(), rows_ts.cpu().numpy(), self.targets.cpu().numpy()
        L, steps = r.shape[1], range(B, B + h * B)  # the evidence rows: the history before each of the h newest events
        self.short_keys = [[LikelihoodMemo.key(LikelihoodMemo.digest(e + 1, r[j, -min(w, L):], t[j, -min(w, L):]), y[j - B]) for j in steps]
                           for e, w in enumerate(windows)]
        frozen = [LikelihoodMemo.digest(0, r[B + (h - 1) * B + b], t[B + (h - 1) * B + b]) for b in range(B)]
        self.long_keys = [LikelihoodMemo.key(frozen[j % B], y[j]) for j in range(h * B)]

    def _missing(self, keys: list[bytes]) -> list[int]:
        return [j for j, k in enumerate(keys) if k not in self.table]

    def frozen_missing(self) -> torch.Tensor:
        """Users (0..B-1) whose frozen long row must be scored."""
        if self.table is None:
            return torch.arange(self.B, device=self.device)
        return torch.tensor(sorted({j % self.B for j in self._missing(self.long_keys)}), dtype=torch.long, device=self.device)

    def short_missing(self, e: int) -> torch.Tensor:
        """Evidence rows (0..h*B-1) of window expert ``e`` that must be scored."""
        if self.table is None:
            return torch.arange(self.h * self.B, device=self.device)
        return torch.tensor(self._missing(self.short_keys[e]), dtype=torch.long, device=self.device)

    def _fill(self, keys: list[bytes] | None, scored: torch.Tensor) -> torch.Tensor:
        """(h*B, 1) from ``scored`` (h*B,: NaN where not scored) and the memo, which learns the new ones."""
        if keys is None:
            return scored.unsqueeze(1)
        fresh = (~torch.isnan(scored)).tolist()
        out = scored.tolist()
        for j, (k, new) in enumerate(zip(keys, fresh)):
            if new:
                self.table[k] = out[j]
            else:
                out[j] = self.table[k]
        return torch.tensor(out, dtype=scored.dtype, device=scored.device).unsqueeze(1)

    def long_likelihoods(self, lp: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """From the frozen rows scored (``lp``, one per user in ``users``)."""
        scored = torch.full((self.h * self.B,), float("nan"), dtype=lp.dtype, device=lp.device)
        if len(users):
            at = torch.full((self.B,), -1, dtype=torch.long, device=lp.device)
            at[users] = torch.arange(len(users), device=lp.device)
            rows = at.repeat(self.h)  # step-major: the user of each evidence row
            take = rows >= 0
            scored[take] = lp[rows[take]].gather(1, self.targets[take].unsqueeze(1))[:, 0]
        return self._fill(None if self.table is None else self.long_keys, scored)

    def short_likelihoods(self, e: int, lp: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """From window expert ``e``'s evidence rows scored (``lp``, one per row in ``steps``)."""
        scored = torch.full((self.h * self.B,), float("nan"), dtype=lp.dtype, device=lp.device)
        if len(steps):
            scored[steps] = lp.gather(1, self.targets[steps].unsqueeze(1))[:, 0]
        return self._fill(None if self.table is None else self.short_keys[e], scored)
