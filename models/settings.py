"""One source for the interest model's settings: ``InterestConfig`` is built from ``TrainParams`` here.

``TrainParams`` (params.yaml's ``train`` section) and ``InterestConfig`` (what a saved model
records) declare their shared settings under the same names. They used to be copied by hand, one
field at a time, with different defaults (``max_len`` 200 in params, 50 in the model), so a setting
added to both could silently keep the model's default. Here the shared names are read off the two
dataclasses, so a new setting reaches the model by being declared in both, and
tests/unit/test_settings.py fails when their defaults disagree or a model setting has no source.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from core.params import TrainParams
from models.interest import InterestConfig

# InterestConfig's settings that params.yaml does not set: the catalogue's shape, and the init
# (only the SASRec reference changes it)
MODEL_ONLY = ("n_items", "text_dim", "init")

# the ID-only SASRec baseline takes only its size from params; the rest is fixed by what SASRec is
SASREC_FROM_TRAIN = ("dim", "max_len", "n_layers", "n_heads", "dropout")
SASREC_FIXED: dict[str, Any] = dict(use_id_embedding=True, use_text=False, use_time_decay=False, use_long_term=False,
                                    use_position=True, use_transition=False)


def shared_fields() -> tuple[str, ...]:
    """The settings both dataclasses declare, in InterestConfig's order: what train params hand the model."""
    train = {f.name for f in fields(TrainParams)}
    return tuple(f.name for f in fields(InterestConfig) if f.name in train)


def model_config(name: str, tp: TrainParams, n_items: int, text_dim: int) -> InterestConfig:
    """The interest model from params; `sasrec` is the same code as an ID-only SASRec.

    SASRec = id embeddings + learned positions + causal self-attention, full softmax CE: no
    text, no time decay, no long-term branch. Sharing the code makes the comparison about
    those parts, not about two implementations.
    """
    if name == "sasrec":
        return sasrec_config(tp, n_items, text_dim)
    return InterestConfig(n_items=n_items, text_dim=text_dim, **{k: getattr(tp, k) for k in shared_fields()})


def sasrec_config(tp: TrainParams, n_items: int, text_dim: int) -> InterestConfig:
    """The SASRec baseline: its size from params, its parts fixed; with ``sasrec_reference`` also
    RecTools' layer and Xavier init, so a gap to RecTools' published number points at a bug.
    Settings it does not name keep InterestConfig's defaults (no trend, no transition prior)."""
    reference: dict[str, Any] = dict(block="sasrec", init="xavier") if tp.sasrec_reference else dict(block=tp.block)
    return InterestConfig(n_items=n_items, text_dim=text_dim, **{k: getattr(tp, k) for k in SASREC_FROM_TRAIN},
                          **SASREC_FIXED, **reference)
