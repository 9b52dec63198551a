"""Contrastive encoder fine-tuning on a tiny random BERT: the InfoNCE loss falls, pairs come from sequences."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from models.encoder import TextEncoder
from models.finetune import finetune, next_item_pairs


def _frames():
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "text": ["a funny movie", "the dark war film", "space story", "a funny movie"]})
    train = pd.DataFrame({"user_id": ["u", "u", "u", "v", "v"], "item_id": ["a", "b", "b", "c", "d"]})
    return train, items


def test_next_item_pairs_are_consecutive_distinct_items_with_distinct_text():
    train, items = _frames()
    pairs = next_item_pairs(train, items, max_pairs=10, seed=0)
    # u: a->b (kept), b->b (same item, dropped); v: c->d (kept)
    assert sorted(pairs) == sorted([("a funny movie", "the dark war film"), ("space story", "a funny movie")])
    assert len(next_item_pairs(train, items, max_pairs=1, seed=0)) == 1


def test_infonce_loss_decreases_and_weights_change(tiny_bert):
    torch.set_num_threads(1)
    enc = TextEncoder(str(tiny_bert), max_length=16, device="cpu")
    before = enc.encode_batch(["a funny movie"])
    pairs = [("a funny movie", "the dark war film"), ("space story", "a funny movie about love"),
             ("the dark war film", "space story"), ("love story", "the funny film")]
    losses = finetune(enc, pairs, steps=30, batch_size=4, lr=1e-3, seed=0)
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # it learns the pairing
    assert not torch.allclose(torch.as_tensor(before), torch.as_tensor(enc.encode_batch(["a funny movie"])))
    assert not enc.model.training  # back in eval mode for encoding


def test_finetune_needs_pairs(tiny_bert):
    with pytest.raises(ValueError, match="at least 2"):
        finetune(TextEncoder(str(tiny_bert), device="cpu"), [("x", "y")], steps=1)
