"""The service's environment settings that decide its shape: PULSE_WORKERS."""
from __future__ import annotations

import pytest

from serving.service import workers_from_env


@pytest.mark.parametrize("raw, n", [(None, 1), ("", 1), ("1", 1), ("2", 2), (" 4 ", 4)])
def test_workers_come_from_the_environment_default_one(monkeypatch, raw, n):
    if raw is None:
        monkeypatch.delenv("PULSE_WORKERS", raising=False)
    else:
        monkeypatch.setenv("PULSE_WORKERS", raw)
    assert workers_from_env() == n


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_bad_worker_count_stops_the_start_with_the_reason(monkeypatch, raw):
    monkeypatch.setenv("PULSE_WORKERS", raw)
    with pytest.raises(SystemExit, match="PULSE_WORKERS"):
        workers_from_env()
