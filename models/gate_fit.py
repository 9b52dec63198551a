"""Fitting the switch gate's prior on validation: the one setting of the gate (models/switch.py)
that is learned, chosen so that following a switch never costs the users who did not switch more
than a tolerance. Apart from the gate itself because it is the training side: serving only needs
``SwitchGate`` and its fitted ``prior``."""
from __future__ import annotations

import logging

import numpy as np
import torch

from models.data import eval_batches
from models.interface import ServableModel
from models.metrics import metrics_from_ranks, target_ranks
from models.switch import GateConfig, SwitchGate

log = logging.getLogger(__name__)


# The evidence is at most clip * sum(discount ** t for t < horizon) (5 * 4.16 = 20.8 at the defaults), so
# only a prior below that closes the gate for every user (-24: the base model alone); without the low
# end, data where any opening costs more than the tolerance fell back to the least-bad open gate.
PRIOR_GRID = (-24.0, -16.0, -12.0, -8.0, -6.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0)


@torch.no_grad()
def _gated_ranks(gate: SwitchGate, data, priors: tuple[float, ...], batch_size: int) -> list[np.ndarray]:
    """Target ranks of ``data`` under each prior: the experts score once, the priors only re-mix."""
    ranks: list[list[np.ndarray]] = [[] for _ in priors]
    device = str(next(gate.base.buffers()).device)
    for _, x, exclude in eval_batches(data, batch_size, device):
        logps, evidence = gate.experts(x["seq"], x["ts"], x["now"])
        for j, p in enumerate(priors):
            r, _ = target_ranks(gate.mix(logps, gate.expert_weights(evidence, p)), x["targets"], exclude)
            ranks[j].append(r.cpu().numpy())
    return [np.concatenate(r) if r else np.zeros(0) for r in ranks]


@torch.no_grad()
def fit_gate(base: ServableModel, valid, shift_valid, cfg: GateConfig, base_name: str, tolerance: float = 0.01,
             priors: tuple[float, ...] = PRIOR_GRID, k: int = 10, batch_size: int = 256, item_categories: torch.Tensor | None = None,
             popularity: torch.Tensor | None = None) -> tuple[SwitchGate, dict]:
    """The gate's ``prior`` from ``priors``: the best validation shift score (HR@k on the spliced
    switches, ``models.shift.spliced_switch_set``) among the priors whose validation NDCG@k stays
    within ``tolerance`` (relative) of the base model's. Both jobs count: following a switch may
    not cost the users who did not switch more than that."""
    gate = SwitchGate(base, cfg, base_name, item_categories, popularity).eval()
    stationary = [metrics_from_ranks(r, k)[f"ndcg@{k}"] for r in _gated_ranks(gate, valid, priors, batch_size)]
    from models.evaluate import evaluate_model

    base_ndcg = evaluate_model(base, valid, k)[f"ndcg@{k}"]
    shifted = [metrics_from_ranks(r, k)[f"hr@{k}"] if len(r) else 0.0 for r in _gated_ranks(gate, shift_valid, priors, batch_size)]
    allowed = [j for j, v in enumerate(stationary) if v >= (1 - tolerance) * base_ndcg] or [int(np.argmax(stationary))]
    best = max(allowed, key=lambda j: (shifted[j], stationary[j]))
    gate.cfg.prior = float(priors[best])
    log.info("switch gate on %s: prior %.1f, validation ndcg@%d %.4f (base %.4f), validation shift hr@%d %.4f",
             base_name, gate.cfg.prior, k, stationary[best], base_ndcg, k, shifted[best])
    report = {"prior": gate.cfg.prior, "valid_ndcg": stationary[best], "base_valid_ndcg": base_ndcg, "valid_shift_hr": shifted[best],
              "grid": [{"prior": p, "valid_ndcg": a, "valid_shift_hr": b} for p, a, b in zip(priors, stationary, shifted)]}
    return gate, report
