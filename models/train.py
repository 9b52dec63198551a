"""Stage `train`: encode item text, fit the baselines, train the interest-weight model.

The interest model's training examples come from Feast's point-in-time join
(``get_historical_features``); validation for early stopping uses the leave-one-out split.
This module reads the stage's inputs and writes the model artifact; the fitting itself is
models/fitting.py (every requested model) and models/interest_fit.py (the neural training loop).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from features import store
from core.cli import stage_main
from core.data_version import data_version
from core.params import Params
from models import artifacts
from models import distributed as ddp
from models.data import (ItemIndex, Windows, item_category_matrix, item_index, leave_one_out, train_interactions, training_entity_df,
                         user_sequences, windows_from_features)
from models.encoder import TextEncoder
from models.finetune import finetune, next_item_pairs
from models.fitting import NEURAL, SWITCHED, fit_models, shift_validation, with_components

log = logging.getLogger(__name__)


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    return requested


@dataclass
class TrainResult:
    out_dir: str
    models: list[str]
    best_epoch: int
    best_valid_ndcg: float
    seconds: float
    device: str

    def summary(self) -> dict:
        return self.__dict__


def encode_items(params: Params, items: pd.DataFrame, device: str, train: pd.DataFrame | None = None,
                 save_to: Path | None = None) -> torch.Tensor:
    """(N+1, text_dim) text embeddings, row 0 = padding.

    With ``encoder.finetune_steps > 0`` and training interactions, the encoder is first
    fine-tuned on next-item pairs (models/finetune.py) and saved to ``save_to`` (a versioned part
    of the model artifact); its embeddings are not cached, since the weights are new each run.
    ``train`` must hold the training events only (``train_interactions``): pairs made from a
    user's last two events would show the encoder the validation and test targets.
    """
    ep = params.encoder
    tune = ep.finetune_steps > 0 and train is not None
    encoder = TextEncoder(ep.model_name, ep.max_length, ep.batch_size, device, None if tune else params.path(ep.cache_dir), ep.pooling)
    if tune:
        pairs = next_item_pairs(train, items, ep.finetune_max_pairs, params.train.seed)
        finetune(encoder, pairs, ep.finetune_steps, ep.finetune_batch_size, ep.finetune_lr, seed=params.train.seed)
        if save_to is not None:
            encoder.model.save_pretrained(save_to)
            encoder.tokenizer.save_pretrained(save_to)
    emb = torch.as_tensor(encoder.encode(items["text"].tolist()))
    return torch.cat([torch.zeros(1, emb.shape[1]), emb])


def run(params: Params) -> TrainResult:
    """The train stage. Under torchrun (``WORLD_SIZE`` > 1) every process runs it and they train the
    neural models together (models/distributed.py); rank 0 alone writes the artifacts. With
    ``train.processes`` > 1 outside torchrun, it launches torchrun on itself and returns rank 0's result."""
    root = os.environ.get(ddp.ROOT_ENV)
    if root and ddp.launched_by_torchrun():  # launched by `train.processes`: its params are a temporary copy
        params = replace(params, root=root)
    if params.train.processes > 1 and not ddp.launched_by_torchrun():
        return TrainResult(**ddp.launch(params, params.train.processes))
    device = ddp.rank_device(pick_device(params.train.device))
    with ddp.session(device):
        result = _run(params, device)
        if ddp.is_main() and root and os.environ.get(ddp.RESULT_ENV):
            Path(os.environ[ddp.RESULT_ENV]).write_text(json.dumps(result.summary()))
    return result


def _inputs(params: Params, interactions: pd.DataFrame, items: pd.DataFrame, index: ItemIndex, train: pd.DataFrame,
            device: str, neural: bool) -> tuple[torch.Tensor, Windows | None]:
    """The item text embeddings and (``neural``) the training windows from Feast, computed by rank 0
    and broadcast to the other processes of a distributed run."""
    text_emb = windows = None
    if ddp.is_main():
        out = params.path(params.train.out_dir)
        shutil.rmtree(out / "encoder", ignore_errors=True)  # never serve a stale fine-tuned encoder
        text_emb = encode_items(params, items, device, train, out / "encoder")
        if neural:
            entity_df = training_entity_df(interactions, params.train.max_len)
            log.info("fetching %d training windows from Feast (point-in-time join)", len(entity_df))
            rows = store.historical_user_behaviour(params.path(params.features.repo_dir), entity_df)
            windows = windows_from_features(rows, index, params.train.max_len)
    return ddp.broadcast_object((text_emb, windows))


def _run(params: Params, device: str) -> TrainResult:
    t0 = time.time()
    tp = params.train
    main = ddp.is_main()
    raw = params.path(params.data.raw_dir)
    interactions = pd.read_parquet(raw / "interactions.parquet")
    items = pd.read_parquet(raw / "items.parquet")
    index = item_index(items)
    train = train_interactions(interactions)
    out = params.path(tp.out_dir)
    neural = any(n in with_components(tp.models, tp) for n in NEURAL)
    text_emb, windows = _inputs(params, interactions, items, index, train, device, neural)
    valid = shift_valid = None
    if "ease" in tp.models and len(tp.ease_lambdas) > 1:  # EASE picks its regularisation on validation
        valid = leave_one_out(user_sequences(interactions, index), "valid", tp.max_len)
    if neural:
        seqs = user_sequences(interactions, index)
        valid = leave_one_out(seqs, "valid", tp.max_len)
        shift_valid = shift_validation(seqs, text_emb, tp) if main else None
    ck_dir = params.path(tp.checkpoint_dir) / f"{params.data.dataset}-{data_version(raw)}-{params.section_hash('features', 'encoder', 'train')}"
    models, fits = fit_models(tp.models, train, index, text_emb, windows, valid, tp, device,
                              params.evaluate.k, ck_dir, shift_valid=shift_valid,
                              item_categories=item_category_matrix([list(c) for c in items["categories"]]))
    if not main:  # rank 0 writes the artifacts
        return TrainResult(str(out), sorted(models), 0, 0.0, round(time.time() - t0, 1), device)
    best = fits.get("interest") or next(iter(fits.values()), None)
    hybrid = {"hybrid_weights": models["hybrid"].weights} if "hybrid" in models else {}
    hybrid.update({f"{n}_gate": fits[n].history[0] for n in SWITCHED if n in fits})
    meta = {
        "data_version": data_version(raw), "params_hash": params.section_hash("features", "encoder", "train"),
        "dataset": params.data.dataset,
        "encoder": params.encoder.model_name + (f" fine-tuned {params.encoder.finetune_steps} steps (encoder/)" if params.encoder.finetune_steps else ""),
        "encoder_pooling": params.encoder.pooling, "encoder_max_length": params.encoder.max_length,  # serving encodes /items as training did
        "models": sorted(models), "device": device, "max_len": tp.max_len,  # the history length serving reads
        "history": {n: f.history for n, f in fits.items()}, "best_epoch": {n: f.best_epoch for n, f in fits.items()},
        "fit_seconds": {n: f.seconds for n, f in fits.items()}, "train_seconds": round(time.time() - t0, 1), **hybrid,
        **({"processes": ddp.world_size()} if ddp.active() else {}),
    }
    artifacts.save(out, list(index.ids), text_emb, models, meta, items["title"].astype(str).tolist(),
                   [list(c) for c in items["categories"]])
    write_card(out, meta)
    from core.tracking import write_train_history  # the per-epoch curves `dvc plots show` draws

    write_train_history(params.path(params.tracking.metrics_dir), meta)
    return TrainResult(str(out), sorted(models), best.best_epoch if best else 0, best.best_valid if best else 0.0,
                       meta["train_seconds"], device)


def write_card(out: Path, meta: dict) -> None:
    (out / "card.md").write_text(
        f"# pulse recommender\n\n- dataset: {meta['dataset']} (data version {meta['data_version']})\n"
        f"- params hash: {meta['params_hash']}\n- encoder: {meta['encoder']}\n- models: {', '.join(meta['models'])}\n"
        f"- trained on {meta['device']} in {meta['train_seconds']} s; best epoch {meta['best_epoch']}\n"
        "- intended use: next-item recommendation from a user's recent behaviour; metrics in reports/metrics.json\n"
    )


def main() -> None:
    stage_main(run, "train: encoder embeddings, baselines and the interest-weight model", flags={"--device": "train.device"})


if __name__ == "__main__":
    main()
