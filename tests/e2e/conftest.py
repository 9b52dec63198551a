"""Shared end-to-end fixtures: one fresh git + DVC copy of the project and one pipeline run per session."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

from tests.redis_server import free_port  # one helper for every test server; the e2e tests import it from here

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

SMALL = {
    "ingest": {"synthetic": {"n_users": 60, "n_items": 90, "n_categories": 6, "events_per_user": 25}},
    "train": {"epochs": 6, "patience": 3, "dim": 32, "max_len": 20},
    "features": {"history_len": 20},
}


def _merge(d: dict, over: dict) -> dict:
    for k, v in over.items():
        d[k] = _merge(d.get(k, {}), v) if isinstance(v, dict) else v
    return d


def run(cmd: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory, isolated_homes: dict) -> tuple[Path, dict]:
    """A fresh clone-like copy of the repo (tracked files only) with small params, in git."""
    dst = tmp_path_factory.mktemp("e2e") / "pulse"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith("tests/"):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    params = _merge(yaml.safe_load((dst / "params.yaml").read_text()), SMALL)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / "dvc.lock").unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(dst)}
    git = ["git", "-c", "user.email=ci@pulse", "-c", "user.name=ci"]
    run(["git", "init", "-q"], dst, env)
    run(git + ["add", "-A"], dst, env)
    run(git + ["commit", "-qm", "init"], dst, env)
    return dst, env


# CPU-burning processes that run beside the pipeline: `make run` must pass on a busy machine
# (issue 13: the ephemeral Prefect server timed out at load 5-10 on 2 cores). 0 turns it off.
LOAD_PROCESSES = int(os.environ.get("PULSE_E2E_LOAD", "2"))


@dataclass
class Load:
    """What the burners did while the pipeline ran: evidence that the machine really was busy."""

    processes: int
    wall_s: float
    burner_cpu_s: list[float]


@contextmanager
def cpu_load(n: int) -> Iterator[Load]:
    """Start ``n`` ``python -c 'while True: pass'`` processes for the duration of the block; stop
    exactly those (by pid) afterwards and record how much CPU they took."""
    import psutil

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    load = Load(n, 0.0, [])
    t0 = time.time()
    try:
        yield load
    finally:
        load.wall_s = time.time() - t0
        for p in burners:
            try:
                t = psutil.Process(p.pid).cpu_times()
                load.burner_cpu_s.append(t.user + t.system)
            except psutil.NoSuchProcess:
                load.burner_cpu_s.append(0.0)
            p.kill()
            p.wait(timeout=30)


@pytest.fixture(scope="session")
def pipeline_proc(project: tuple[Path, dict]) -> tuple[subprocess.CompletedProcess, Load]:
    """`python -m flows.pipeline --json` on the small dataset, run while LOAD_PROCESSES burn CPU:
    every e2e test then works on the outputs of a pipeline that ran on a loaded machine."""
    dst, env = project
    with cpu_load(LOAD_PROCESSES) as load:
        proc = run([sys.executable, "-m", "flows.pipeline", "--json"], dst, env, timeout=900)
    return proc, load


@pytest.fixture(scope="session")
def pipeline_run(pipeline_proc: tuple[subprocess.CompletedProcess, Load]) -> dict:
    proc, _ = pipeline_proc
    out = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    return out



@dataclass
class Server:
    """A `bentoml serve` of the project. Its workers run in sessions of their own (circus), so
    stopping it means signalling the process group and every descendant."""

    url: str
    port: int
    proc: subprocess.Popen
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """SIGTERM: a graceful stop (the arbiter stops its workers). SIGKILL: a crash of the whole
        server, workers included, with no chance to finish anything. Returns once all are gone."""
        import psutil

        try:
            family = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        if sig == signal.SIGKILL:
            for p in family:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
        else:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        _, alive = psutil.wait_procs(family, timeout=timeout)
        for p in alive:  # did not stop in time: no process may outlive the test and keep the port
            p.kill()
        psutil.wait_procs(alive, timeout=30)
        self.proc.wait(timeout=30)


def start_server(dst: Path, env: dict, port: int | None = None, log_name: str = "serve.log", ready_s: float = 120) -> Server:
    """`bentoml serve serving.service:Recommender` in the project copy, returned once /readyz answers 200."""
    port = port or free_port()
    log = dst / log_name
    with log.open("a") as out:
        proc = subprocess.Popen([str(BIN / "bentoml"), "serve", "serving.service:Recommender", "-p", str(port)],
                                cwd=dst, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", port, proc, log)
    deadline = time.time() + ready_s
    while time.time() < deadline:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail("bentoml serve exited: " + log.read_text()[-3000:])
        time.sleep(0.5)
    server.stop()
    pytest.fail("bentoml serve did not become ready: " + log.read_text()[-3000:])
