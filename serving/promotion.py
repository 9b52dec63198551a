"""Which model may be served: champion/challenger for retrains, and the rule that only the
default run moves the served name (``should_promote``; other runs package as candidates).

Champion/challenger: package a retrained model only if it beats the one being served.

Both are scored on the *new* validation split (same users, same targets), so a shift in the
data cannot make an old model look better or worse than it is. When the catalogues differ
(items were added), the champion cannot score the new items and its stored validation metric
is used instead, which the decision records.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pandas as pd

from core.params import Params, load_params
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
        valid = leave_one_out(user_sequences(interactions, index), "valid", artifacts.history_length(path, meta["selected"], meta))
        old_score = evaluate_model(artifacts.load_models(path)[meta["selected"]], valid, params.evaluate.k)[key]
        basis = "both scored on the new validation split"
    else:
        old_score = float(meta.get(f"valid_{key}", 0.0))
        basis = "catalogues differ: the champion's stored validation metric"
    promote = new_score > old_score
    log.info("challenger %s=%.4f vs champion %s %.4f (%s): promote=%s", key, new_score, tag, old_score, basis, promote)
    return Decision(promote, new_score, float(old_score), tag, basis)


# Set by `dvc exp run` in the environment of every stage it runs (dvc/env.py).
DVC_EXPERIMENT_ENV = "DVC_EXP_NAME"
PROMOTE_MODES = ("auto", "always", "never")


def _changed_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    out: list[str] = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _changed_keys(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out


def default_run(params: Params, environ: Mapping[str, str] = os.environ) -> tuple[bool, str]:
    """Is this the default pipeline: the repository's params.yaml as written, outside a DVC experiment?

    Only such a run may move the served ``<model_name>:latest``. Params are compared with
    params.yaml rather than trusting the caller to pass its overrides along, so a stage CLI with
    ``--set``, a Prefect UI run with overrides and a ``--params other.yaml`` run are all caught.
    ``dvc exp run`` writes its ``--set-param`` values into params.yaml itself, hence the
    environment check.
    """
    if environ.get(DVC_EXPERIMENT_ENV):
        return False, f"a DVC experiment ({environ[DVC_EXPERIMENT_ENV]})"
    default_file = Path(params.root) / "params.yaml"
    if not default_file.exists():
        return False, f"no {default_file} to compare with"
    changed = _changed_keys(load_params(default_file).to_dict(), params.to_dict())
    if changed:
        return False, f"params differ from params.yaml: {', '.join(changed)}"
    return True, "the default run: params.yaml as written"


def should_promote(params: Params, environ: Mapping[str, str] = os.environ) -> tuple[bool, str]:
    """Whether the package stage may put its model under ``package.model_name`` (the served name),
    and why; ``package.promote`` forces it either way."""
    mode = params.package.promote
    if mode not in PROMOTE_MODES:
        raise ValueError(f"package.promote must be one of {PROMOTE_MODES}, got '{mode}'")
    if mode != "auto":
        return mode == "always", f"package.promote={mode}"
    return default_run(params, environ)
