"""models.distributed: data-parallel training of the interest model on 2 gloo CPU processes (torchrun)
gives what one process gives, and resumes from its checkpoint like one process does.

Tolerances (docs/scaling-training.md): the two processes compute the gradient of the same global
batch's mean loss, with the dropout masks one process draws (``SplitInvariantDropout``), so only the
order of floating-point sums differs: epoch losses within 1e-4 (relative) and validation NDCG@10
within 0.005 (the issue's target; measured: equal), without dropout and with it. The resume is
compared exactly.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import distributed as ddp
from tests.unit import ddp_fit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict:
    return ddp_fit.fits(tmp_path_factory.mktemp("one"))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ddp") / "two.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tests.unit.ddp_fit", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.training
@pytest.mark.parametrize("run", ["plain", "full"])  # without dropout, with dropout 0.2
def test_two_gloo_processes_train_as_one(two_processes, one_process, run):
    one, two = one_process, two_processes
    assert one[run]["world"] == 1 and two[run]["world"] == 2
    a, b = one[run]["history"], two[run]["history"]
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-4)
        assert abs(y["valid_ndcg@10"] - x["valid_ndcg@10"]) <= 0.005
    assert two[run]["weights"] == pytest.approx(one[run]["weights"], rel=1e-3)


@pytest.mark.training
def test_two_processes_resume_from_their_checkpoint(two_processes):
    two = two_processes
    assert two["resumed_from"]
    assert [h["epoch"] for h in two["part"]["history"]] == [1, 2]
    assert two["resumed"]["history"] == two["full"]["history"]  # every rank's dropout RNG came back
    assert two["resumed"]["weights"] == two["full"]["weights"]


def test_shard_and_loss_weight_single_process():
    b = torch.arange(7)
    assert torch.equal(ddp.shard(b), b)  # not distributed: the whole batch
    assert ddp.loss_weight(5, 5) == 1.0
    assert not ddp.active() and ddp.is_main()


def test_loss_weights_make_the_global_mean(monkeypatch):
    """Per-rank mean losses weighted by ``loss_weight`` average (as DDP averages gradients) to the mean
    over all labelled positions of the global batch, whatever the shards' sizes."""
    losses = torch.rand(9)                  # per labelled position of one global batch
    shards = [losses[:2], losses[2:9]]      # two ranks, unequal label counts
    monkeypatch.setattr(ddp, "world_size", lambda: 2)
    weighted = [s.mean() * ddp.loss_weight(len(s), len(losses)) for s in shards]
    assert float(sum(weighted) / 2) == pytest.approx(float(losses.mean()), rel=1e-6)
