"""A per-client request rate limit for the service's API routes (a token bucket per client).

Why: one client looping on ``/events`` or ``/recommend`` takes the scoring thread from everyone
(issue 14 measured ``/recommend`` falling from 75 to 21 req/s while one client posted events).
Each client (its API key when it sends one, else its IP address) gets ``rate`` requests per second
on average and bursts of up to ``burst``; past that the guard answers 429 with ``Retry-After``.
Buckets live in the worker process: with N BentoML workers a client may get up to N times the rate.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

from serving.env import number_from_env

RATE_ENV = "PULSE_RATE_LIMIT"
# Off unless set: behind a reverse proxy every client shares the proxy's address, so a default
# per-address limit would throttle all traffic together. Set it where clients reach the service
# directly or send their own API key (e.g. PULSE_RATE_LIMIT=50: far above one user's need, far
# below a loop's).
DEFAULT_RATE = 0.0
MAX_CLIENTS = 10_000  # buckets kept (least recently seen dropped first): memory stays bounded


def rate_from_env(default: float = DEFAULT_RATE) -> float:
    return number_from_env(RATE_ENV, default, "a number of requests per second >= 0 (0 turns the limit off)")


class RateLimiter:
    """Token buckets: ``allow(client)`` is 0.0 when the request may pass, else the seconds to wait."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else 2 * rate)
        self.clock, self.max_clients = clock, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, client: str) -> float:
        if not self.enabled:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, when = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait
