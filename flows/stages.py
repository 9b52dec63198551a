"""One Prefect flow per stage. Each runs the stage's plain ``run`` function as a task, records
the stage in dvc.lock, and publishes its params and key results as artifacts.

The stage logic lives in features/, models/ and serving/; nothing here decides anything.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import State

from features import features as features_stage
from features import ingest as ingest_stage
from core.params import Params, load_params
from core.schema import DataError
from flows import versioning
from flows.progress import epoch_progress
from flows.console import show_project_logs
from models import evaluate as evaluate_stage
from models import monitor as monitor_stage
from models import train as train_stage
from serving import package as package_stage


show_project_logs()  # every flow (pipeline, deployments) shows the stages' INFO logs in the terminal and the UI


def _summary(result: Any) -> dict:
    return result.summary() if hasattr(result, "summary") else dict(result)


def _record(params: Params, stage: str, result: Any, overrides: dict[str, Any] | None) -> dict:
    """dvc commit the stage and publish its summary; returns the summary.

    A run with overrides is an experiment on other params than params.yaml: recording it in
    dvc.lock would claim params.yaml produced it, so it is left out.
    """
    logger = get_run_logger()
    root = Path(params.root)
    summary = _summary(result)
    if overrides:
        logger.warning("overrides %s given: stage '%s' not recorded in dvc.lock (edit params.yaml to version it)", overrides, stage)
    elif versioning.is_dvc_repo(root):
        versioning.commit_stage(root, stage)
        summary["dvc_outs"] = versioning.stage_outs(root, stage)
    else:
        logger.warning("%s is not a DVC repo: stage '%s' not recorded in dvc.lock", root, stage)
    create_markdown_artifact(
        key=f"{stage}-result",
        markdown=f"## {stage}\n\n```json\n{json.dumps(summary, indent=2, default=str)}\n```\n",
        description=f"result of stage {stage}",
    )
    return summary


def _publish_params(params: Params, stage: str) -> None:
    section = params.to_dict().get(stage, {})
    rows = [{"key": f"{stage}.{k}", "value": json.dumps(v, default=str)} for k, v in section.items()]
    if rows:
        create_table_artifact(key=f"{stage}-params", table=rows, description=f"params of stage {stage}")


def retry_unless_data_error(task: Any, task_run: Any, state: State) -> bool:
    """Prefect's retry_condition_fn: retry transient failures (I/O, downloads), never a DataError.

    A schema or validation error fails the same way on every try; retrying only repeats the
    traceback and buries the message that says which file and column to fix.
    """
    exc = state.data if isinstance(state.data, BaseException) else None
    return not isinstance(exc, DataError)


def _task(name: str, fn: Callable[[Params], Any], retries: int = 0) -> Any:
    return task(name=name, retries=retries, retry_delay_seconds=[2, 5, 15][:retries] or 0,
                retry_condition_fn=retry_unless_data_error if retries else None)(fn)


ingest_task = _task("ingest", ingest_stage.run, retries=2)       # I/O: downloads can fail transiently
features_task = _task("features", features_stage.run, retries=2)  # I/O: Feast registry and online store
train_task = _task("train", train_stage.run)
evaluate_task = _task("evaluate", evaluate_stage.run)
monitor_task = _task("monitor", monitor_stage.run)
package_task = _task("package", package_stage.run)


@flow(name="ingest")
def ingest_flow(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Validate the source into canonical tables, then version them with DVC (commit + push)."""
    params = load_params(params_path, overrides)
    _publish_params(params, "ingest")
    summary = _record(params, "ingest", ingest_task(params), overrides)
    root = Path(params.root)
    if "dvc_outs" in summary:
        versioning.push(root, "ingest")
        version = summary["dvc_outs"].get(params.data.raw_dir, "")
        create_markdown_artifact(
            key="data-version",
            markdown=f"## data version\n\n- dataset: `{params.data.dataset}`\n- `{params.data.raw_dir}` md5: `{version}`\n"
            f"- pushed to the DVC remote\n- rows clean / quarantined: {summary['rows_clean']} / {summary['rows_quarantined']}\n",
            description="DVC version of the raw data this run ingested",
        )
        summary["data_version"] = version
    return summary


@flow(name="features")
def features_flow(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Compute features, apply the Feast repo and materialize the online store."""
    params = load_params(params_path, overrides)
    _publish_params(params, "features")
    return _record(params, "features", features_task(params), overrides)


@flow(name="train")
def train_flow(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Encode item text, fit the baselines and train the interest-weight model."""
    params = load_params(params_path, overrides)
    _publish_params(params, "train")
    with epoch_progress():  # each model's epochs as a progress artifact in the UI
        result = train_task(params)
    return _record(params, "train", result, overrides)


@flow(name="evaluate")
def evaluate_flow(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Full-ranking leave-one-out metrics of every model; selects the one to package."""
    params = load_params(params_path, overrides)
    _publish_params(params, "evaluate")
    summary = _record(params, "evaluate", evaluate_task(params), overrides)
    rows = [{"model": m, **{k: round(v, 4) for k, v in s["test"].items()}} for m, s in summary["metrics"].items()]
    create_table_artifact(key="test-metrics", table=rows, description=f"test metrics; selected: {summary['selected']}")
    return summary


@flow(name="monitor")
def monitor_flow(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Evidently interest-drift report; its summary says whether to retrain."""
    params = load_params(params_path, overrides)
    _publish_params(params, "monitor")
    return _record(params, "monitor", monitor_task(params), overrides)


@flow(name="package")
def package_flow(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Save the selected model into the BentoML model store."""
    params = load_params(params_path, overrides)
    _publish_params(params, "package")
    return _record(params, "package", package_task(params), overrides)


@task(name="decide-promotion")
def decide_task(params: Params) -> dict:
    from serving.promotion import decide

    return decide(params).summary()


@flow(name="retrain")
def retrain_flow(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """ingest (new events included) -> features -> train -> evaluate, then package only if the new
    model beats the one being served on the same validation data."""
    out = {"ingest": ingest_flow(params_path, overrides), "features": features_flow(params_path, overrides),
           "train": train_flow(params_path, overrides), "evaluate": evaluate_flow(params_path, overrides)}
    params = load_params(params_path, overrides)
    decision = decide_task(params)
    out["decision"] = decision
    if decision["promote"]:
        out["package"] = package_flow(params_path, overrides)
    create_markdown_artifact(key="retrain-decision", markdown=f"## retrain\n\n```json\n{json.dumps(decision, indent=2)}\n```\n")
    return out


@flow(name="monitor-and-retrain")
def monitor_and_retrain_flow(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """The scheduled check: drift report, and a retrain when the drift share reaches the no-drift
    control's plus monitor.control_margin (and monitor.drift_threshold); see models/monitor.py."""
    summary = {"monitor": monitor_flow(params_path, overrides)}
    if summary["monitor"]["retrain"]:
        get_run_logger().info("drift share %.2f reached the retrain threshold %.2f: retraining", summary["monitor"]["drift_share"],
                              summary["monitor"]["retrain_threshold"])
        summary["retrain"] = retrain_flow(params_path, overrides)
    return summary
