"""Champion/challenger: package a retrained model only if it beats the one being served.

Both are scored on the *new* validation split (same users, same targets), so a shift in the
data cannot make an old model look better or worse than it is. When the catalogues differ
(items were added), the champion cannot score the new items and its stored validation metric
is used instead, which the decision records.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.params import Params
from models import artifacts
from models.data import ItemIndex, leave_one_out, user_sequences
from models.evaluate import evaluate_model

log = logging.getLogger(__name__)


@dataclass
class Decision:
    promote: bool
    challenger: float
    champion: float | None
    champion_tag: str | None
    basis: str

    def summary(self) -> dict:
        return self.__dict__


def champion(model_name: str) -> tuple[str, Path, dict] | None:
    """(tag, path, metadata) of the latest packaged model, or None when the store has none."""
    import bentoml

    try:
        m = bentoml.models.get(f"{model_name}:latest")
    except bentoml.exceptions.NotFound:
        return None
    return str(m.tag), Path(m.path), dict(m.info.metadata)


def decide(params: Params) -> Decision:
    key = params.evaluate.select_metric
    report = json.loads(params.path(params.evaluate.out).read_text())
    new_score = float(report["models"][report["selected"]]["valid"][key])
    current = champion(params.package.model_name)
    if current is None:
        return Decision(True, new_score, None, None, "no model packaged yet")
    tag, path, meta = current
    new_ids = artifacts.load_item_ids(params.path(params.train.out_dir))
    if artifacts.load_item_ids(path) == new_ids:
        interactions = pd.read_parquet(params.path(params.data.raw_dir) / "interactions.parquet")
        index = ItemIndex(tuple(new_ids))
        valid = leave_one_out(user_sequences(interactions, index), "valid", int(meta.get("max_len", params.train.max_len)))
        old_score = evaluate_model(artifacts.load_models(path)[meta["selected"]], valid, params.evaluate.k)[key]
        basis = "both scored on the new validation split"
    else:
        old_score = float(meta.get(f"valid_{key}", 0.0))
        basis = "catalogues differ: the champion's stored validation metric"
    promote = new_score > old_score
    log.info("challenger %s=%.4f vs champion %s %.4f (%s): promote=%s", key, new_score, tag, old_score, basis, promote)
    return Decision(promote, new_score, float(old_score), tag, basis)
