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
from typing import Any, Callable, Iterable

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
