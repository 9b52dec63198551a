"""benchmarks.finetuned: the fine-tuned-encoder row tunes on leave-one-out's training events only
and fits the interest model on the re-encoded items for every seed."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks.finetuned import finetuned_row
from features.adapters.synthetic import generate
from core.params import EncoderParams, Params, SyntheticParams, TrainParams
from core.schema import validate


@pytest.fixture()
def data():
    raw_int, raw_items, _ = generate(SyntheticParams(n_users=12, n_items=20, n_categories=3, events_per_user=10))
    return validate(raw_int, raw_items)


def _params(steps: int) -> Params:
    return Params(train=TrainParams(epochs=1, dim=8, max_len=8, n_layers=1, batch_size=32, patience=1, device="cpu"),
                  encoder=dataclasses.replace(EncoderParams(), finetune_steps=steps))


def test_the_row_needs_fine_tuning_steps(data, tmp_path):
    with pytest.raises(ValueError, match="finetune_steps"):
        finetuned_row(_params(0), data.interactions, data.items, [1], "cpu", tmp_path, "tiny", False)


def test_the_encoder_is_tuned_on_training_events_only_and_the_row_has_every_seed(data, tmp_path, monkeypatch):
    seen = {}

    def fake_encode(params, items, device, train=None, save_to=None):  # noqa: ANN001
        seen["train"] = train
        g = torch.Generator().manual_seed(0)
        return torch.cat([torch.zeros(1, 6), torch.randn(len(items), 6, generator=g)])

    monkeypatch.setattr("models.train.encode_items", fake_encode)
    row, facts = finetuned_row(_params(3), data.interactions, data.items, [1, 2], "cpu", tmp_path, "tiny", False)
    inter = data.interactions
    train = seen["train"]
    assert len(train) == len(inter) - 2 * inter["user_id"].nunique()  # each user's last two events held out
    last_two = inter.groupby("user_id").tail(2)
    assert not train.index.isin(last_two.index).any()
    assert row["all"]["users"]["mean"] == inter["user_id"].nunique()
    assert row["train_seconds"]["mean"] > 0 and "ndcg@10" in row["all"]
    assert facts["steps"] == 3
    assert (tmp_path / "benchmark-tiny.finetuned.fits.jsonl").read_text().count("\n") == 2  # one fit per seed
