"""Every ``PULSE_*`` setting the service reads, checked when ``serving.service`` loads.

Each setting has its reader beside the code it tunes (``serving.profiles``, ``serving.scoring``,
``serving.event_writer``, ``serving.ratelimit``, ``serving.guard``, ``serving.validate``); this module
calls them all once, before BentoML starts a worker, so that a bad value stops `bentoml serve` at once
with its reason.
"""
from __future__ import annotations

import os

from serving.env import number_from_env
from serving.event_writer import bulk_share_from_env
from serving.guard import API_KEY_ENV, PROTECTED_PATHS, api_key_from_env, max_body_from_env
from serving.profiles import profile_ttl_from_env
from serving.ratelimit import rate_from_env
from serving.scoring import linger_from_env, max_batch_from_env, torch_threads_from_env
from serving.validate import TimeWindow

RELOAD_ENV = "PULSE_RELOAD_INTERVAL"  # seconds between checks for a newer packaged model (0: no watcher, /reload only)
REQUIRE_KEY_ENV = "PULSE_REQUIRE_API_KEY"  # set in the Bento's image: no key, no start


def reload_interval_from_env() -> float:
    return number_from_env(RELOAD_ENV, 0.0, "a number of seconds >= 0 (0: no watcher, /reload only)")


def check_settings() -> None:
    """Every ``PULSE_*`` setting the service reads, checked when ``serving.service`` loads: a bad value stops
    `bentoml serve` at once with its reason, where a check in the worker's start made BentoML restart
    the worker forever, and one in the middleware answered every request with a 500."""
    checks = (profile_ttl_from_env, linger_from_env, bulk_share_from_env, max_batch_from_env, torch_threads_from_env,
              rate_from_env, max_body_from_env, TimeWindow.from_env, reload_interval_from_env, required_key)
    for check in checks:
        try:
            check()
        except ValueError as e:
            raise SystemExit(str(e)) from None


def required_key() -> None:
    if not api_key_from_env() and os.environ.get(REQUIRE_KEY_ENV, "").strip().lower() in ("1", "true", "yes"):
        raise ValueError(f"{REQUIRE_KEY_ENV} is set but {API_KEY_ENV} is not: set {API_KEY_ENV} to the key that "
                         f"{', '.join(sorted(PROTECTED_PATHS))} must require (or unset {REQUIRE_KEY_ENV} for an open local service)")
