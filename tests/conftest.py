"""Session-wide isolation: Prefect, BentoML and DVC state go to temporary folders, never ~/."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def isolated_homes(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("homes")
    env = {
        "PREFECT_HOME": str(base / "prefect"),
        "BENTOML_HOME": str(base / "bentoml"),
        "DVC_GLOBAL_CONFIG_DIR": str(base / "dvc-global"),
        "DVC_SITE_CACHE_DIR": str(base / "dvc-site-cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "BENTOML_DO_NOT_TRACK": "true",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.environ.pop("PREFECT_API_URL", None)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server for the session (``tests/redis_server.py``): its ``url`` is what
    ``PULSE_ONLINE_STORE`` takes. Tests that share it use keys of their own (or flush it)."""
    from tests.redis_server import start_redis

    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
