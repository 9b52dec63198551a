"""Stage `evaluate`: leave-one-out full-ranking metrics for every trained model; pick the best.

Validation (second-last event) selects the model; test (last event) is what we report, in whole
and per slice (cold item, interest shift, short history: ``models/slices.py``). The ranking
benchmark measures its slices with the same functions.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from core.cli import stage_main
from core.params import Params
from models import artifacts, slices
from models.hybrid import Hybrid
from models.interface import ScoringModel, require
from models.shift import spliced_switch_set
from models.switch import SwitchGate
from models.data import EvalSet, ItemIndex, eval_batches, leave_one_out, train_interactions, user_sequences
from models.metrics import metrics_from_ranks, target_ranks

log = logging.getLogger(__name__)


def n_items_of(model: ScoringModel) -> int:
    """Catalogue size (row 0, padding, excluded), the denominator of coverage@k: every model states
    it (``models.interface.ScoringModel.n_items``); one that does not is refused, not guessed at."""
    require(model, ScoringModel, "the evaluator")
    return model.n_items


@torch.no_grad()
def rank_targets(model: ScoringModel, data: EvalSet, k: int = 10, device: str | None = None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-user 1-based target ranks (B,) and top-k item indices (B, k), history excluded.
    ``device``: where the inputs go; by default the model's own (a fitted model may have been
    moved back to the CPU, as ``fit_models`` returns them). Batches: ``eval_batches``.
    """
    if isinstance(model, nn.Module):  # every model here is one: dropout off, inputs where its tensors are
        model.eval()
        device = device or str(next(model.buffers()).device)
    device = device or "cpu"
    n = len(data.targets)
    if not n:
        return np.zeros(0), np.zeros((0, k), dtype=np.int64)
    ranks, top = np.zeros(n, dtype=np.int64), np.zeros((n, k), dtype=np.int64)
    for rows, x, exclude in eval_batches(data, batch_size, device):
        r, masked = target_ranks(model.score_all(x["seq"], x["ts"], x["now"]), x["targets"], exclude)
        ranks[rows] = r.cpu().numpy()
        top[rows] = masked.topk(k, dim=1).indices.cpu().numpy()
    return ranks, top


def metrics_for(ranks: np.ndarray, top: np.ndarray, k: int, n_items: int) -> dict[str, float]:
    """HR@k, NDCG@k, MRR, coverage@k (share of the catalogue in anyone's top-k) and the user count."""
    out = metrics_from_ranks(ranks, k) if len(ranks) else {}
    if len(top):
        out[f"coverage@{k}"] = float(len(np.unique(top)) / n_items)
    out["users"] = int(len(ranks))
    return out


def slice_metrics(ranks: np.ndarray, top: np.ndarray, masks: dict[str, np.ndarray], k: int, n_items: int) -> dict[str, dict]:
    """``metrics_for`` each slice (``masks``: slice name -> its rows, ``models.slices.slice_masks``);
    a slice without users is ``{"users": 0}``. Coverage keeps the whole catalogue as denominator."""
    return {name: metrics_for(ranks[m], top[m], k, n_items) if m.any() else {"users": 0} for name, m in masks.items()}


def evaluate_model(model: ScoringModel, data: EvalSet, k: int = 10, device: str | None = None, batch_size: int = 512) -> dict[str, float]:
    """Full-ranking metrics of one model on one split."""
    return evaluate_slices(model, data, {}, k, device, batch_size)[0]


def evaluate_slices(model: ScoringModel, data: EvalSet, masks: dict[str, np.ndarray], k: int = 10, device: str | None = None,
                    batch_size: int = 512) -> tuple[dict[str, float], dict[str, dict]]:
    """Full-ranking metrics of one model on one split, and of each slice of it (``slice_metrics``),
    from one ranking of the split."""
    n_items = n_items_of(model)  # first: a model without the interface is refused before any scoring
    ranks, top = rank_targets(model, data, k, device, batch_size)
    return metrics_for(ranks, top, k, n_items), slice_metrics(ranks, top, masks, k, n_items)


def model_metrics(model: ScoringModel, splits: dict[str, EvalSet], test_masks: dict[str, np.ndarray], k: int) -> dict[str, dict]:
    """One model's metrics on each split, and on each slice of the test split (``test_slices``)."""
    out: dict[str, dict] = {}
    for split, data in splits.items():
        out[split], per_slice = evaluate_slices(model, data, test_masks if split == "test" else {}, k)
        if split == "test":
            out["test_slices"] = per_slice
    return out


@dataclass
class EvaluateResult:
    metrics: dict
    selected: str

    def summary(self) -> dict:
        return {"selected": self.selected, "metrics": self.metrics}


def select_model(metrics: dict[str, dict], key: str, select_from: tuple[str, ...] = (), tolerance: float = 0.0,
                 shift_key: str | None = None) -> str:
    """The model to package, chosen for both jobs: the models whose validation ``key`` is within
    ``tolerance`` (relative) of the best are candidates, and the best validation shift score
    (``shift_key`` of ``valid_shift``, the spliced switches of ``models.shift``) among them wins.
    Without ``shift_key``, the best validation ``key``. Degenerate models (a hybrid whose weights
    are all 0 is the interest model) are never chosen; ``select_from`` (empty: all) restricts the
    choice for deployments that need a capability rather than the top score, e.g.
    ``[hybrid_switch, hybrid, interest]`` when new items arrive through ``/items``.
    """
    candidates = [m for m in metrics if (not select_from or m in select_from) and not metrics[m].get("degenerate")]
    if not candidates:
        raise ValueError(f"evaluate.select_from {list(select_from)} names none of the trained models {sorted(metrics)}")
    best = max(metrics[m]["valid"][key] for m in candidates)
    near = [m for m in candidates if metrics[m]["valid"][key] >= (1 - tolerance) * best]
    if shift_key is None:
        return max(near, key=lambda m: metrics[m]["valid"][key])
    return max(near, key=lambda m: (metrics[m].get("valid_shift", {}).get(shift_key, 0.0), metrics[m]["valid"][key]))


def degenerate(name: str, model: ScoringModel) -> str | None:
    """Why a model is not a distinct model (None: it is). A hybrid whose weights all came out 0 is
    its interest model; a switch gate over it is the gated interest model."""
    hybrid = model.base if isinstance(model, SwitchGate) else model
    if isinstance(hybrid, Hybrid) and not any(hybrid.weights.values()):
        twin = "interest_switch" if isinstance(model, SwitchGate) else "interest"
        return f"every hybrid weight is 0 on validation: {name} is {twin}"
    return None


def run(params: Params) -> EvaluateResult:
    model_dir = params.path(params.train.out_dir)
    ids = artifacts.load_item_ids(model_dir)
    index = ItemIndex(tuple(ids))
    interactions = pd.read_parquet(params.path(params.data.raw_dir) / "interactions.parquet")
    seqs = user_sequences(interactions, index)
    L, k = params.train.max_len, params.evaluate.k
    splits = {s: leave_one_out(seqs, s, L) for s in ("valid", "test")}
    sp = params.train.switch
    splits["valid_shift"] = spliced_switch_set(seqs, artifacts.load_text_embeddings(model_dir), L, sp.shift_fed, sp.shift_users,
                                               seed=params.train.seed)
    # warm items: those of every user's training events (all but the last two), as the models saw
    test_masks = slices.slice_masks(splits["test"], slices.trained_items(train_interactions(interactions), index),
                                    artifacts.load_item_categories(model_dir))
    log.info("test slices: %s of %d users", ", ".join(f"{n} {int(m.sum())}" for n, m in test_masks.items()), len(splits["test"].targets))
    metrics: dict[str, dict] = {}
    for name, model in artifacts.load_models(model_dir).items():
        metrics[name] = model_metrics(model, splits, test_masks, k)
        if (why := degenerate(name, model)) is not None:
            metrics[name]["degenerate"] = why
        log.info("%-18s valid %s | shift %s | test %s", name, _fmt(metrics[name]["valid"]), _fmt(metrics[name]["valid_shift"]),
                 _fmt(metrics[name]["test"]))
        log.info("%-18s test slices ndcg@%d: %s", name, k, _fmt_slices(metrics[name]["test_slices"], f"ndcg@{k}"))
    key, shift_key = params.evaluate.select_metric, f"hr@{k}"
    selected = select_model(metrics, key, params.evaluate.select_from, params.evaluate.stationary_tolerance, shift_key)
    report = {"selected": selected, "select_metric": key, "select_rule": (
                  f"best validation shift {shift_key} among the models within {params.evaluate.stationary_tolerance:.0%} of the best "
                  f"validation {key}; degenerate models excluded"), "k": k, "models": metrics,
              "data_version": artifacts.load_meta(model_dir).get("data_version")}
    out = params.path(params.evaluate.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    from core import tracking  # the compact metrics `dvc metrics show` / `dvc exp show` compare

    tracking.write_metrics(tracking.metrics_path(params.path(params.tracking.metrics_dir), "evaluate"), tracking.evaluate_metrics(report, k))
    log.info("selected '%s': %s", selected, report["select_rule"])
    return EvaluateResult(metrics=metrics, selected=selected)


def _fmt(m: dict) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float))


def _fmt_slices(per_slice: dict[str, dict], key: str) -> str:
    return ", ".join(f"{n} {m[key]:.4f} ({m['users']} users)" if m["users"] else f"{n} - (0 users)" for n, m in per_slice.items())


def main() -> None:
    stage_main(run, "evaluate: full-ranking leave-one-out metrics of every model")


if __name__ == "__main__":
    main()
