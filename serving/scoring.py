"""Where the service runs torch: one dedicated scoring thread, with a fixed number of intra-op threads,
and the micro-batching of ``/recommend`` on it.

Why not the request thread: BentoML runs a sync endpoint on one of many pool threads, and torch's
OpenMP intra-op pool is per calling thread. Measured on the 2-core machine (the packaged gated
hybrid, a 45-event history): the main thread scores in 14 ms p50, any other thread with the
default 2 intra-op threads in 39 ms, one with 1 intra-op thread in 18 ms
(docs/benchmarks.md, "HTTP latency"). So every scoring call goes to one long-lived thread that set
its intra-op threads once (``PULSE_TORCH_THREADS``, default 1); requests queue for it, which also
keeps concurrent requests from oversubscribing the cores. More throughput: more BentoML workers.

Why batch: while the thread scores, other requests wait for it anyway; scoring them together in
one padded pass (``Engine.recommend_many``) cost the gated hybrid 3.0 ms of CPU per user in
batches of 8 against 7.3-9.3 one at a time (the default data's 400 users, docs/deploying.md).
A ``Batcher`` takes every request queued when the thread is free (at most ``PULSE_MAX_BATCH``).
When its last batch had company it may wait ``PULSE_BATCH_LINGER_MS`` (2) for as many requests as
that batch had: the clients it just answered send their next requests a moment later, and without
the wait the first to arrive was scored alone and the rest together, alternately (measured, 8
clients on 2 workers: 365 -> 516 req/s, 5.2 -> 3.6 ms of service CPU per request,
docs/deploying.md). A lone client's batches have no company, so it never waits.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

import torch

from models.inference import Engine, Recommendation
from serving.env import number_from_env, whole_from_env

log = logging.getLogger(__name__)

THREADS_ENV = "PULSE_TORCH_THREADS"
MAX_BATCH_ENV = "PULSE_MAX_BATCH"
LINGER_ENV = "PULSE_BATCH_LINGER_MS"
LINGER_POLL_S = 0.0002
T = TypeVar("T")
A = TypeVar("A")


def torch_threads_from_env(default: int = 1) -> int:
    return whole_from_env(THREADS_ENV, default)


def linger_from_env(default_ms: float = 2.0) -> float:
    """``PULSE_BATCH_LINGER_MS``: how long, in ms, a batch may wait for the company the last one had
    (0: never wait); returned in seconds."""
    return number_from_env(LINGER_ENV, default_ms, "a number of milliseconds in [0, 1000]", high=1000.0) / 1000.0


def max_batch_from_env(default: int = 16) -> int:
    """``PULSE_MAX_BATCH``: the most ``/recommend`` calls scored in one pass (1: one at a time)."""
    return whole_from_env(MAX_BATCH_ENV, default)


class Scorer:
    """Runs callables on the one scoring thread, in the order they were submitted: the scoring
    passes, and the chunks of a large ``/events`` batch (``serving.event_writer``), which take turns
    with them there rather than fight them for the interpreter lock."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pulse-scoring", initializer=torch.set_num_threads,
                                        initargs=(threads,))

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> Future[T]:
        return self._pool.submit(fn, *args, **kwargs)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class Batcher(Generic[A, T]):
    """Calls ``many`` (a list of items -> their answers, in order) on the scoring thread with every
    item queued when the thread gets to it, at most ``max_batch`` at a time.

    Each ``submit`` queues its item and one drain job on the scorer; a drain takes what is queued,
    so a later drain may find its item already answered and return at once. If ``many`` raises, the
    batch's items are tried again one at a time: an error belongs to its own request only.
    """

    def __init__(self, scorer: Scorer, many: Callable[[list[A]], list[T]], max_batch: int = 1, linger_s: float = 0.0) -> None:
        """``linger_s``: when the last batch had company, how long a drain may wait for as many items
        as it had (requests of the clients it just answered, on their way back); a lone client's
        batches of one never wait."""
        self.scorer, self.many, self.max_batch, self.linger_s = scorer, many, max_batch, linger_s
        self._queued: deque[tuple[A, Future[T]]] = deque()  # append and popleft are atomic; one thread pops
        self._last = 1  # the size of the last batch

    def submit(self, item: A) -> Future[T]:
        future: Future[T] = Future()
        self._queued.append((item, future))
        self.scorer.submit(self._drain)
        return future

    def _drain(self) -> None:
        want = min(self._last, self.max_batch)
        if self.linger_s > 0 and want > 1 and 0 < len(self._queued) < want:
            deadline = time.monotonic() + self.linger_s
            while len(self._queued) < want and time.monotonic() < deadline:
                time.sleep(LINGER_POLL_S)
        taken = []
        while self._queued and len(taken) < self.max_batch:
            item, future = self._queued.popleft()
            if future.set_running_or_notify_cancel():  # False: its caller is gone (a client that hung up), not scored
                taken.append((item, future))
        if taken:
            self._last = len(taken)
            self._settle(taken)

    def _settle(self, taken: list[tuple[A, Future[T]]]) -> None:
        try:
            answers = self.many([item for item, _ in taken])
        except Exception as e:
            if len(taken) == 1:
                taken[0][1].set_exception(e)
                return
            log.warning("a batch of %d failed (%s: %s): scoring its requests one at a time", len(taken), type(e).__name__, e)
            for one in taken:
                self._settle([one])
            return
        if len(answers) != len(taken):  # never leave a caller waiting for an answer that will not come
            e = RuntimeError(f"a batch of {len(taken)} request(s) got {len(answers)} answer(s)")
            for _, future in taken:
                future.set_exception(e)
            return
        for (_, future), answer in zip(taken, answers):
            future.set_result(answer)


@dataclass(frozen=True)
class Ask:
    """One request's scoring: the engine of the state it took (a reload may swap it), the history."""

    engine: Engine
    hist_item_ids: list[str]
    hist_ts: list[int]
    k: int
    exclude_seen: bool


def recommend_all(asks: list[Ask]) -> list[Recommendation]:
    """Each ask's ``Recommendation``, in order. Asks of one engine, ``k`` and ``exclude_seen`` are
    scored in one ``recommend_many`` pass (equal to one at a time up to float rounding); an ask
    alone in its group, or of an engine with ANN retrieval (which ``recommend_many`` does not
    use), on ``recommend``, exactly as an unbatched request."""
    groups: dict[tuple, list[int]] = {}
    for n, a in enumerate(asks):
        groups.setdefault((a.engine, a.k, a.exclude_seen) if a.engine.retrieval is None else (n,), []).append(n)
    out: list[Recommendation | None] = [None] * len(asks)
    for rows in groups.values():
        first = asks[rows[0]]
        if len(rows) == 1:
            out[rows[0]] = first.engine.recommend(first.hist_item_ids, first.hist_ts, first.k, first.exclude_seen)
            continue
        recs = first.engine.recommend_many([(asks[n].hist_item_ids, asks[n].hist_ts) for n in rows], first.k,
                                           first.exclude_seen, batch_size=len(rows))
        for n, rec in zip(rows, recs, strict=True):
            out[n] = rec
    return out  # type: ignore[return-value]  # every row filled above
