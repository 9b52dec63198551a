"""The service's environment settings that decide its shape: PULSE_WORKERS, PULSE_TRACING."""
from __future__ import annotations

import pytest

from serving.service import API_ROUTES, Recommender, tracing_from_env, workers_from_env


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


def test_the_api_routes_are_left_out_of_tracing_unless_asked_for(monkeypatch):
    monkeypatch.delenv("PULSE_TRACING", raising=False)
    assert tracing_from_env() == {"excluded_urls": list(API_ROUTES)}
    assert sorted(API_ROUTES) == sorted(api.route for api in Recommender.apis.values())  # every endpoint, no other
    monkeypatch.setenv("PULSE_TRACING", "1")
    assert tracing_from_env() == {}
