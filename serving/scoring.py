"""Where the service runs torch: one dedicated scoring thread, with a fixed number of intra-op threads.

Why not the request thread: BentoML runs a sync endpoint on one of many pool threads, and torch's
OpenMP intra-op pool is per calling thread. Measured on the 2-core machine (the packaged gated
hybrid, a 45-event history): the main thread scores in 14 ms p50, any other thread with the
default 2 intra-op threads in 39 ms, one with 1 intra-op thread in 18 ms
(docs/benchmarks.md, "HTTP latency"). So every scoring call goes to one long-lived thread that set
its intra-op threads once (``PULSE_TORCH_THREADS``, default 1); requests queue for it, which also
keeps concurrent requests from oversubscribing the cores. More throughput: more BentoML workers.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import torch

log = logging.getLogger(__name__)

THREADS_ENV = "PULSE_TORCH_THREADS"
T = TypeVar("T")


def torch_threads_from_env(default: int = 1) -> int:
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return default
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be a whole number >= 1, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"{THREADS_ENV} must be a whole number >= 1, got {raw!r}")
    return n


class Scorer:
    """Runs callables on the one scoring thread and waits for their result."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pulse-scoring", initializer=torch.set_num_threads,
                                        initargs=(threads,))

    def __call__(self, fn: Callable[..., T], *args, **kwargs) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False)
