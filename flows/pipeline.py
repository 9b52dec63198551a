"""The whole pipeline as one Prefect flow: ingest -> features -> train -> evaluate -> monitor -> package.

Run it with ``python -m flows.pipeline [--params params.yaml] [--set train.epochs=5]``; with no
PREFECT_API_URL set, Prefect starts its ephemeral local server for the run.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from features.cli import parse_overrides
from flows.stages import evaluate_flow, features_flow, ingest_flow, monitor_flow, package_flow, train_flow


@flow(name="pipeline")
def pipeline(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Every stage in order, on the same params; returns each stage's summary."""
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
            f"- selected model: `{out['evaluate']['selected']}`\n- packaged: `{out['package']['tag']}`\n"
            f"- drift share: {out['monitor']['drift_share']:.2f} (retrain: {out['monitor']['retrain']})\n"
            f"- serve: `PULSE_MODEL_TAG={out['package']['tag']} bentoml serve serving.service:Recommender`\n"
        ),
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="run the whole pulse pipeline as a Prefect flow")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    out = pipeline(args.params, parse_overrides(args.set) or None)
    ev = out["evaluate"]["metrics"]
    print(json.dumps({"data_version": out["ingest"].get("data_version"), "selected": out["evaluate"]["selected"],
                      "test": {m: v["test"] for m, v in ev.items()}, "package": out["package"]["tag"],
                      "serve": f"PULSE_MODEL_TAG={out['package']['tag']} bentoml serve serving.service:Recommender"}, indent=2))


if __name__ == "__main__":
    main()
