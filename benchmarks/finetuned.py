"""The ranking benchmark's fine-tuned-encoder row: the interest model on item vectors from the text
encoder after contrastive fine-tuning (models/finetune.py) on the protocol's training events.

It is a separate row rather than an ablation switch because the item vectors, not a train
setting, change: the encoder is tuned once (on leave-one-out's training events, every event but
each user's last two, so no validation or test target is ever a pair), the items re-encoded, and
the interest model fitted on them for every seed, exactly as the frozen-encoder ``interest`` row.
Only leave-one-out gets the row: the temporal and cold protocols train on other events and would
each need their own tuned encoder.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import pandas as pd

from benchmarks.fit_log import FitLog, fit_key
from core.params import Params
from models.data import train_interactions

log = logging.getLogger(__name__)

ROW = "interest-finetuned"


def finetuned_row(params: Params, interactions: pd.DataFrame, items: pd.DataFrame, seeds: list[int], device: str,
                  out: Path, dataset: str, resume: bool) -> tuple[dict, dict]:
    """(the row's aggregated leave-one-out metrics, the fine-tuning's facts: steps, pairs per step, seconds).

    ``params.encoder.finetune_steps`` must be > 0: a fine-tuned row with 0 steps would silently
    repeat the frozen row.
    """
    from benchmarks.ranking import run_protocols  # the benchmark imports this module
    from models.train import encode_items

    ep = params.encoder
    if ep.finetune_steps <= 0:
        raise ValueError("the fine-tuned row needs encoder.finetune_steps > 0 (e.g. --set encoder.finetune_steps=200)")
    t0 = time.time()
    tuned = encode_items(params, items, device, train=train_interactions(interactions))
    seconds = time.time() - t0
    log.info("encoder fine-tuned (%d steps of %d pairs) and %d items re-encoded in %.0f s", ep.finetune_steps,
             ep.finetune_batch_size, len(items), seconds)
    fit_log = FitLog(out / f"benchmark-{dataset}.finetuned.fits.jsonl", fit_key(dataset, params), resume)
    res = run_protocols(params, {"loo": {}}, interactions, items, tuned, ("interest",), seeds, device, fit_log=fit_log)
    facts = {"steps": ep.finetune_steps, "batch_size": ep.finetune_batch_size, "lr": ep.finetune_lr,
             "max_pairs": ep.finetune_max_pairs, "encoder": ep.model_name, "finetune_and_encode_seconds": seconds,
             "encoder_params": dataclasses.asdict(ep)}
    return res["loo"]["models"]["interest"], facts
