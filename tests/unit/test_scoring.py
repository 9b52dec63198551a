"""serving.scoring: torch runs on one long-lived thread with the configured intra-op threads, and
requests queued for it meanwhile are scored as one batch."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from models.inference import Recommendation
from serving.scoring import MAX_BATCH_ENV, THREADS_ENV, Ask, Batcher, Scorer, max_batch_from_env, recommend_all, torch_threads_from_env


def test_every_call_runs_on_the_same_dedicated_thread_with_its_threads():
    scorer = Scorer(threads=1)
    try:
        names = {scorer.submit(lambda: threading.current_thread().name).result() for _ in range(5)}
        assert len(names) == 1 and names.pop().startswith("pulse-scoring")
        assert scorer.submit(torch.get_num_threads).result() == 1
        assert scorer.submit(lambda a, b=0: a + b, 2, b=3).result() == 5
    finally:
        scorer.close()


def test_an_error_on_the_scoring_thread_reaches_the_caller():
    scorer = Scorer()
    try:
        with pytest.raises(ZeroDivisionError):
            scorer.submit(lambda: 1 / 0).result()
        assert scorer.submit(lambda: "still serving").result() == "still serving"
    finally:
        scorer.close()


@pytest.mark.parametrize(("env", "read", "default"), [(THREADS_ENV, torch_threads_from_env, 1), (MAX_BATCH_ENV, max_batch_from_env, 16)])
def test_whole_numbers_from_env(monkeypatch, env, read, default):
    monkeypatch.delenv(env, raising=False)
    assert read() == default
    monkeypatch.setenv(env, "2")
    assert read() == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(env, bad)
        with pytest.raises(ValueError, match=env):
            read()


def _held(scorer: Scorer) -> threading.Event:
    """Keep the scoring thread busy until the returned event is set."""
    release, busy = threading.Event(), threading.Event()
    scorer.submit(lambda: (busy.set(), release.wait(10)))
    assert busy.wait(10)
    return release


def _callers(batcher: Batcher, items: list) -> tuple[list[threading.Thread], dict]:
    """One thread per item, each submitting it and keeping what it gets back (answer or exception)."""
    got: dict = {}

    def call(item) -> None:  # noqa: ANN001
        try:
            got[item] = batcher.submit(item).result(10)
        except Exception as e:
            got[item] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in items]
    for t in threads:
        t.start()
    return threads, got


def _wait_queued(batcher: Batcher, n: int) -> None:
    for _ in range(1000):
        if len(batcher._queued) == n:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{len(batcher._queued)} queued, expected {n}")


def test_calls_queued_while_the_scorer_is_busy_are_answered_in_one_batch():
    scorer, calls = Scorer(), []
    batcher = Batcher(scorer, lambda items: (calls.append(list(items)), [f"answer {i}" for i in items])[1], max_batch=16)
    try:
        release = _held(scorer)
        threads, got = _callers(batcher, list(range(6)))
        _wait_queued(batcher, 6)
        release.set()
        for t in threads:
            t.join(10)
        assert len(calls) == 1 and sorted(calls[0]) == list(range(6))
        assert got == {i: f"answer {i}" for i in range(6)}
        assert batcher.submit(9).result(10) == "answer 9" and calls[-1] == [9]  # alone: a batch of one, no waiting
    finally:
        scorer.close()


def test_after_a_batch_with_company_a_drain_waits_briefly_for_as_many():
    """``linger_s``: the clients of a batch of 3 come back one by one; the drain that finds the first
    waits for the other two (up to the linger) and scores the three together. A batcher whose
    last batch was alone never waits, and a wait ends at the linger with what has come."""
    scorer, calls = Scorer(), []
    batcher = Batcher(scorer, lambda items: (calls.append(list(items)), list(items))[1], max_batch=16, linger_s=5.0)
    try:
        t0 = time.perf_counter()
        assert batcher.submit(-1).result(10) == -1 and time.perf_counter() - t0 < 2.0  # alone: no wait
        release = _held(scorer)
        first = [batcher.submit(i) for i in range(3)]
        release.set()
        assert [f.result(10) for f in first] == [0, 1, 2] and calls[-1] == [0, 1, 2]
        lead = batcher.submit(3)
        time.sleep(0.05)
        rest = [batcher.submit(4), batcher.submit(5)]
        assert lead.result(10) == 3 and [f.result(10) for f in rest] == [4, 5]
        assert calls[-1] == [3, 4, 5]  # one batch again
        batcher.linger_s = 0.1
        t0 = time.perf_counter()
        assert batcher.submit(6).result(10) == 6 and calls[-1] == [6]  # nobody else came: alone after the linger
        assert 0.09 <= time.perf_counter() - t0 < 2.0
    finally:
        scorer.close()


def test_the_linger_comes_from_the_environment_in_milliseconds(monkeypatch):
    from serving.scoring import LINGER_ENV, linger_from_env

    monkeypatch.delenv(LINGER_ENV, raising=False)
    assert linger_from_env() == 0.002
    monkeypatch.setenv(LINGER_ENV, "0")
    assert linger_from_env() == 0.0
    for bad in ("-1", "soon", "nan", "5000"):
        monkeypatch.setenv(LINGER_ENV, bad)
        with pytest.raises(ValueError, match=LINGER_ENV):
            linger_from_env()


def test_batches_are_cut_at_max_batch_and_keep_their_order():
    scorer, calls = Scorer(), []
    batcher = Batcher(scorer, lambda items: (calls.append(list(items)), list(items))[1], max_batch=4)
    try:
        release = _held(scorer)
        futures = [batcher.submit(i) for i in range(10)]
        release.set()
        assert [f.result(10) for f in futures] == list(range(10))
        assert calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    finally:
        scorer.close()


def test_an_error_in_one_request_is_its_own():
    def many(items: list[int]) -> list[int]:
        if 3 in items:
            raise KeyError("bad user 3")
        return [10 * i for i in items]

    scorer = Scorer()
    batcher = Batcher(scorer, many, max_batch=16)
    try:
        release = _held(scorer)
        futures = [batcher.submit(i) for i in range(5)]
        release.set()
        for i, f in enumerate(futures):
            if i == 3:
                with pytest.raises(KeyError, match="bad user 3"):
                    f.result(10)
            else:
                assert f.result(10) == 10 * i
    finally:
        scorer.close()


def test_a_request_whose_caller_is_gone_is_not_scored_and_fails_no_other():
    scorer, calls = Scorer(), []
    batcher = Batcher(scorer, lambda items: (calls.append(list(items)), list(items))[1], max_batch=16)
    try:
        release = _held(scorer)
        futures = [batcher.submit(i) for i in range(4)]
        assert futures[1].cancel()  # what asyncio.wrap_future does when the request's task is cancelled
        release.set()
        assert [futures[i].result(10) for i in (0, 2, 3)] == [0, 2, 3] and calls == [[0, 2, 3]]
    finally:
        scorer.close()


class FakeEngine:
    """Records how it was called; a recommendation names the history's first item and k."""

    def __init__(self, retrieval: object = None) -> None:
        self.retrieval, self.calls = retrieval, []

    def recommend(self, ids: list[str], ts: list[int], k: int, exclude_seen: bool) -> Recommendation:
        self.calls.append(("one", 1))
        return Recommendation(items=[{"item_id": ids[0], "k": k, "exclude_seen": exclude_seen}])

    def recommend_many(self, histories: list, k: int, exclude_seen: bool, batch_size: int) -> list[Recommendation]:
        self.calls.append(("many", len(histories)))
        return [Recommendation(items=[{"item_id": ids[0], "k": k, "exclude_seen": exclude_seen}]) for ids, _ in histories]


def test_recommend_all_batches_compatible_asks_only():
    """One pass per engine, k and exclude_seen; a lone ask and an ANN engine's asks one at a time
    (``recommend``, as unbatched); every answer back in its ask's place."""
    old, new, ann = FakeEngine(), FakeEngine(), FakeEngine(retrieval=object())
    asks = [Ask(old, ["a"], [1], 10, True), Ask(new, ["b"], [1], 10, True), Ask(old, ["c"], [1], 10, True),
            Ask(old, ["d"], [1], 5, True), Ask(old, ["e"], [1], 10, False), Ask(ann, ["f"], [1], 10, True),
            Ask(ann, ["g"], [1], 10, True), Ask(new, ["h"], [1], 10, True)]
    got = recommend_all(asks)
    assert [(r.items[0]["item_id"], r.items[0]["k"], r.items[0]["exclude_seen"]) for r in got] == \
        [(a.hist_item_ids[0], a.k, a.exclude_seen) for a in asks]
    assert sorted(old.calls) == [("many", 2), ("one", 1), ("one", 1)]
    assert new.calls == [("many", 2)] and ann.calls == [("one", 1), ("one", 1)]

