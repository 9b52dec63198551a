"""Training one interest model (or SASRec, the same code): the epoch loop, early stopping on
validation NDCG@k, per-epoch checkpoints an interrupted run resumes from, and, under torchrun,
the neural model's share of a distributed run (models/distributed.py).

Every epoch logs one record whose fields travel as its attributes: flows.progress listens to this
module's logger and turns them into a Prefect progress artifact.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from core.params import TrainParams
from models import distributed as ddp
from models.data import EvalSet, Windows, trim_padding
from models.evaluate import evaluate_model
from models.dropout import BatchRows
from models.interest import InterestConfig, InterestModel

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float = 0.0
    seconds: float = 0.0


@dataclass
class _Run:
    """One training run's moving parts: what an epoch changes and a checkpoint keeps."""
    model: InterestModel
    opt: torch.optim.Optimizer
    gen: torch.Generator  # the batch order: shared by every rank of a distributed run
    windows: tuple[torch.Tensor, ...]  # (seq, ts, labels, label_ts)
    res: FitResult
    best_state: dict | None = None
    bad: int = 0  # epochs since the last gain on validation
    lengths: torch.Tensor = field(init=False)  # history lengths, for the length-bucketed batches

    def __post_init__(self) -> None:
        self.lengths = (self.windows[0] > 0).sum(1)


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written checkpoint


def _duration(seconds: float) -> str:
    """A log-friendly duration: 45 s, 12 min, 1 h 05 min."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def shuffled_batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Plain shuffled batches: new batch compositions every epoch, unlike the bucketed ones below,
    at the cost of more padding (`train.length_buckets: false`; measured in docs/benchmarks.md)."""
    return list(torch.randperm(n, generator=gen).split(batch_size))


def length_bucketed_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled batches of windows with similar history lengths, in shuffled order.

    Windows are left-padded to max_len; a batch of similar lengths can drop its all-padding
    columns (see ``trim_padding``), which on MovieLens (median history far below 200) halves the work.
    Shuffle first, then a stable sort by length: equal lengths stay in random order.
    """
    perm = torch.randperm(len(lengths), generator=gen)
    order = perm[torch.sort(lengths[perm], stable=True).indices]
    batches = list(order.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen)]


def fit_interest(cfg: InterestConfig, text_emb: torch.Tensor, windows: Windows,
                 valid: EvalSet, tp: TrainParams, device: str, k: int = 10, checkpoint: Path | None = None,
                 transition: torch.Tensor | None = None, trend: tuple[torch.Tensor, int] | None = None,
                 name: str = "interest") -> FitResult:
    """AdamW on full softmax CE; early stopping on validation NDCG@k, best weights restored.

    With ``checkpoint``, the state after every epoch is saved there and an interrupted run
    resumes from it (same config only); the file is removed once training finishes.
    """
    seed_everything(tp.seed)
    model = InterestModel(cfg, text_emb, transition, trend).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tp.lr, betas=(0.9, tp.adam_beta2), weight_decay=tp.weight_decay)
    run = _Run(model, opt, torch.Generator().manual_seed(tp.seed), tuple(torch.as_tensor(a) for a in windows), FitResult(model))
    distributed, main = ddp.active(), ddp.is_main()
    start = _resume(run, cfg, tp, device, checkpoint)
    step_model = ddp.wrap(model, device) if distributed else None  # gradients averaged across the processes
    t_start, done = time.monotonic(), 0  # for the time left in each epoch's log line
    for epoch in range(start, tp.epochs + 1):
        if run.bad >= tp.patience:
            break
        loss = _train_epoch(run, step_model, tp, device, epoch)
        if not main:  # rank 0 evaluates, checkpoints and decides when to stop
            if ddp.broadcast_flag(False, device):
                break
            continue
        m = _validate(run, valid, k, device, epoch, loss)
        done += 1
        _log_epoch(name, epoch, tp, loss, m, k, run.bad, (time.monotonic() - t_start) / done)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, _checkpoint_state(run, cfg, tp, device, epoch))
        stop = run.bad >= tp.patience
        if distributed:
            ddp.broadcast_flag(stop, device)
        if stop:
            log.info("early stop at epoch %d (best %d)", epoch, run.res.best_epoch)
            break
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    if checkpoint is not None and main:
        checkpoint.unlink(missing_ok=True)
    return run.res


def _resume(run: _Run, cfg: InterestConfig, tp: TrainParams, device: str, checkpoint: Path | None) -> int:
    """The first epoch to train: 1, or the one after ``checkpoint`` when it holds a run of the same
    config and seed, whose weights, optimiser, batch order, dropout RNG and early-stopping
    progress ``run`` takes over. Rank 0 reads the checkpoint; every rank resumes from it."""
    distributed = ddp.active()
    ck = None
    if ddp.is_main() and checkpoint is not None and checkpoint.exists():
        ck = torch.load(checkpoint, map_location="cpu" if distributed else device, weights_only=False)
        if not (ck["cfg"] == cfg.to_dict() and ck["seed"] == tp.seed):
            ck = None
    if distributed:
        ck = ddp.broadcast_object(ck)
    if ck is None:
        return 1
    run.model.load_state_dict(ck["model"])
    run.opt.load_state_dict(ck["opt"])
    run.gen.set_state(ck["gen"].cpu())  # map_location may have moved it; generator states live on the CPU
    # dropout draws from the global RNG, the same on every rank (models.dropout.SplitInvariantDropout):
    # without it a resumed run diverges
    torch.set_rng_state(ck["rng"].cpu())
    if ck.get("cuda_rng") is not None and device.startswith("cuda"):
        torch.cuda.set_rng_state(ck["cuda_rng"].cpu(), device)
    run.best_state, run.bad = ck["best_state"], ck["bad"]
    run.res.history, run.res.best_epoch, run.res.best_valid = ck["history"], ck["best_epoch"], ck["best_valid"]
    log.info("resuming from %s after epoch %d", checkpoint, ck["epoch"])
    return ck["epoch"] + 1


def _train_epoch(run: _Run, step_model: torch.nn.Module | None, tp: TrainParams, device: str, epoch: int) -> float:
    """One pass over the training windows; its mean batch loss. ``step_model`` is the DDP wrapper of a
    distributed run (None outside one), whose loss is the mean of the global batches."""
    distributed, use_amp = step_model is not None, device.startswith("cuda")
    seq, ts, lab, lab_ts = run.windows
    run.model.train()
    total, steps = 0.0, 0
    batches = (length_bucketed_batches(run.lengths, tp.batch_size, run.gen) if tp.length_buckets
               else shuffled_batches(len(run.lengths), tp.batch_size, run.gen))
    bar = tqdm(batches, desc=f"epoch {epoch}", mininterval=2, leave=False, disable=None)
    for b in bar:
        if step_model is not None:  # this rank's share of the global batch, its loss weighted to the global mean
            loss = _shard_loss(step_model, run.model.batch_rows, b, seq, ts, lab, lab_ts, device, use_amp)
        else:
            bs, bt, bl, blt = (a.to(device) for a in trim_padding(seq[b], ts[b], lab[b], lab_ts[b]))
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss = run.model.loss(bs, bt, bl, blt)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        if tp.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), tp.grad_clip)
        run.opt.step()
        total, steps = total + loss.item(), steps + 1
        bar.set_postfix(loss=f"{total / steps:.3f}")
    if distributed:  # the global batches' mean loss: the ranks' weighted losses sum to it (times N)
        total = ddp.all_reduce_sum(total, device) / ddp.world_size()
    return total / max(steps, 1)


def _validate(run: _Run, valid: EvalSet, k: int, device: str, epoch: int, loss: float) -> dict[str, float]:
    """Rank 0's end of an epoch: the validation metrics into the history, and the weights kept when
    NDCG@k improved (otherwise one more epoch without a gain for early stopping)."""
    m = evaluate_model(run.model, valid, k, device)
    run.res.history.append({"epoch": epoch, "loss": loss, **{f"valid_{a}": b for a, b in m.items()}})
    if m[f"ndcg@{k}"] > run.res.best_valid:
        run.res.best_valid, run.res.best_epoch, run.bad = m[f"ndcg@{k}"], epoch, 0
        run.best_state = {n: v.detach().clone() for n, v in run.model.state_dict().items()}
    else:
        run.bad += 1
    return m


def _log_epoch(name: str, epoch: int, tp: TrainParams, loss: float, m: dict[str, float], k: int, bad: int,
               per_epoch: float) -> None:
    # early stopping ends training after `patience` epochs without a gain: the next stop is at most that far
    left = min(tp.epochs - epoch, tp.patience - bad) * per_epoch
    # the fields also travel as the record's attributes: flows.progress turns them into a Prefect progress artifact
    log.info("epoch %d/%d loss %.4f valid ndcg@%d %.4f hr@%d %.4f (%.1f s/epoch; at most %s left)", epoch, tp.epochs,
             loss, k, m[f"ndcg@{k}"], k, m[f"hr@{k}"], per_epoch, _duration(left),
             extra={"train_model": name, "epoch": epoch, "epochs": tp.epochs, "loss": loss,
                    "valid_ndcg": m[f"ndcg@{k}"], "time_left": _duration(left)})


def _checkpoint_state(run: _Run, cfg: InterestConfig, tp: TrainParams, device: str, epoch: int) -> dict:
    """Everything a resumed run needs to continue as if never stopped (``_resume`` reads it back)."""
    state = {"cfg": cfg.to_dict(), "seed": tp.seed, "epoch": epoch, "model": run.model.state_dict(),
             "opt": run.opt.state_dict(), "gen": run.gen.get_state(), "rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state(device) if device.startswith("cuda") else None,
             "best_state": run.best_state, "bad": run.bad,
             "history": run.res.history, "best_epoch": run.res.best_epoch, "best_valid": run.res.best_valid}
    return state


def _shard_loss(step_model: torch.nn.Module, batch_rows: BatchRows, b: torch.Tensor, seq: torch.Tensor, ts: torch.Tensor, lab: torch.Tensor,
                lab_ts: torch.Tensor, device: str, use_amp: bool) -> torch.Tensor:
    """This rank's loss on its shard of the global batch ``b``, weighted (``ddp.loss_weight``) so that
    DDP's gradient average equals the gradient of the global batch's mean loss, as one process has it.
    A rank whose shard has no labelled position (a last batch smaller than the world) runs a window
    with weight 0: every rank must take part in every gradient all-reduce."""
    n_global = int((lab[b] > 0).sum())
    rows = ddp.shard(torch.arange(len(b)))  # positions in the global batch
    n_local = int((lab[b[rows]] > 0).sum()) if len(rows) else 0
    weight = ddp.loss_weight(n_local, n_global)
    if n_local == 0:
        rows, weight = torch.nonzero((lab[b] > 0).any(1))[:1, 0], 0.0
    # trimmed as the global batch (one process trims it so), then this rank's rows: each row has the
    # width, and so the dropout masks, it has in one process (models.dropout.SplitInvariantDropout)
    bs, bt, bl, blt = (a[rows].to(device) for a in trim_padding(seq[b], ts[b], lab[b], lab_ts[b]))
    with batch_rows.spread(len(b), rows.to(device)), \
            torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
        return step_model(bs, bt, bl, blt) * weight
