"""Unit tests of models.encoder with a tiny random BERT written to a temporary folder (no download)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.encoder import TextEncoder, mean_pool, resolve_model_path, text_hash
from tests.unit.helpers import BERT_HIDDEN, BERT_TEXTS

HIDDEN, TEXTS = BERT_HIDDEN, BERT_TEXTS


@pytest.fixture
def encoder(tiny_bert, tmp_path) -> TextEncoder:
    return TextEncoder(str(tiny_bert), max_length=16, batch_size=2, device="cpu", cache_dir=tmp_path / "cache")


def test_mean_pool_ignores_padding():
    torch.manual_seed(1)
    hidden = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    out = mean_pool(hidden, mask)
    torch.testing.assert_close(out[0], (hidden[0, 0] + hidden[0, 1]) / 2)
    torch.testing.assert_close(out[1], (hidden[1, 0] + hidden[1, 1] + hidden[1, 2]) / 3)
    # changing padded positions changes nothing
    h2 = hidden.clone()
    h2[0, 2:] = 1e6
    h2[1, 3] = -1e6
    torch.testing.assert_close(mean_pool(h2, mask), out)
    # an all-padding row gives zeros, not NaN
    assert torch.all(mean_pool(hidden[:1], torch.zeros(1, 4)) == 0)


def test_encode_shape_norm_and_identical_texts(encoder):
    assert encoder.dim == HIDDEN
    # the saved tokenizer reloads with the tiny vocabulary (real word pieces, not [UNK])
    assert encoder.tokenizer.unk_token_id not in sum(encoder.tokenizer(TEXTS)["input_ids"], [])
    v = encoder.encode(TEXTS, progress=False)
    assert v.shape == (len(TEXTS), HIDDEN) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v[0], v[3])
    assert not np.allclose(v[0], v[1])
    assert encoder.encode([], progress=False).shape == (0, HIDDEN)


def test_encode_batch_matches_manual_mean_pool_and_padding_is_ignored(encoder):
    short, long = "space story", "the dark war film about love and space"
    alone = encoder.encode_batch([short])[0]
    together = encoder.encode_batch([short, long])[0]  # `short` is padded in this batch
    np.testing.assert_allclose(alone, together, atol=1e-5)
    # formula: normalised average of the last hidden states of the non-padding tokens
    tok = encoder.tokenizer([short], return_tensors="pt")
    with torch.no_grad():
        h = encoder.model(**tok).last_hidden_state[0]
    expected = h.mean(0)
    expected = (expected / expected.norm()).numpy()
    np.testing.assert_allclose(alone, expected, atol=1e-5)


def test_cache_skips_the_model_and_encodes_only_new_texts(encoder, tiny_bert, tmp_path, monkeypatch):
    first = encoder.encode(TEXTS, progress=False)
    assert encoder.cache_file is not None and encoder.cache_file.exists()

    def boom(texts):
        raise AssertionError(f"model called for cached texts: {texts}")

    monkeypatch.setattr(encoder, "encode_batch", boom)
    np.testing.assert_array_equal(encoder.encode(TEXTS, progress=False), first)

    # a new text is encoded alone, the cached ones are not recomputed
    calls: list[list[str]] = []
    original = TextEncoder.encode_batch.__get__(encoder)

    def spy(texts):
        calls.append(list(texts))
        return original(texts)

    monkeypatch.setattr(encoder, "encode_batch", spy)
    new = "war of love"
    out = encoder.encode(TEXTS + [new], progress=False)
    assert calls == [[new]]
    np.testing.assert_array_equal(out[: len(TEXTS)], first)
    np.testing.assert_allclose(out[-1], original([new])[0], atol=1e-6)

    # a fresh encoder on the same cache folder reads the vectors from disk
    other = TextEncoder(str(tiny_bert), max_length=16, batch_size=2, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(other, "encode_batch", boom)
    np.testing.assert_array_equal(other.encode([new] + TEXTS, progress=False), np.concatenate([out[-1:], first]))


def test_cache_key_depends_on_max_length(tiny_bert, tmp_path):
    a = TextEncoder(str(tiny_bert), max_length=16, cache_dir=tmp_path)
    b = TextEncoder(str(tiny_bert), max_length=8, cache_dir=tmp_path)
    assert a.cache_file != b.cache_file
    assert TextEncoder(str(tiny_bert), max_length=16).cache_file is None


def test_text_hash_is_stable():
    import hashlib

    assert text_hash("abc") == hashlib.sha1(b"abc").hexdigest()
    assert text_hash("abc") != text_hash("abd")


def test_resolve_model_path():
    p = Path(resolve_model_path("all-MiniLM-L6-v2"))
    assert p.is_dir()
    assert (p / "config.json").exists()
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == str(p)
    assert resolve_model_path("/some/local/model") == "/some/local/model"
