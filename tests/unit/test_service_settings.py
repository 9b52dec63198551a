"""serving.service checks every PULSE_* setting when it loads: a bad value stops `bentoml serve` (which
imports the module first) with the variable's name and the value, instead of a worker BentoML restarts
forever or a middleware that answers 500 (found by trying it: stop 24)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("env,said", [
    ({"PULSE_BULK_SHARE": "2"}, "PULSE_BULK_SHARE='2' is not a share of a core in (0, 1]"),
    ({"PULSE_RATE_LIMIT": "-1"}, "PULSE_RATE_LIMIT='-1'"),
    ({"PULSE_REQUIRE_API_KEY": "1"}, "PULSE_REQUIRE_API_KEY is set but PULSE_API_KEY is not"),
])
def test_a_bad_setting_stops_the_service_at_load_with_its_reason(env, said):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    proc = subprocess.run([sys.executable, "-c", "import serving.service"], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert said in proc.stderr
    assert "Traceback" not in proc.stderr  # the reason alone, not a stack


def test_good_settings_load():
    from serving import service

    service.check_settings()  # this process's environment (the suite's): no exit
    assert service.reload_interval_from_env() >= 0
