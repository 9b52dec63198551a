"""Encoder fine-tuning through sentence-transformers on a tiny random BERT: the SentenceTransformer
is the TextEncoder, the symmetric InfoNCE loss falls, the saved encoder reloads through
TextEncoder, and the pairs come from the training events only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.params import load_params
from models import train as train_mod
from models.encoder import TextEncoder
from models.finetune import finetune, next_item_pairs, sentence_transformer

PAIRS = [("a funny movie", "the dark war film"), ("space story", "a funny movie about love"),
         ("the dark war film", "space story"), ("love story", "the funny film")]


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


@pytest.mark.parametrize("model, pooling, side", [
    ("tiny_bert", "mean", "right"), ("tiny_bert", "cls", "right"), ("tiny_bert", "last_token", "right"),
    ("tiny_gpt2", "last_token", "right"), ("tiny_gpt2", "last_token", "left"), ("tiny_gpt2", "mean", "left")])
def test_sentence_transformer_is_the_text_encoder(model, pooling, side, request):
    """Same tokens and padding (eos for the decoder), same pooling, L2 norm, same weights object:
    the trainer trains what we encode with, for each pooling and padding side."""
    enc = TextEncoder(str(request.getfixturevalue(model)), max_length=16, device="cpu", pooling=pooling)
    enc.tokenizer.padding_side = side
    st = sentence_transformer(enc)
    assert st[0].auto_model is enc.model
    texts = [p[1] for p in PAIRS] + ["a funny movie about love and war and space " * 4]  # the last one is truncated
    np.testing.assert_allclose(st.encode(texts, convert_to_numpy=True), enc.encode_batch(texts), atol=1e-6)


def test_symmetric_infonce_loss_decreases_and_weights_change(tiny_bert):  # noqa: F811
    enc = TextEncoder(str(tiny_bert), max_length=16, device="cpu")
    before = enc.encode_batch(["a funny movie"])
    losses = finetune(enc, PAIRS, steps=30, batch_size=4, lr=1e-3, seed=0)
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # it learns the pairing
    assert not np.allclose(before, enc.encode_batch(["a funny movie"]))
    assert not enc.model.training  # back in eval mode for encoding


def test_decoder_embedder_fine_tunes_with_last_token_pooling(tiny_gpt2):
    """A decoder (eos as pad, left padding) trains through the trainer, and afterwards its
    SentenceTransformer and its TextEncoder still give the same vectors."""
    enc = TextEncoder(str(tiny_gpt2), max_length=16, device="cpu", pooling="last_token")
    enc.tokenizer.padding_side = "left"
    before = enc.encode_batch(["a funny movie"])
    losses = finetune(enc, PAIRS, steps=3, batch_size=4, lr=1e-3, seed=0)
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert not np.allclose(before, enc.encode_batch(["a funny movie"]))
    texts = [p[0] for p in PAIRS]
    np.testing.assert_allclose(sentence_transformer(enc).encode(texts, convert_to_numpy=True), enc.encode_batch(texts), atol=1e-6)


def test_saved_encoder_reloads_through_text_encoder_and_nothing_else_is_written(tiny_bert, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)  # the trainer must not leave output folders (checkpoints, runs/) behind
    enc = TextEncoder(str(tiny_bert), max_length=16, device="cpu")
    finetune(enc, PAIRS, steps=3, batch_size=4, lr=1e-3, seed=0)
    assert list(tmp_path.iterdir()) == []
    save_to = tmp_path / "encoder"
    enc.model.save_pretrained(save_to)  # what models.train.encode_items does
    enc.tokenizer.save_pretrained(save_to)
    texts = [t for p in PAIRS for t in p]
    np.testing.assert_allclose(TextEncoder(str(save_to), max_length=16, device="cpu").encode_batch(texts),
                               enc.encode_batch(texts), atol=1e-6)


def test_finetune_needs_pairs(tiny_bert):  # noqa: F811
    with pytest.raises(ValueError, match="at least 2"):
        finetune(TextEncoder(str(tiny_bert), device="cpu"), [("x", "y")], steps=1)


class _Stop(Exception):
    """Raised by the fake fit_models: the test only needs the encoder step of run()."""


def test_train_run_fine_tunes_on_training_events_only(tiny_bert, tmp_path, monkeypatch):  # noqa: F811
    """models.train.run builds the pairs from train_interactions: each user's last two events
    (validation and test targets) never reach the encoder, and the encoder is saved under encoder/."""
    words = ["the", "a", "movie", "film", "love", "war", "space", "funny"]
    items = pd.DataFrame({"item_id": list("abcdefgh"), "title": words, "text": words, "categories": [["x"]] * 8})
    users = ["u1"] * 4 + ["u2"] * 4
    ts = pd.to_datetime([1_700_000_000 + 60 * i for i in range(8)], unit="s", utc=True)
    inter = pd.DataFrame({"user_id": users, "item_id": list("abcdefgh"), "ts": ts, "event": "view", "value": float("nan")})
    (tmp_path / "params.yaml").write_text("{}\n")
    params = load_params(tmp_path / "params.yaml", {
        "train.models": ["popularity"], "train.device": "cpu", "encoder.model_name": str(tiny_bert),
        "encoder.max_length": 16, "encoder.finetune_steps": 2, "encoder.finetune_batch_size": 2})
    raw = params.path(params.data.raw_dir)
    raw.mkdir(parents=True)
    items.to_parquet(raw / "items.parquet", index=False)
    inter.to_parquet(raw / "interactions.parquet", index=False)
    seen: dict[str, list] = {}

    def spy_finetune(enc, pairs, *args, **kwargs):
        seen["pairs"] = list(pairs)
        return [1.0]

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(train_mod, "finetune", spy_finetune)
    monkeypatch.setattr(train_mod, "fit_models", stop)
    with pytest.raises(_Stop):
        train_mod.run(params)
    # u1: the -> a (train), movie and film held out; u2: love -> war (train), space and funny held out
    assert sorted(seen["pairs"]) == [("love", "war"), ("the", "a")]
    assert (Path(params.path(params.train.out_dir)) / "encoder" / "config.json").exists()
