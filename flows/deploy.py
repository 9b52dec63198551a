"""Prefect deployments for the UI: `pipeline`, `monitor` (scheduled) and `retrain`.

    .venv/bin/prefect server start &                                   # UI at http://127.0.0.1:4200
    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m flows.deploy

`flows.deploy` registers the deployments and keeps serving them (runs execute in subprocesses
on this machine); trigger them from the UI with edited parameters, or with
`prefect deployment run 'pipeline/pipeline'`.
"""
from __future__ import annotations

import argparse

from prefect import serve

from flows.pipeline import pipeline
from flows.stages import monitor_and_retrain_flow, retrain_flow


def deployments(params_path: str = "params.yaml", monitor_interval_s: int = 3600) -> list:
    params = {"params_path": params_path}
    return [
        pipeline.to_deployment(name="pipeline", parameters=params, description="ingest -> features -> train -> evaluate -> monitor -> package"),
        monitor_and_retrain_flow.to_deployment(name="monitor", parameters=params, interval=monitor_interval_s,
                                               description="drift report; retrains when the drift share crosses the threshold"),
        retrain_flow.to_deployment(name="retrain", parameters=params, description="retrain and package if better than the served model"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description="serve the pulse deployments to a Prefect server")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--monitor-interval", type=int, default=3600, help="seconds between scheduled monitor runs")
    args = ap.parse_args()
    serve(*deployments(args.params, args.monitor_interval))


if __name__ == "__main__":
    main()
