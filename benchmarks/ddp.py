"""Data-parallel training, measured: the train stage's interest model with 1 and with N processes
(``train.processes``: torchrun + DistributedDataParallel, gloo on the CPU), same data, same seed;
test and validation NDCG@10 / HR@10 of each (leave-one-out, full ranking) and wall-clock times.

    python -m benchmarks.ddp                        # 1 vs 2 processes on params.yaml's data (run `make run` or the features stage first)
    python -m benchmarks.ddp --epochs 30            # a cap on the epochs, for a busy machine
    python -m benchmarks.ddp --processes 1 4 --set train.device=cuda   # GPUs: one process per GPU

Writes reports/bench/ddp.json (--out). Each run is a fresh `python -m models.train` with its own
output, checkpoint and metrics folders under a temporary directory: nothing of the workspace's
model, checkpoints or metrics/ is touched. One process uses torch's default threads (every core);
torchrun gives each of N processes one thread (OMP_NUM_THREADS=1), so both use the same cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.report import write_report
from core.cli import parse_overrides
from core.params import load_params
from models import artifacts
from models.data import ItemIndex, leave_one_out, user_sequences
from models.evaluate import evaluate_model


def one_run(params_path: str, processes: int, tmp: Path, extra: list[str]) -> dict:
    out = tmp / f"p{processes}"
    sets = [f"train.processes={processes}", f"train.out_dir={out / 'model'}", f"train.checkpoint_dir={out / 'checkpoints'}",
            f"tracking.metrics_dir={out / 'metrics'}", *extra]
    cmd = [sys.executable, "-m", "models.train", "--params", params_path, *[a for s in sets for a in ("--set", s)]]
    print("$", " ".join(cmd), flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    (tmp / f"p{processes}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"train with {processes} process(es) failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return {"processes": processes, "command": " ".join(cmd[1:]), "wall_seconds": round(wall, 1), "model_dir": out / "model"}


def scores(params, model_dir: Path, k: int) -> dict:
    index = ItemIndex(tuple(artifacts.load_item_ids(model_dir)))
    seqs = user_sequences(pd.read_parquet(params.path(params.data.raw_dir) / "interactions.parquet"), index)
    meta = artifacts.load_meta(model_dir)
    out = {"best_epoch": meta["best_epoch"]["interest"], "epochs_run": len(meta["history"]["interest"]),
           "fit_seconds": meta["fit_seconds"]["interest"], "train_seconds": meta["train_seconds"],
           "device": meta["device"]}
    model = artifacts.load_models(model_dir)["interest"]
    for split in ("valid", "test"):
        m = evaluate_model(model, leave_one_out(seqs, split, params.train.max_len), k)
        out.update({f"{split}_ndcg@{k}": round(m[f"ndcg@{k}"], 4), f"{split}_hr@{k}": round(m[f"hr@{k}"], 4)})
    out["seconds_per_epoch"] = round(out["fit_seconds"] / max(out["epochs_run"], 1), 2)
    out["history"] = [{"epoch": h["epoch"], "loss": round(h["loss"], 6), "valid_ndcg@10": round(h["valid_ndcg@10"], 4)}
                      for h in meta["history"]["interest"]]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="cap on train.epochs (default: params.yaml's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more train overrides")
    ap.add_argument("--out", default="reports/bench/ddp.json")
    args = ap.parse_args(argv)
    extra = ["train.models=[interest]", *([f"train.epochs={args.epochs}"] if args.epochs else []), *args.set]
    params = load_params(args.params, parse_overrides(extra))
    k = params.evaluate.k
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        for n in args.processes:
            load = os.getloadavg()[0]
            run = one_run(args.params, n, Path(tmp), extra)
            run.update(scores(params, run.pop("model_dir"), k), load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2))
            print(json.dumps(run), flush=True)
            rows.append(run)
    base = rows[0]
    for r in rows[1:]:
        r[f"test_ndcg@{k}_diff"] = round(r[f"test_ndcg@{k}"] - base[f"test_ndcg@{k}"], 4)
        r["speedup_wall"] = round(base["wall_seconds"] / r["wall_seconds"], 2)
    report = {"what": "interest model of the train stage, 1 vs N data-parallel processes (models/distributed.py)",
              "dataset": params.data.dataset, "overrides": extra, "epochs_max": params.train.epochs, "patience": params.train.patience,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                          "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
              "runs": rows}
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
