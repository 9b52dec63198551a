"""flows.console: the local Prefect settings, the project's log levels and the end-of-run table."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from flows.console import LOCAL_PREFECT_ENV, PROJECT_LOGGERS, local_prefect_env, show_project_logs, summary_table

ROOT = Path(__file__).resolve().parents[2]


def test_local_env_fills_defaults_and_keeps_what_the_user_set():
    env = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600"}
    added = local_prefect_env(env)
    assert env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "600"  # the user's value wins
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in added
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["DO_NOT_TRACK"] == "1"
    assert set(added) == set(LOCAL_PREFECT_ENV) - {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"}


def test_pipeline_module_sets_prefect_settings_before_prefect_reads_them():
    """Imported in a fresh interpreter, flows.pipeline leaves Prefect with the local settings."""
    code = (
        "import os\n"
        "for k in ('PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS', 'PREFECT_SERVER_ANALYTICS_ENABLED', 'DO_NOT_TRACK'):\n"
        "    os.environ.pop(k, None)\n"
        "import flows.pipeline\n"
        "from prefect.settings import get_current_settings\n"
        "s = get_current_settings()\n"
        "print(s.server.ephemeral.startup_timeout_seconds, s.server.analytics_enabled)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**_env(), "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["180", "False"]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}


def test_project_loggers_let_info_through_but_keep_debug():
    saved = {n: logging.getLogger(n).level for n in PROJECT_LOGGERS}
    try:
        logging.getLogger("models").setLevel(logging.NOTSET)
        logging.getLogger("features").setLevel(logging.WARNING)
        logging.getLogger("serving").setLevel(logging.DEBUG)
        show_project_logs()
        assert logging.getLogger("models.train").isEnabledFor(logging.INFO)
        assert logging.getLogger("features").level == logging.INFO
        assert logging.getLogger("serving").level == logging.DEBUG  # more verbose already: left alone
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _out(promoted: bool = True) -> dict:
    test = {"hybrid": {"hr@10": 0.812345, "ndcg@10": 0.452711, "mrr": 0.4}, "popularity": {"hr@10": 0.1, "ndcg@10": 0.05, "mrr": 0.04}}
    return {
        "ingest": {"dataset": "synthetic", "data_version": "abc123"},
        "evaluate": {"selected": "hybrid", "metrics": {m: {"valid": t, "test": t} for m, t in test.items()}},
        "package": {"tag": "pulse-recommender:xyz", "promoted": promoted, "serve": "make serve"},
    }


def test_summary_table_is_short_and_rounded():
    text = summary_table(_out())
    assert "abc123" in text and "pulse-recommender:xyz" in text and "make serve" in text
    assert "0.8123" in text and "0.4527" in text and "0.812345" not in text
    hybrid_line = next(line for line in text.splitlines() if line.strip().startswith("hybrid"))
    assert "*" in hybrid_line  # the selected model is marked
    assert "TEST HR@10" in text.upper() and "candidate" not in text
    assert len(text.splitlines()) < 20


def test_summary_table_says_when_the_run_is_only_a_candidate():
    out = _out(promoted=False)
    out["ingest"].pop("data_version")
    text = summary_table(out)
    assert "candidate" in text and "not versioned" in text
