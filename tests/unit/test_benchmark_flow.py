"""flows.benchmark: the ranking benchmark's fit jobs as Prefect tasks report what the single-process
``run_protocols`` reports for the same seeds, on the default runner and on a local Dask cluster."""
from __future__ import annotations

import importlib.util

import pytest

from benchmarks.task_runners import largest_difference, reference, tiny_fits
from core.params import ScaleParams
from flows.benchmark import job_threads, task_runner

SEEDS = [1, 2]
HAS_DASK = importlib.util.find_spec("prefect_dask") is not None


@pytest.fixture(scope="module", autouse=True)
def _stop_temporary_prefect_server():
    """Prefect stops its temporary server at interpreter exit and logs so after pytest has closed
    the captured stream, which prints a 'ValueError: I/O operation on closed file' traceback; stop
    it while the stream is open (a later flow starts a new one)."""
    yield
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer

    APILogWorker.drain_all(timeout=10)  # the runs' last logs, while the server still takes them
    SubprocessASGIServer().stop()


@pytest.fixture(scope="module")
def single_process():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before conftest's function-scoped one
    try:
        return reference(SEEDS)
    finally:
        torch.set_num_threads(n)


@pytest.mark.training
@pytest.mark.timeout(300)
@pytest.mark.parametrize("runner", ["sequential", pytest.param("dask", marks=pytest.mark.skipif(not HAS_DASK, reason="pip install -e '.[dask]'"))])
def test_flow_tasks_give_the_single_process_metrics(single_process, runner):
    """Same seeds, same numbers: one task per (protocol, seed) or ablation row, merged as the
    --jobs process pool merges them, whether the tasks run in this process or on 2 Dask workers."""
    got = tiny_fits(ScaleParams(task_runner=runner, dask_workers=2, torch_threads=1), SEEDS)
    assert list(got) == list(single_process)
    for proto, one in single_process.items():
        assert got[proto]["users"] == one["users"] and got[proto]["slice_users"] == one["slice_users"]
        assert list(got[proto]["models"]) == list(one["models"])
    assert largest_difference(single_process, got) <= 1e-6


def test_task_runner_follows_the_scale_params():
    from prefect.task_runners import ThreadPoolTaskRunner

    runner = task_runner(ScaleParams())
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 1  # seeded fits never share a process at once
    with pytest.raises(ValueError, match="task_runner"):
        task_runner(ScaleParams(task_runner="threads"))
    if HAS_DASK:
        assert task_runner(ScaleParams(task_runner="dask", dask_address="tcp://10.0.0.5:8786")).address == "tcp://10.0.0.5:8786"
        assert task_runner(ScaleParams(task_runner="dask", dask_workers=3)).cluster_kwargs["n_workers"] == 3
    assert job_threads(ScaleParams()) == 0  # sequential: torch's own setting, as benchmarks.ranking without --jobs
    assert job_threads(ScaleParams(task_runner="dask", dask_workers=2), cores=8) == 4
    assert job_threads(ScaleParams(task_runner="dask", dask_address="tcp://h:8786"), cores=8) == 0
    assert job_threads(ScaleParams(task_runner="dask", torch_threads=3), cores=8) == 3


def test_params_yaml_runs_sequentially_by_default():
    from pathlib import Path

    from core.params import load_params

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    assert params.scale == ScaleParams() and params.scale.task_runner == "sequential"
    assert load_params(Path(__file__).resolve().parents[2] / "params.yaml", {"scale.dask_workers": 4}).scale.dask_workers == 4
