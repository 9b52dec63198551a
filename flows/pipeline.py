"""The whole pipeline as one Prefect flow: ingest -> features -> train -> evaluate -> monitor -> package.

Run it with ``python -m flows.pipeline [--params params.yaml] [--set train.epochs=5] [--json]``;
with no PREFECT_API_URL set, Prefect starts its ephemeral local server for the run, with a
start-up timeout and telemetry settings fit for a busy local machine (flows/console.py).
"""
from __future__ import annotations

from flows.console import local_prefect_env, quiet_warnings, show_project_logs, summary_table

local_prefect_env()  # before prefect is imported: it reads its settings once, at import

import argparse  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from core.cli import parse_overrides  # noqa: E402
from flows.stages import evaluate_flow, features_flow, ingest_flow, monitor_flow, package_flow, train_flow  # noqa: E402


@flow(name="pipeline")
def pipeline(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Every stage in order, on the same params; returns each stage's summary."""
    show_project_logs()  # also when a deployment runs this flow in a process main() never set up
    out = {"ingest": ingest_flow(params_path, overrides)}
    out["features"] = features_flow(params_path, overrides)
    out["train"] = train_flow(params_path, overrides)
    out["evaluate"] = evaluate_flow(params_path, overrides)
    out["monitor"] = monitor_flow(params_path, overrides)
    out["package"] = package_flow(params_path, overrides)
    create_markdown_artifact(
        key="pipeline-summary",
        markdown=(
            f"## pipeline\n\n- data version: `{out['ingest'].get('data_version', 'n/a')}`\n"
            f"- selected model: `{out['evaluate']['selected']}`\n- packaged: `{out['package']['tag']}` "
            f"({'served' if out['package'].get('promoted', True) else 'candidate'}: {out['package'].get('reason', '')})\n"
            f"- drift share: {out['monitor']['drift_share']:.2f} (retrain: {out['monitor']['retrain']})\n"
            f"- serve: `{out['package'].get('serve') or 'make serve'}`\n"
        ),
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="run the whole pulse pipeline as a Prefect flow")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", action="store_true", help="print the machine-readable summary (JSON) instead of the table")
    args = ap.parse_args()
    quiet_warnings()
    show_project_logs()
    out = pipeline(args.params, parse_overrides(args.set) or None)
    if args.json:
        print(json.dumps(machine_summary(out), indent=2))
    else:
        print(summary_table(out))


def machine_summary(out: dict) -> dict:
    """The run's outcome for scripts and tests (``--json``): versions, test metrics, tag, serve command."""
    return {"data_version": out["ingest"].get("data_version"), "selected": out["evaluate"]["selected"],
            "test": {m: v["test"] for m, v in out["evaluate"]["metrics"].items()}, "package": out["package"]["tag"],
            "promoted": out["package"].get("promoted", True),
            "serve": out["package"].get("serve") or f"PULSE_MODEL_TAG={out['package']['tag']} bentoml serve serving.service:Recommender"}


if __name__ == "__main__":
    main()
