"""Fitting the set of models a run asks for, on one training split: the seed-free baselines, the
neural models (models/interest_fit.py), and what is built from them — the hybrid and the switch
gates. The train stage and the benchmarks both fit through ``fit_models``.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from core.params import TrainParams
from models import baselines
from models.content import content
from models import distributed as ddp
from models.data import EvalSet, ItemIndex, Windows, splice_windows
from models.evaluate import evaluate_model
from models.gate_fit import fit_gate
from models.hybrid import fit_hybrid
from models.interest import InterestConfig
from models.interest_fit import FitResult, fit_interest
from models.settings import model_config
from models.shift import spliced_switch_set
from models.switch import GateConfig
from models.trend import trend_table
from models.untrained import can_warm, untrained_items, warm_components, warm_interest

log = logging.getLogger(__name__)

NEURAL = ("interest", "sasrec")


def optimizer_params(name: str, tp: TrainParams) -> TrainParams:
    """The training settings of one model: ``sasrec`` with ``sasrec_reference`` trains as RecTools
    does (Adam with betas (0.9, 0.98), no weight decay, no clipping), so that a gap to RecTools'
    published number points at a bug rather than at a different recipe."""
    if name == "sasrec" and tp.sasrec_reference:
        return replace(tp, weight_decay=0.0, adam_beta2=0.98, grad_clip=0.0)
    return tp


# scores the hybrid log-normalises (EASE's negative scores count as 0: "no evidence for this item")
HYBRID_COMPONENTS = ("popularity", "recent_popularity", "item_knn", "markov", "content", "ease")
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
    prefitted = prefitted or {}
    todo = _todo(names, tp, prefitted)
    configs = {n: model_config(n, tp, len(index), text_emb.shape[1]) for n in NEURAL if n in todo}
    sim = None
    if "item_knn" in todo or any(c.use_transition for c in configs.values()):
        sim = baselines.cooccurrence_similarity(train, index, top_k=tp.knn_top_k)  # one matrix for item-kNN and the transition prior
    models, fits = _fit_baselines(todo, train, index, sim, valid, tp, k, text_emb)
    untrained = untrained_items(train, index) if tp.warm_untrained_items else []
    for name, cfg in configs.items():
        fits[name] = _fit_neural(name, cfg, train, index, text_emb, windows, valid, tp, device, k, checkpoint_dir, sim)
        models[name] = fits[name].model.cpu()
        warm_interest(models[name], untrained)
    if not ddp.is_main():
        return models, fits
    if "hybrid" in todo:
        fits["hybrid"] = _fit_hybrid_model({**prefitted, **models}, valid, tp, k, untrained)
        models["hybrid"] = fits["hybrid"].model
    for name in (n for n in todo if n in SWITCHED):
        fits[name] = _fit_switch(name, {**prefitted, **models}, train, index, valid, shift_valid, tp, k, item_categories)
        models[name] = fits[name].model
    return models, fits


def _todo(names: tuple[str, ...], tp: TrainParams, prefitted: dict[str, torch.nn.Module]) -> list[str]:
    """The models to fit, in order: ``names`` and the components they need that are not ``prefitted``
    (on the other processes of a distributed run, only the neural ones: they help train those)."""
    unknown = set(names) - {*NEURAL, *BASELINES, "hybrid", *SWITCHED}
    if unknown:
        raise ValueError(f"unknown model(s) in train.models: {sorted(unknown)}")
    if "hybrid" in names and (not tp.hybrid_with or set(tp.hybrid_with) - set(HYBRID_COMPONENTS)):
        raise ValueError(f"train.hybrid_with {list(tp.hybrid_with)}: expected one or more of {list(HYBRID_COMPONENTS)}")
    todo = [n for n in with_components(names, tp) if n in names or n not in prefitted]
    if not ddp.is_main():
        todo = [n for n in todo if n in NEURAL]
    return todo


def _fit_baselines(todo: list[str], train: pd.DataFrame, index: ItemIndex, sim: torch.Tensor | None,
                   valid: EvalSet | None, tp: TrainParams, k: int,
                   text_emb: torch.Tensor) -> tuple[dict[str, torch.nn.Module], dict[str, FitResult]]:
    """The seed-free models of ``todo`` (item-kNN from the co-occurrence matrix ``sim``, the content
    component from the encoder's ``text_emb``); only EASE, which picks its regularisation on
    ``valid``, has a fit report."""
    models: dict[str, torch.nn.Module] = {}
    fits: dict[str, FitResult] = {}
    if "popularity" in todo:
        models["popularity"] = baselines.popularity(train, index)
    if "recent_popularity" in todo:
        models["recent_popularity"] = baselines.recent_popularity(train, index, tp.recent_days)
    if "item_knn" in todo:
        models["item_knn"] = baselines.ItemKNN(sim)
    if "markov" in todo:
        models["markov"] = baselines.markov(train, index, tp.knn_top_k)
    if "content" in todo:
        models["content"] = content(text_emb, tp.content_recent, tp.content_decay, tp.content_temp)
    if "ease" in todo:
        t0 = time.time()
        models["ease"], search = fit_ease(train, index, tp.ease_lambdas, valid, k)
        fits["ease"] = FitResult(models["ease"], search, 0, max((r[f"valid_ndcg@{k}"] for r in search), default=0.0),
                                 round(time.time() - t0, 1))
    return models, fits


def _fit_neural(name: str, cfg: InterestConfig, train: pd.DataFrame, index: ItemIndex, text_emb: torch.Tensor,
                windows: Windows | None, valid: EvalSet | None, tp: TrainParams, device: str, k: int,
                checkpoint_dir: Path | None, sim: torch.Tensor | None) -> FitResult:
    """One neural model (its checkpoint in ``checkpoint_dir``); the interest model also trains on
    spliced switch windows when ``train.switch.augment`` > 0."""
    assert windows is not None and valid is not None
    log.info("training %s on %s (%d windows, %d items)", name, device, len(windows[0]), len(index))
    t0 = time.time()
    ck = checkpoint_dir / f"{name}.pt" if checkpoint_dir else None
    if name == "interest" and tp.switch.augment > 0:
        windows_n = splice_windows(windows, tp.switch.augment, tp.seed)
        log.info("switch augmentation: %d spliced windows added to %d", len(windows_n[0]) - len(windows[0]), len(windows[0]))
    else:
        windows_n = windows
    fit = fit_interest(cfg, text_emb, windows_n, valid, optimizer_params(name, tp), device, k, ck,
                       sim if cfg.use_transition else None,
                       trend_table(train, index, tp.trend_days) if cfg.use_trend else None, name=name)
    fit.seconds = round(time.time() - t0, 1)
    return fit


def _fit_hybrid_model(have: dict[str, torch.nn.Module], valid: EvalSet | None, tp: TrainParams, k: int,
                      untrained: list[int]) -> FitResult:
    """The hybrid over ``have``'s interest model and ``tp.hybrid_with``; with ``untrained`` items
    (``models.untrained``) on its own warmed copies of the components, so that a component also
    served alone stays the plain baseline."""
    assert valid is not None
    t0 = time.time()
    base, components = have["interest"], {c: have[c] for c in tp.hybrid_with}
    warmed = untrained if untrained and can_warm(base) else []
    if warmed:
        components = {c: copy.deepcopy(m) for c, m in components.items()}
        warm_components(base, components, warmed)
        log.info("hybrid: %d catalogue item(s) no training event shows borrow their text neighbours' rows", len(warmed))
    hybrid, search = fit_hybrid(base, components, valid, tp.hybrid_grid, k, "cpu", max_cells=tp.hybrid_grid_max_cells)
    hybrid.warmed = warmed
    return FitResult(hybrid, [search], 0, search["valid_ndcg"], round(time.time() - t0, 1))


def _fit_switch(name: str, have: dict[str, torch.nn.Module], train: pd.DataFrame, index: ItemIndex,
                valid: EvalSet | None, shift_valid: EvalSet | None, tp: TrainParams, k: int,
                item_categories: torch.Tensor | None) -> FitResult:
    """The switch gate over ``have``'s base model ``SWITCHED[name]``; its report is the history."""
    if valid is None or shift_valid is None:
        raise ValueError(f"{name}: the switch gate is fitted on the validation split and the validation shift set (shift_valid)")
    t0 = time.time()
    gate, report = fit_gate(have[SWITCHED[name]], valid, shift_valid, gate_config(tp), SWITCHED[name],
                            tp.switch.tolerance, k=k, item_categories=item_categories,
                            popularity=baselines.popularity(train, index).scores)
    return FitResult(gate, [report], 0, report["valid_ndcg"], round(time.time() - t0, 1))


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

