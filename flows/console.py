"""What a person running the pipeline in a terminal sees and needs: Prefect settings that hold on
a busy machine, the project's logs at INFO, no warning noise, and a short summary at the end.

This module must not import prefect: ``local_prefect_env`` has to run before prefect reads its
settings (at import).
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Mapping

# Prefect settings for local runs on the ephemeral server. Defaults only: the environment wins.
LOCAL_PREFECT_ENV: dict[str, str] = {
    # Prefect waits 20 s for its ephemeral API server by default; on a loaded 2-core machine the
    # start-up (SQLite migrations, uvicorn) takes longer and the whole run fails before any stage.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # The server's telemetry heartbeat writes to the same SQLite file as the run and, on a busy
    # machine, logs "database is locked" ERROR tracebacks; local runs send nothing anyway.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The client SDK's anonymous usage events.
    "DO_NOT_TRACK": "1",
    # The project's loggers go to the terminal and to the flow run's logs in the Prefect UI.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "features,models,serving,flows",
}

PROJECT_LOGGERS: tuple[str, ...] = ("features", "models", "serving", "flows")


def local_prefect_env(environ: os._Environ | dict[str, str] = os.environ) -> dict[str, str]:
    """Fill in LOCAL_PREFECT_ENV where the environment does not say otherwise; returns what was set.

    Call it before ``import prefect``: Prefect reads its settings once, at import.
    """
    added = {k: v for k, v in LOCAL_PREFECT_ENV.items() if k not in environ}
    environ.update(added)
    return added


def show_project_logs(level: int = logging.INFO) -> None:
    """Let the project's INFO records through.

    Prefect attaches its console and API handlers to PREFECT_LOGGING_EXTRA_LOGGERS, but a record
    below a logger's effective level never reaches a handler, and without this the effective
    level is the root's WARNING. A logger already set to something more verbose keeps it.
    """
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)


def quiet_warnings() -> None:
    """Hide DeprecationWarning and FutureWarning from the libraries underneath (pydantic, pandas,
    Feast, ...): they are addressed to the libraries' developers, not to the person running pulse.
    PYTHONWARNINGS is set too, so the subprocesses a run starts (dvc) stay quiet as well."""
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")


def _metric(values: Mapping[str, float], prefix: str) -> str:
    """The value of the first ``<prefix>@k`` key, to 4 decimals ('-' when absent)."""
    key = next((k for k in values if k.startswith(prefix + "@")), None)
    return "-" if key is None else f"{values[key]:.4f}"


def summary_table(out: Mapping[str, Any]) -> str:
    """A few lines a person reads at the end of a run, from the pipeline flow's result.

    The full numbers stay in reports/metrics.json and reports/package.json (``--json`` prints
    the machine-readable summary instead).
    """
    ingest, evaluate, package = out["ingest"], out["evaluate"], out["package"]
    selected = evaluate["selected"]
    metrics: Mapping[str, Mapping[str, Any]] = evaluate["metrics"]
    some_test = next(iter(metrics.values()))["test"] if metrics else {}
    hr = next((k for k in some_test if k.startswith("hr@")), "hr@k").upper()
    ndcg = next((k for k in some_test if k.startswith("ndcg@")), "ndcg@k").upper()
    width = max([len(m) for m in metrics] + [len("model")]) + 2
    version = ingest.get("data_version") or "not versioned in DVC (a run with overrides)"
    promoted = package.get("promoted", True)
    lines = [
        "",
        "pulse pipeline finished",
        f"  data version    {version} ({ingest.get('dataset', '?')})",
        f"  selected model  {selected}",
        f"  packaged        {package['tag']}" + ("" if promoted else "  (candidate: the served model did not change)"),
        "",
        f"  {'model':<{width}}{'test ' + hr:>12}{'test ' + ndcg:>14}",
    ]
    for name, m in metrics.items():
        mark = f"{name} *" if name == selected else name
        lines.append(f"  {mark:<{width}}{_metric(m['test'], 'hr'):>12}{_metric(m['test'], 'ndcg'):>14}")
    lines += ["  (* selected: best on the validation split)", "", f"  serve: {package.get('serve') or 'make serve'}", ""]
    return "\n".join(lines)
