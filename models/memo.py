"""A value computed from tensors, kept until one of them changes: request-independent work done once.

Why: every ``/recommend`` scores the whole catalogue, and the item side of that (the interest
model's item vectors, a projection of every item's text) is the same for every request until the
model or its catalogue changes. Recomputing it was a quarter to a third of the model's CPU time per
request (the default 600-item hybrid, one torch thread: 3.3 -> 2.5 ms). What "changes" means
needs no bookkeeping by the callers: a tensor replaced by another (``add_items`` swaps in a longer
one) is a different object, and one changed in place (``set_item_text``, an optimizer step,
``load_state_dict``) has a new version counter, so either recomputes. With autograd on
(training) nothing is kept: the value must carry the graph of its own step.
"""
from __future__ import annotations

import functools
import hashlib
from typing import Any, Callable, Iterable

import numpy as np
import torch


class TensorMemo:
    """``memo(compute, inputs)``: ``compute()``, or the value it gave last time if ``inputs`` are
    the same tensors at the same versions (and autograd is off).

    Safe beside a writer on another thread: the inputs are read before ``compute`` runs, so a
    value is never older than the inputs it is kept under (a change meanwhile only costs one more
    computation), and the pair is replaced in one assignment. The kept inputs are referenced, so
    none of them can be freed and another tensor take its place unnoticed."""

    def __init__(self) -> None:
        self._kept: tuple[tuple[tuple[torch.Tensor, int], ...], torch.Tensor] | None = None

    def __call__(self, compute: Callable[[], torch.Tensor], inputs: Iterable[torch.Tensor]) -> torch.Tensor:
        if torch.is_grad_enabled():
            return compute()
        key = tuple((t, t._version) for t in inputs)
        kept = self._kept
        if kept is not None and len(kept[0]) == len(key) and all(a is b and va == vb for (a, va), (b, vb) in zip(kept[0], key)):
            return kept[1]
        value = compute()
        self._kept = (key, value)
        return value


def kept_until_changed(inputs: Callable[[Any], Iterable[torch.Tensor]]) -> Callable:
    """A method without arguments whose result is kept (per object, in a ``TensorMemo``) until one
    of the tensors ``inputs(obj)`` names is replaced or changed."""
    def wrap(method: Callable[[Any], torch.Tensor]) -> Callable[[Any], torch.Tensor]:
        name = f"_memo_{method.__name__}"

        @functools.wraps(method)
        def kept(obj: Any) -> torch.Tensor:
            memo = obj.__dict__.get(name)
            if memo is None:
                memo = obj.__dict__[name] = TensorMemo()
            return memo(lambda: method(obj), inputs(obj))
        return kept
    return wrap


class LikelihoodMemo:
    """Log-likelihoods of "this history, then this item" under one expert, kept across requests.

    Why: the switch gate's evidence (``models.switch``) weighs each of a user's newest ``horizon``
    events by how well every expert predicted it from what came before it: 2 x 8 short-window
    rows and one long row per request beside the request's own three, nine tenths of the model's
    work at serving's batch sizes. A past event's prediction does not change when the user acts
    again, so only the events that are new since the user's last request are scored; the rest are
    looked up here. The key is the content (the expert, the behaviours and their times without
    padding, the item predicted), so nothing has to be told which user changed: a new event makes
    new keys, an old key stays right. What does change every value, the catalogue (``add_items``,
    ``set_item_text``: another normaliser, other item vectors), calls ``invalidate``.

    Thread-safe as the scoring needs it: a pass takes ``table()`` once and reads and writes that
    dict; ``invalidate`` swaps in a new one after the catalogue changed, so what a pass computed
    from the state before (or during) the change lands in the dict no one reads any more.
    Bounded: a full table is dropped whole (``max_entries``, about 150 bytes each)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._table: dict[bytes, float] = {}

    def table(self) -> dict[bytes, float]:
        if len(self._table) >= self.max_entries:
            self._table = {}
        return self._table

    def invalidate(self) -> None:
        self._table = {}

    @staticmethod
    def digest(expert: int, items: np.ndarray, ts: np.ndarray) -> bytes:
        """16 bytes naming (expert, the behaviours and their times without the padding)."""
        real = items > 0
        h = hashlib.blake2b(digest_size=16)
        h.update(int(expert).to_bytes(8, "little", signed=True))
        h.update(items[real].astype(np.int64).tobytes())
        h.update(ts[real].astype(np.int64).tobytes())
        return h.digest()

    @staticmethod
    def key(digest: bytes, target: int) -> bytes:
        """The key of "the history ``digest`` names, then item ``target``"."""
        return digest + int(target).to_bytes(8, "little", signed=True)
