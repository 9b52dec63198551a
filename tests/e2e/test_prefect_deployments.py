"""The Prefect UI path, for real: a local Prefect server, the deployments served by
`python -m flows.deploy`, and a deployment run triggered through the API with edited parameters;
then the same deployments from `prefect.yaml` on a process work pool, run by `prefect worker start`
(what another machine would run)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from tests.e2e.conftest import BIN, free_port, run

pytestmark = pytest.mark.e2e


def _wait(predicate, timeout: float, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        for p in procs:
            assert p.poll() is None, f"{p.args} exited while waiting for {what}"
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


def test_deployments_run_through_a_local_prefect_server(project, pipeline_run, tmp_path):
    dst, env = project
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**env, "PREFECT_HOME": str(tmp_path / "prefect-server"), "PREFECT_API_URL": api}
    logs = {n: (tmp_path / f"{n}.log").open("w") for n in ("server", "deploy")}
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=dst, env=env, stdout=logs["server"], stderr=subprocess.STDOUT)
    procs = [server]
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"{api}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(healthy, 120, "the Prefect server", procs)
        deployer = subprocess.Popen([sys.executable, "-m", "flows.deploy", "--monitor-interval", "86400"],
                                    cwd=dst, env=env, stdout=logs["deploy"], stderr=subprocess.STDOUT)
        procs.append(deployer)

        def names() -> set[str]:
            r = httpx.post(f"{api}/deployments/filter", json={}, timeout=10)
            return {d["name"] for d in r.json()} if r.status_code == 200 else set()

        _wait(lambda: {"pipeline", "monitor", "retrain"} <= names(), 120, "the three deployments", procs)
        monitor = next(d for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json() if d["name"] == "monitor")
        assert monitor["parameters"]["params_path"] == "params.yaml"
        assert any(s["schedule"].get("interval") == 86400 for s in monitor["schedules"])
        assert "overrides" in json.dumps(monitor["parameter_openapi_schema"])  # the UI shows a typed form
        # trigger the monitor with an edited parameter (a threshold no drift share reaches: no retrain)
        proc = run([str(BIN / "prefect"), "deployment", "run", "monitor-and-retrain/monitor",
                    "--params", json.dumps({"overrides": {"monitor.drift_threshold": 1.5}}),
                    "--watch", "--watch-timeout", "300"], dst, env, timeout=400)
        assert "Completed" in proc.stdout, proc.stdout[-2000:]
        deployer.terminate()
        deployer.wait(timeout=60)

        # prefect.yaml: the same three deployments on the `pulse` process pool, run by a worker
        run([str(BIN / "prefect"), "work-pool", "create", "pulse", "--type", "process"], dst, env, timeout=120)
        run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], dst, env, timeout=300)
        pooled = {d["name"]: d for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()}
        assert {pooled[n]["work_pool_name"] for n in ("pipeline", "monitor", "retrain")} == {"pulse"}
        assert pooled["monitor"]["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PULSE_PROJECT_DIR }}"}}]
        run([str(BIN / "prefect"), "--no-prompt", "deployment", "schedule", "pause", "--all"], dst, env, timeout=120)  # no hourly run meanwhile
        created = run([str(BIN / "prefect"), "deployment", "run", "monitor-and-retrain/monitor",
                       "--params", json.dumps({"overrides": {"monitor.drift_threshold": 1.5}})], dst, env, timeout=120)
        run_id = created.stdout.split("UUID:")[1].split()[0]
        # the worker starts elsewhere (here: the temp folder) and finds the project through PULSE_PROJECT_DIR
        worker_env = {**env, "PULSE_PROJECT_DIR": str(dst)}
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "pulse", "--run-once"],
                                  cwd=tmp_path, env=worker_env, stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT)
        procs.append(worker)

        def state() -> str:
            r = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10)
            return r.json()["state_type"] if r.status_code == 200 else ""

        deadline = time.time() + 600
        while state() not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and time.time() < deadline:
            time.sleep(2)
        assert state() == "COMPLETED", (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
