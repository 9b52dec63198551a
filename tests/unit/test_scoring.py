"""serving.scoring: torch runs on one long-lived thread with the configured intra-op threads."""
from __future__ import annotations

import threading

import pytest
import torch

from serving.scoring import THREADS_ENV, Scorer, torch_threads_from_env


def test_every_call_runs_on_the_same_dedicated_thread_with_its_threads():
    scorer = Scorer(threads=1)
    try:
        names = {scorer(lambda: threading.current_thread().name) for _ in range(5)}
        assert len(names) == 1 and names.pop().startswith("pulse-scoring")
        assert scorer(torch.get_num_threads) == 1
        assert scorer(lambda a, b=0: a + b, 2, b=3) == 5
    finally:
        scorer.close()


def test_an_error_on_the_scoring_thread_reaches_the_caller():
    scorer = Scorer()
    try:
        with pytest.raises(ZeroDivisionError):
            scorer(lambda: 1 / 0)
        assert scorer(lambda: "still serving") == "still serving"
    finally:
        scorer.close()


def test_threads_from_env(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert torch_threads_from_env() == 1
    monkeypatch.setenv(THREADS_ENV, "2")
    assert torch_threads_from_env() == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(ValueError, match=THREADS_ENV):
            torch_threads_from_env()
