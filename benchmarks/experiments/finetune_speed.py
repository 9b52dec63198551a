"""Encoder fine-tuning speed: the former hand-written InfoNCE loop vs the sentence-transformers
trainer (models/finetune.py), seconds per step on the same next-item pairs.

    PULSE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 nice -n 10 python benchmarks/experiments/finetune_speed.py [steps] [batch] [--trainer-first]
    # the trainer alone, at several batch sizes, on a GPU (bf16), figures to a JSON file:
    python benchmarks/experiments/finetune_speed.py 30 64,256,512 --trainer-only --device cuda --model PATH --json out.json

Pairs: consecutive items of the Amazon Industrial & Scientific training sequences (the RecBole
``Scientific.train.inter`` rows' last history item -> target item), texts from ``Scientific.text``
(title, category path, brand; median ~180 characters), encoder all-MiniLM-L6-v2, max length 128.
Both runs start from the same pretrained weights. Per-step time is the median of the steps after
the first (the first includes warm-up); set-up time (building the trainer) is reported apart.
Why it is here: docs/benchmarks.md, "Encoder fine-tuning".
"""
from __future__ import annotations

import json
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from models import finetune as ft
from models.encoder import TextEncoder, mean_pool

log = logging.getLogger("finetune_speed")


def amazon_pairs(root: Path, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(last history item's text, target item's text) of the training rows, distinct texts only."""
    index = dict(line.split("\t") for line in (root / "Scientific.item2index").read_text().splitlines())
    text = {int(index[i]): t for i, t in (line.split("\t", 1) for line in (root / "Scientific.text").read_text().splitlines()[1:]) if i in index}
    pairs = []
    for line in (root / "Scientific.train.inter").read_text().splitlines()[1:]:
        _, hist, target = line.split("\t")
        a, b = text.get(int(hist.split()[-1])), text.get(int(target))
        if a and b and a != b:
            pairs.append((a, b))
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def old_loop(enc: TextEncoder, pairs: list[tuple[str, str]], steps: int, batch_size: int, lr: float = 2e-5,
             temperature: float = 0.05, seed: int = 0) -> list[float]:
    """The hand-written loop models/finetune.py had before sentence-transformers; returns seconds per step."""
    def embed(texts: list[str]) -> torch.Tensor:
        tok = enc.tokenizer(texts, padding=True, truncation=True, max_length=enc.max_length, return_tensors="pt").to(enc.device)
        return F.normalize(mean_pool(enc.model(**tok).last_hidden_state, tok["attention_mask"]), dim=-1)

    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(enc.model.parameters(), lr=lr)
    enc.model.train()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = rng.sample(pairs, min(batch_size, len(pairs)))
        a, b = embed([p[0] for p in batch]), embed([p[1] for p in batch])
        logits = (a @ b.T).float() / temperature
        target = torch.arange(len(batch))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    enc.model.eval()
    return times


def trainer_step_times(enc: TextEncoder, pairs: list[tuple[str, str]], steps: int, batch_size: int) -> tuple[list[float], float]:
    """models.finetune.finetune, timed at each logged step; returns (seconds per step, set-up seconds)."""
    stamps: list[float] = []
    make_recorder = ft._loss_recorder

    def timed_recorder(n: int):
        rec = make_recorder(n)
        on_log, on_train_begin = rec.on_log, rec.on_train_begin

        def begin(*a, **k):
            stamps.append(time.perf_counter())
            return on_train_begin(*a, **k)

        def logged(args, state, control, logs=None, **k):
            if logs and "loss" in logs:  # the last log is the run summary, not a step
                stamps.append(time.perf_counter())
            return on_log(args, state, control, logs=logs, **k)

        rec.on_train_begin, rec.on_log = begin, logged
        return rec

    ft._loss_recorder = timed_recorder
    t0 = time.perf_counter()
    try:
        ft.finetune(enc, pairs, steps, batch_size)
    finally:
        ft._loss_recorder = make_recorder
    return [b - a for a, b in zip(stamps, stamps[1:])], stamps[0] - t0


def _option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def trainer_only(pairs: list[tuple[str, str]], steps: int, batches: list[int], model: str, device: str, out: str) -> None:
    """Pairs per second of the sentence-transformers trainer at each batch size (bf16 on CUDA),
    each from the same pretrained weights; written to ``out`` as JSON when given."""
    rows = []
    for batch in batches:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        times, setup = trainer_step_times(TextEncoder(model, device=device), pairs, steps, batch)
        med = statistics.median(times[1:])
        row = {"batch": batch, "steps": len(times), "median_s_per_step": med, "pairs_per_s": batch / med,
               "first_step_s": times[0], "setup_s": setup,
               "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None}
        log.info("trainer on %s, batch %d: median %.4f s/step, %.0f pairs/s, set-up %.1f s", device, batch, med, row["pairs_per_s"], setup)
        rows.append(row)
    if out:
        Path(out).write_text(json.dumps({"device": device, "model": model, "n_pairs": len(pairs),
                                         "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
                                         "torch": torch.__version__, "rows": rows}, indent=2))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    nums = [a for i, a in enumerate(sys.argv[1:], 1) if not a.startswith("--") and not sys.argv[i - 1].startswith("--")]
    steps = int(nums[0]) if nums else 20
    batches = [int(b) for b in nums[1].split(",")] if len(nums) > 1 else [32]
    model, device = _option("--model", "all-MiniLM-L6-v2"), _option("--device", "cpu")
    root = Path(os.environ.get("PULSE_DATA_DIR", "../shared/data")) / "amazon-scientific"
    pairs = amazon_pairs(root, 20000)
    log.info("%d pairs, mean text length %.0f characters, torch threads %d", len(pairs),
             statistics.mean(len(t) for p in pairs for t in p), torch.get_num_threads())
    if "--trainer-only" in sys.argv:
        return trainer_only(pairs, steps, batches, model, device, _option("--json", ""))
    batch = batches[0]
    if "--trainer-first" in sys.argv:  # the machine's load drifts: run both orders
        new, setup = trainer_step_times(TextEncoder(model), pairs, steps, batch)
        old = old_loop(TextEncoder(model), pairs, steps, batch)
    else:
        old = old_loop(TextEncoder(model), pairs, steps, batch)
        new, setup = trainer_step_times(TextEncoder(model), pairs, steps, batch)
    for name, t in (("old loop", old), ("trainer", new)):
        log.info("%-8s %d steps, batch %d: median %.2f s/step (after the first), mean %.2f, first %.2f",
                 name, len(t), batch, statistics.median(t[1:]), statistics.mean(t[1:]), t[0])
    log.info("trainer set-up (SentenceTransformer + trainer, before step 1): %.2f s", setup)


if __name__ == "__main__":
    main()
