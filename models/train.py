"""Stage `train`: encode item text, fit the baselines, train the interest-weight model.

The interest model's training examples come from Feast's point-in-time join
(``get_historical_features``); validation for early stopping uses the leave-one-out split.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from features import store
from core.cli import stage_main
from core.data_version import data_version
from core.params import Params, TrainParams
from models import artifacts, baselines
from models import distributed as ddp
from models.data import (EvalSet, ItemIndex, Windows, item_category_matrix, item_index, leave_one_out, splice_windows, train_interactions, training_entity_df,
                         trim_padding, user_sequences, windows_from_features)
from models.encoder import TextEncoder
from models.finetune import finetune, next_item_pairs
from models.hybrid import fit_hybrid
from models.evaluate import evaluate_model
from models.interest import InterestConfig, InterestModel
from models.settings import model_config
from models.shift import spliced_switch_set
from models.gate_fit import fit_gate
from models.switch import GateConfig
from models.trend import trend_table

log = logging.getLogger(__name__)


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    return requested


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
    seq, ts, lab, lab_ts = (torch.as_tensor(a) for a in windows)
    lengths = (seq > 0).sum(1)
    gen = torch.Generator().manual_seed(tp.seed)
    res = FitResult(model)
    best_state, bad, start = None, 0, 1
    distributed, main = ddp.active(), ddp.is_main()
    if distributed and not main:  # dropout: other masks than rank 0's (the batch generator `gen` stays shared)
        torch.manual_seed(tp.seed + 1000 * ddp.rank())
    ck = None
    if main and checkpoint is not None and checkpoint.exists():
        ck = torch.load(checkpoint, map_location="cpu" if distributed else device, weights_only=False)
        if not (ck["cfg"] == cfg.to_dict() and ck["seed"] == tp.seed):
            ck = None
    if distributed:  # rank 0 reads the checkpoint; every rank resumes from it
        ck = ddp.broadcast_object(ck)
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"].cpu())  # map_location may have moved it; generator states live on the CPU
        rng = ck.get("rng_ranks", {}).get(ddp.world_size(), [None] * (ddp.rank() + 1))[ddp.rank()] if distributed else ck
        if rng and "rng" in rng:  # dropout draws from the global RNG: without it a resumed run diverges
            torch.set_rng_state(rng["rng"].cpu())
        if rng and rng.get("cuda_rng") is not None and device.startswith("cuda"):
            torch.cuda.set_rng_state(rng["cuda_rng"].cpu(), device)
        best_state, bad, start = ck["best_state"], ck["bad"], ck["epoch"] + 1
        res.history, res.best_epoch, res.best_valid = ck["history"], ck["best_epoch"], ck["best_valid"]
        log.info("resuming from %s after epoch %d", checkpoint, ck["epoch"])
    step_model = ddp.wrap(model, device) if distributed else None  # gradients averaged across the processes
    use_amp = device.startswith("cuda")
    t_start, done = time.monotonic(), 0  # for the time left in each epoch's log line
    for epoch in range(start, tp.epochs + 1):
        if bad >= tp.patience:
            break
        model.train()
        total, steps = 0.0, 0
        batches = length_bucketed_batches(lengths, tp.batch_size, gen) if tp.length_buckets else shuffled_batches(len(lengths), tp.batch_size, gen)
        bar = tqdm(batches, desc=f"epoch {epoch}", mininterval=2, leave=False, disable=None)
        for b in bar:
            if distributed:  # this rank's share of the global batch, its loss weighted to the global mean
                loss = _shard_loss(step_model, b, seq, ts, lab, lab_ts, device, use_amp)
            else:
                bs, bt, bl, blt = (a.to(device) for a in trim_padding(seq[b], ts[b], lab[b], lab_ts[b]))
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                    loss = model.loss(bs, bt, bl, blt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tp.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tp.grad_clip)
            opt.step()
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{total / steps:.3f}")
        if distributed:  # the global batches' mean loss: the ranks' weighted losses sum to it (times N)
            total = ddp.all_reduce_sum(total, device) / ddp.world_size()
            rngs = ddp.all_gather_object(_rng_state(device)) if checkpoint is not None else None
        if not main:  # rank 0 evaluates, checkpoints and decides when to stop
            if ddp.broadcast_flag(False, device):
                break
            continue
        m = evaluate_model(model, valid, k, device)
        res.history.append({"epoch": epoch, "loss": total / max(steps, 1), **{f"valid_{a}": b for a, b in m.items()}})
        if m[f"ndcg@{k}"] > res.best_valid:
            res.best_valid, res.best_epoch, bad = m[f"ndcg@{k}"], epoch, 0
            best_state = {n: v.detach().clone() for n, v in model.state_dict().items()}
        else:
            bad += 1
        done += 1
        per_epoch = (time.monotonic() - t_start) / done
        # early stopping ends training after `patience` epochs without a gain: the next stop is at most that far
        left = min(tp.epochs - epoch, tp.patience - bad) * per_epoch
        # the fields also travel as the record's attributes: flows.progress turns them into a Prefect progress artifact
        log.info("epoch %d/%d loss %.4f valid ndcg@%d %.4f hr@%d %.4f (%.1f s/epoch; at most %s left)", epoch, tp.epochs,
                 total / max(steps, 1), k, m[f"ndcg@{k}"], k, m[f"hr@{k}"], per_epoch, _duration(left),
                 extra={"train_model": name, "epoch": epoch, "epochs": tp.epochs, "loss": total / max(steps, 1),
                        "valid_ndcg": m[f"ndcg@{k}"], "time_left": _duration(left)})
        if checkpoint is not None:
            state = {"cfg": cfg.to_dict(), "seed": tp.seed, "epoch": epoch, "model": model.state_dict(),
                     "opt": opt.state_dict(), "gen": gen.get_state(), "rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state(device) if device.startswith("cuda") else None,
                     "best_state": best_state, "bad": bad,
                     "history": res.history, "best_epoch": res.best_epoch, "best_valid": res.best_valid}
            if distributed:  # every rank's dropout RNG, by world size (a resume with another size reseeds)
                state["rng_ranks"] = {ddp.world_size(): rngs}
            _save_checkpoint(checkpoint, state)
        stop = bad >= tp.patience
        if distributed:
            ddp.broadcast_flag(stop, device)
        if stop:
            log.info("early stop at epoch %d (best %d)", epoch, res.best_epoch)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if checkpoint is not None and main:
        checkpoint.unlink(missing_ok=True)
    return res


def _rng_state(device: str) -> dict:
    return {"rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state(device) if device.startswith("cuda") else None}


def _shard_loss(step_model: torch.nn.Module, b: torch.Tensor, seq: torch.Tensor, ts: torch.Tensor, lab: torch.Tensor,
                lab_ts: torch.Tensor, device: str, use_amp: bool) -> torch.Tensor:
    """This rank's loss on its shard of the global batch ``b``, weighted (``ddp.loss_weight``) so that
    DDP's gradient average equals the gradient of the global batch's mean loss, as one process has it.
    A rank whose shard has no labelled position (a last batch smaller than the world) runs a window
    with weight 0: every rank must take part in every gradient all-reduce."""
    n_global = int((lab[b] > 0).sum())
    mine = ddp.shard(b)
    n_local = int((lab[mine] > 0).sum()) if len(mine) else 0
    weight = ddp.loss_weight(n_local, n_global)
    if n_local == 0:
        mine, weight = b[(lab[b] > 0).any(1)][:1], 0.0
    bs, bt, bl, blt = (a.to(device) for a in trim_padding(seq[mine], ts[mine], lab[mine], lab_ts[mine]))
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
        return step_model(bs, bt, bl, blt) * weight


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


NEURAL = ("interest", "sasrec")


def optimizer_params(name: str, tp: TrainParams) -> TrainParams:
    """The training settings of one model: ``sasrec`` with ``sasrec_reference`` trains as RecTools
    does (Adam with betas (0.9, 0.98), no weight decay, no clipping), so that a gap to RecTools'
    published number points at a bug rather than at a different recipe."""
    if name == "sasrec" and tp.sasrec_reference:
        return replace(tp, weight_decay=0.0, adam_beta2=0.98, grad_clip=0.0)
    return tp


# scores the hybrid log-normalises (EASE's negative scores count as 0: "no evidence for this item")
HYBRID_COMPONENTS = ("popularity", "recent_popularity", "item_knn", "ease")
BASELINES = HYBRID_COMPONENTS  # seed-free models: fitted once, no epochs
SWITCHED = {"interest_switch": "interest", "hybrid_switch": "hybrid"}  # model behind the switch gate -> its base


def with_components(names: tuple[str, ...], tp: TrainParams) -> tuple[str, ...]:
    """``names`` plus what they are built from: a switch-gated model's base, the hybrid's interest
    model and ``tp.hybrid_with``."""
    out = list(dict.fromkeys([*names, *(SWITCHED[n] for n in names if n in SWITCHED)]))
    if "hybrid" not in out:
        return tuple(out)
    return tuple(dict.fromkeys([*out, "interest", *tp.hybrid_with]))


def gate_config(tp: TrainParams) -> GateConfig:
    """The switch gate's settings from ``train.switch`` (its prior is fitted, see ``fit_gate``)."""
    sp = tp.switch
    return GateConfig(windows=sp.windows, horizon=sp.horizon, discount=sp.discount, text_weight=sp.text_weight,
                      text_temp=sp.text_temp, half_life=sp.half_life, clip=sp.clip, category_window=sp.category_window,
                      category_half_life=sp.category_half_life, frozen_long=sp.frozen_long)


def shift_validation(seqs: dict, text_emb: torch.Tensor, tp: TrainParams) -> EvalSet:
    """The validation shift set (``models.shift.spliced_switch_set``) with ``train.switch``'s sizes."""
    return spliced_switch_set(seqs, text_emb, tp.max_len, tp.switch.shift_fed, tp.switch.shift_users, seed=tp.seed)


def fit_models(names: tuple[str, ...], train: pd.DataFrame, index: ItemIndex, text_emb: torch.Tensor,
               windows: Windows | None, valid: EvalSet | None,
               tp: TrainParams, device: str, k: int = 10, checkpoint_dir: Path | None = None,
               prefitted: dict[str, torch.nn.Module] | None = None, shift_valid: EvalSet | None = None,
               item_categories: torch.Tensor | None = None) -> tuple[dict[str, torch.nn.Module], dict[str, FitResult]]:
    """Every requested model on the same training data; neural ones early-stop on ``valid``.

    ``hybrid`` (and a switch-gated model) also fits (and returns) its components unless they are
    in ``prefitted`` (models already fitted on this data: the benchmark reuses them instead of
    training twice); the models named in ``names`` are always fitted. Switch gates are fitted on
    ``valid`` and ``shift_valid`` (``shift_validation``); with ``item_categories`` (``item_category_matrix``)
    they have the category-mix expert too.
    """
    unknown = set(names) - {*NEURAL, *BASELINES, "hybrid", *SWITCHED}
    if unknown:
        raise ValueError(f"unknown model(s) in train.models: {sorted(unknown)}")
    if "hybrid" in names and (not tp.hybrid_with or set(tp.hybrid_with) - set(HYBRID_COMPONENTS)):
        raise ValueError(f"train.hybrid_with {list(tp.hybrid_with)}: expected one or more of {list(HYBRID_COMPONENTS)}")
    prefitted = prefitted or {}
    todo = [n for n in with_components(names, tp) if n in names or n not in prefitted]
    if not ddp.is_main():  # the other processes of a distributed run only help train the neural models
        todo = [n for n in todo if n in NEURAL]
    models: dict[str, torch.nn.Module] = {}
    fits: dict[str, FitResult] = {}
    if "popularity" in todo:
        models["popularity"] = baselines.popularity(train, index)
    if "recent_popularity" in todo:
        models["recent_popularity"] = baselines.recent_popularity(train, index, tp.recent_days)
    configs = {n: model_config(n, tp, len(index), text_emb.shape[1]) for n in NEURAL if n in todo}
    sim = None
    if "item_knn" in todo or any(c.use_transition for c in configs.values()):
        sim = baselines.cooccurrence_similarity(train, index, top_k=tp.knn_top_k)  # one matrix for item-kNN and the transition prior
    if "item_knn" in todo:
        models["item_knn"] = baselines.ItemKNN(sim)
    if "ease" in todo:
        t0 = time.time()
        models["ease"], search = fit_ease(train, index, tp.ease_lambdas, valid, k)
        fits["ease"] = FitResult(models["ease"], search, 0, max((r[f"valid_ndcg@{k}"] for r in search), default=0.0),
                                 round(time.time() - t0, 1))
    for name, cfg in configs.items():
        assert windows is not None and valid is not None
        log.info("training %s on %s (%d windows, %d items)", name, device, len(windows[0]), len(index))
        t0 = time.time()
        ck = checkpoint_dir / f"{name}.pt" if checkpoint_dir else None
        if name == "interest" and tp.switch.augment > 0:
            windows_n = splice_windows(windows, tp.switch.augment, tp.seed)
            log.info("switch augmentation: %d spliced windows added to %d", len(windows_n[0]) - len(windows[0]), len(windows[0]))
        else:
            windows_n = windows
        fits[name] = fit_interest(cfg, text_emb, windows_n, valid, optimizer_params(name, tp), device, k, ck,
                                  sim if cfg.use_transition else None,
                                  trend_table(train, index, tp.trend_days) if cfg.use_trend else None, name=name)
        fits[name].seconds = round(time.time() - t0, 1)
        models[name] = fits[name].model.cpu()
    if not ddp.is_main():
        return models, fits
    if "hybrid" in todo:
        assert valid is not None
        have = {**prefitted, **models}
        t0 = time.time()
        models["hybrid"], search = fit_hybrid(have["interest"], {c: have[c] for c in tp.hybrid_with}, valid,
                                              tp.hybrid_grid, k, "cpu")
        fits["hybrid"] = FitResult(models["hybrid"], [search], 0, search["valid_ndcg"], round(time.time() - t0, 1))
    for name in (n for n in todo if n in SWITCHED):
        if valid is None or shift_valid is None:
            raise ValueError(f"{name}: the switch gate is fitted on the validation split and the validation shift set (shift_valid)")
        have = {**prefitted, **models}
        t0 = time.time()
        models[name], report = fit_gate(have[SWITCHED[name]], valid, shift_valid, gate_config(tp), SWITCHED[name],
                                        tp.switch.tolerance, k=k, item_categories=item_categories,
                                        popularity=baselines.popularity(train, index).scores)
        fits[name] = FitResult(models[name], [report], 0, report["valid_ndcg"], round(time.time() - t0, 1))
    return models, fits


def fit_ease(train: pd.DataFrame, index: ItemIndex, lambdas: tuple[float, ...], valid: EvalSet | None,
             k: int = 10) -> tuple[baselines.EASE, list[dict]]:
    """EASE with the regularisation of ``lambdas`` that scores best on validation NDCG@k (one
    N x N inverse per value, from one Gram matrix); a single value needs no validation split."""
    if not lambdas:
        raise ValueError("train.ease_lambdas is empty: give at least one regularisation value")
    if valid is None and len(lambdas) > 1:
        raise ValueError(f"EASE picks its regularisation among train.ease_lambdas {list(lambdas)} on the validation "
                         "split, and none was given; pass one, or set a single value")
    gram = baselines.interaction_gram(train, index)
    best, search = None, []
    for lam in lambdas:
        model = baselines.ease(train, index, lam, gram)
        if valid is None:
            return model, search
        m = evaluate_model(model, valid, k)
        search.append({"lambda": lam, **{f"valid_{a}": b for a, b in m.items()}})
        log.info("ease lambda %g: valid ndcg@%d %.4f hr@%d %.4f", lam, k, m[f"ndcg@{k}"], k, m[f"hr@{k}"])
        if best is None or m[f"ndcg@{k}"] > best[0]:
            best = (m[f"ndcg@{k}"], model)
    assert best is not None
    if best[1].lam == max(lambdas) and len(lambdas) > 1:
        log.warning("ease: the best regularisation %g is the top of train.ease_lambdas; a larger value may do better", best[1].lam)
    return best[1], search


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
