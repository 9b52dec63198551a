"""The one model interface, written down: what every model pulse can evaluate and serve provides.

Why a Protocol: the evaluator (``models.evaluate``), the hybrid (its components), the switch gate
(its base), serving (``models.inference.Engine``, ``POST /items``) and the benchmarks all take "a
model" and call exactly these members on it, whatever its class (the interest model, SASRec,
popularity, item-kNN, EASE, the hybrid, a switch-gated model). Before, that contract was implicit:
the evaluator guessed the catalogue size from buffer names. Now each model states ``n_items`` and
a model that lacks a member fails at the door with its name, not deep inside a batch.

Every index below is a catalogue position: 1..n_items are items, 0 is padding, so score rows are
``n_items + 1`` wide. Sequences are left-padded (B, L) item positions with their unix seconds.
"""
from __future__ import annotations

from typing import Generic, Protocol, runtime_checkable

import torch


@runtime_checkable
class ScoringModel(Protocol):
    """A model the evaluator ranks with and serving recommends from."""

    @property
    def n_items(self) -> int:
        """Catalogue size now (items added since training included; row 0, padding, excluded):
        the denominator of coverage@k and the width of ``score_all`` minus one."""

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_items + 1) scores of every item for the newest position of each history, requested
        at ``now`` (B,) unix seconds (None: after all known data, as the service asks)."""

    def add_items(self, text_rows: torch.Tensor) -> None:
        """Append items known only by their text (m, text_dim) at positions n_items + 1..: ``POST
        /items`` makes them recommendable without retraining; ``n_items`` grows by m."""


@runtime_checkable
class Explainer(Protocol):
    """A model that says which past behaviours weighed in a recommendation: the ``because`` of
    ``/recommend``, and the long expert's explanation inside the switch gate."""

    def interest_weights(self, seq: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """(B, L) weight of each behaviour of the history in the newest scores (padding 0)."""


@runtime_checkable
class ServableModel(ScoringModel, Explainer, Protocol):
    """What serving holds (``Engine.model``) and the switch gate wraps (its base, the long expert):
    every answer carries its scores and the behaviours behind them."""

    def score_and_explain(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(``score_all``, ``interest_weights``) in one call: what ``/recommend`` asks, so a model whose
        scores and explanation come from the same encoder pass runs it once."""


class ScoresThenWeights:
    """``score_and_explain`` for a model whose scores and explanation share no work (the baselines):
    the two calls, one after the other."""

    def score_and_explain(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_all(seq, ts, now), self.interest_weights(seq, ts)  # type: ignore[attr-defined]


@runtime_checkable
class HybridComponent(ScoringModel, Protocol):
    """A model the hybrid adds to the interest model (popularity, item-kNN, EASE): new items
    borrow its evidence from their text neighbours instead of starting at zero."""

    def borrow_rows(self, idx: torch.Tensor, w: torch.Tensor, at: int | None = None) -> None:
        """New items (appended, or the one at position ``at``) take the ``w``-weighted mean of the
        rows of their neighbours ``idx`` (m, k)."""


def missing_members(model: object, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``model`` lacks (empty: it satisfies it)."""
    protocols = [c for c in protocol.__mro__ if c not in (Protocol, Generic, object)]
    return sorted({n for c in protocols for n in vars(c) if not n.startswith("_") and not hasattr(model, n)})


def require(model: object, protocol: type, use: str) -> None:
    """Refuse ``model`` for ``use`` unless it satisfies ``protocol``, naming what it lacks: the
    one clear error instead of an AttributeError in the middle of an evaluation or a request."""
    if not isinstance(model, protocol):
        raise TypeError(f"{use} needs a {protocol.__name__} ({', '.join(missing_members(model, protocol))} missing "
                        f"on {type(model).__name__}); see models/interface.py")
