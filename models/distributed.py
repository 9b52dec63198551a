"""Distributed data-parallel training of the train stage: torchrun + torch.distributed, no more.

``torchrun --nproc_per_node=N -m models.train`` (or ``train.processes: N``, which launches exactly
that) starts N processes; each one runs the train stage, ``session`` joins them in a process group
(gloo on the CPU, NCCL on GPUs) and ``fit_interest`` wraps the model in DistributedDataParallel.
Outside torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) everything here is a no-op and the stage
runs exactly as before.

What makes N processes train the model one process trains (docs/scaling-training.md):

* every rank builds the same global batches from the same seeded generator as one process does,
  and takes every N-th window of each (``shard``): the effective batch stays ``train.batch_size``
  and the length buckets stay intact;
* each rank weighs its mean loss by its share of the batch's labelled positions (``loss_weight``),
  so DDP's gradient average is the gradient of the batch's mean loss over all positions, the
  single-process loss, not a mean of per-rank means;
* rank 0 alone evaluates, early-stops, checkpoints and writes artifacts; its stop decision and
  the resumed checkpoint are broadcast to the others.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

# how long a rank waits for the others (rank 0 encodes item text and runs Feast's point-in-time
# join alone while the others wait for its broadcast: minutes on a large dataset)
TIMEOUT = dt.timedelta(hours=2)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    return world_size() > 1


def launched_by_torchrun() -> bool:
    """Started by torchrun (or another launcher that sets the torch.distributed environment) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_device(device: str) -> str:
    """The device of this process: ``cuda`` becomes ``cuda:<LOCAL_RANK>`` under torchrun."""
    if device == "cuda" and launched_by_torchrun():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


@contextlib.contextmanager
def session(device: str) -> Iterator[None]:
    """Join the process group for the length of the block when torchrun started this process
    (gloo on the CPU, NCCL on CUDA); a no-op otherwise or when a group already exists."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield
        return
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT,
                            **({"device_id": torch.device(device)} if cuda else {}))
    if not is_main():  # one log of the run: rank 0's (the others warn and fail only)
        logging.getLogger().setLevel(logging.WARNING)
    log.info("process group: %s, %d processes", dist.get_backend(), world_size())
    try:
        yield
    finally:
        dist.destroy_process_group()


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's windows of a global batch: every N-th (strided, so each rank gets all lengths
    of a length bucket alike). A rank may get none when the batch is smaller than N."""
    return batch[rank()::world_size()] if active() else batch


def loss_weight(local_labels: int, global_labels: int) -> float:
    """Factor on a rank's mean loss that makes DDP's gradient average (sum over ranks / N) the
    gradient of the global batch's mean loss: local mean * local count / global count * N."""
    return local_labels * world_size() / max(global_labels, 1)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled; identity when not distributed)."""
    if not active():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(value: float, device: str) -> float:
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def broadcast_flag(flag: bool, device: str) -> bool:
    """Rank 0's ``flag`` on every rank (the early-stop decision)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


class LossModule(torch.nn.Module):
    """``model.loss`` as ``forward``: DistributedDataParallel synchronises gradients of what runs
    through its ``forward``, and the interest model's training entry point is ``loss``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model.loss(*args)


def wrap(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """The DDP-wrapped loss of ``model`` (parameters and buffers broadcast from rank 0 here). Buffers
    are not re-broadcast at every step: they are the frozen text embeddings and priors."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    # static graph: the same parameters take part in every step, and some configurations leave one
    # out every time (the long-term decay without use_time_decay), which a plain DDP refuses
    return DDP(LossModule(model), device_ids=ids, forward_sync_buffers=False, static_graph=True)


def launch(params: Any, processes: int) -> dict:
    """Run the train stage as ``torchrun --standalone --nproc_per_node=<processes> -m models.train``
    on these params (overrides included) and return rank 0's result summary. What ``train.processes``
    does when the stage is called in a single process (``make run``, ``dvc repro``, the Prefect flow)."""
    with tempfile.TemporaryDirectory(prefix="pulse-ddp-") as tmp:
        p, out = Path(tmp) / "params.yaml", Path(tmp) / "result.json"
        import yaml

        p.write_text(yaml.safe_dump(json.loads(json.dumps(params.to_dict(), default=str)), sort_keys=False))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "models.train", "--params", str(p)]
        env = {**os.environ, ROOT_ENV: str(Path(params.root).resolve()), RESULT_ENV: str(out)}
        log.info("train.processes=%d: %s", processes, " ".join(cmd))
        proc = subprocess.run(cmd, cwd=params.root, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"distributed training failed (exit {proc.returncode}): {' '.join(cmd)}")
        return json.loads(out.read_text())


ROOT_ENV = "PULSE_TRAIN_ROOT"      # the repository root of the launching run (its params file is a temporary copy)
RESULT_ENV = "PULSE_TRAIN_RESULT"  # where rank 0 writes the result summary for the launching run
