"""The service's numeric settings from the environment (``PULSE_*``), each checked against its range.

Why one function: every setting read at start (limits, windows, shares, timeouts) must refuse a
value outside its range with a message that names the variable, the value and what it expects, so
that a typo stops the service at start rather than misbehaving under load.
"""
from __future__ import annotations

import math
import os


def number_from_env(name: str, default: float, what: str, low: float = 0.0, high: float = math.inf,
                    low_open: bool = False) -> float:
    """``name``'s value as a finite number in [low, high] (``low_open``: (low, high]), or ``default``
    when unset or blank; ``ValueError`` "NAME='raw' is not <what>" otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value > low if low_open else value >= low) and value <= high):
        raise ValueError(f"{name}={raw!r} is not {what}")
    return value


def whole_from_env(name: str, default: int) -> int:
    """``name``'s value as a whole number >= 1 (thread and batch counts), or ``default`` when unset or
    blank; ``ValueError`` naming the variable and the value otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number >= 1, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {raw!r}")
    return n
