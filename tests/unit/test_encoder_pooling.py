"""Selectable pooling (mean, cls, last_token) of models.encoder and decoder-style LLM embedders,
on tiny random models written to temporary folders (no download)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from models.encoder import TextEncoder, first_token_pool, last_token_pool
from tests.unit.helpers import BERT_HIDDEN, BERT_TEXTS, EOS, write_tiny_decoder

SHORT, LONG = "space story", "the dark war film about love and space"


def _unpadded_hidden(enc: TextEncoder, text: str) -> torch.Tensor:
    """(T, H) last hidden states of ``text`` encoded alone: no padding anywhere."""
    tok = enc.tokenizer([text], return_tensors="pt")
    assert bool(tok["attention_mask"].all())
    with torch.no_grad():
        return enc.model(**tok).last_hidden_state[0]


def _unit(v: torch.Tensor) -> np.ndarray:
    return (v / v.norm()).numpy()


def test_first_and_last_token_pool_skip_padding_on_either_side():
    torch.manual_seed(2)
    hidden = torch.randn(3, 4, 5)
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]])  # right-padded, left-padded, empty
    first, last = first_token_pool(hidden, mask), last_token_pool(hidden, mask)
    torch.testing.assert_close(first[0], hidden[0, 0])
    torch.testing.assert_close(last[0], hidden[0, 2])
    torch.testing.assert_close(first[1], hidden[1, 2])
    torch.testing.assert_close(last[1], hidden[1, 3])
    assert torch.all(first[2] == 0) and torch.all(last[2] == 0)  # zeros, not a padding vector


def test_cls_and_last_token_differ_from_mean_and_pick_their_token(tiny_bert):
    encs = {p: TextEncoder(str(tiny_bert), max_length=16, pooling=p) for p in ("mean", "cls", "last_token")}
    vecs = {p: e.encode_batch([SHORT, LONG]) for p, e in encs.items()}
    for a, b in [("mean", "cls"), ("mean", "last_token"), ("cls", "last_token")]:
        assert not np.allclose(vecs[a], vecs[b], atol=1e-3), (a, b)
    h = _unpadded_hidden(encs["cls"], SHORT)  # [CLS] space story [SEP]
    np.testing.assert_allclose(vecs["cls"][0], _unit(h[0]), atol=1e-5)
    np.testing.assert_allclose(vecs["last_token"][0], _unit(h[-1]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vecs["last_token"], axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_token_is_the_last_real_token_under_left_and_right_padding(tiny_gpt2, side):
    """The decoder's tokenizer has no pad token: eos pads. A padded text gets the vector it has
    alone, under either padding side (left padding also needs its positions counted from its
    first real token: GPT-2's position embeddings are absolute)."""
    enc = TextEncoder(str(tiny_gpt2), max_length=16, pooling="last_token")
    assert enc.tokenizer.pad_token == EOS
    enc.tokenizer.padding_side = side
    mask = enc.tokenizer([SHORT, LONG], padding=True, return_tensors="pt")["attention_mask"]
    assert mask[0, 0 if side == "left" else -1] == 0  # SHORT really is padded on that side
    together = enc.encode_batch([SHORT, LONG])
    np.testing.assert_allclose(together[0], _unit(_unpadded_hidden(enc, SHORT)[-1]), atol=1e-5)
    np.testing.assert_allclose(together[1], enc.encode_batch([LONG])[0], atol=1e-5)


def test_cache_key_depends_on_pooling_and_mean_keeps_its_old_key(tiny_bert, tmp_path):
    files = {p: TextEncoder(str(tiny_bert), max_length=16, cache_dir=tmp_path, pooling=p).cache_file
             for p in ("mean", "cls", "last_token")}
    assert len(set(files.values())) == 3
    old = hashlib.sha1(f"{tiny_bert}|16".encode()).hexdigest()[:12]  # the key before pooling existed
    assert files["mean"] == tmp_path / f"{old}.npz"


def test_cached_vectors_of_one_pooling_are_not_served_for_another(tiny_bert, tmp_path):
    mean = TextEncoder(str(tiny_bert), max_length=16, cache_dir=tmp_path, pooling="mean").encode(BERT_TEXTS, progress=False)
    cls = TextEncoder(str(tiny_bert), max_length=16, cache_dir=tmp_path, pooling="cls").encode(BERT_TEXTS, progress=False)
    assert not np.allclose(mean, cls, atol=1e-3)


def test_unknown_pooling_is_an_error(tiny_bert):
    with pytest.raises(ValueError, match="encoder.pooling"):
        TextEncoder(str(tiny_bert), pooling="max")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decoder_style_model_encodes(arch, tmp_path):
    path = write_tiny_decoder(tmp_path / arch, arch, hidden=BERT_HIDDEN)
    enc = TextEncoder(str(path), max_length=16, batch_size=2, cache_dir=tmp_path / "cache", pooling="last_token")
    assert type(enc.model).__name__ == {"gpt2": "GPT2Model", "llama": "LlamaModel"}[arch]  # the base model
    v = enc.encode(BERT_TEXTS, progress=False)
    assert v.shape == (len(BERT_TEXTS), BERT_HIDDEN) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v[0], v[3])
    assert not np.allclose(v[0], v[1])


def test_saved_encoder_keeps_its_pooling(tiny_gpt2, tmp_path):
    """A fine-tuned encoder is saved with save_pretrained and served as TextEncoder(folder) with
    no pooling given: it must come back with the pooling it was trained with."""
    enc = TextEncoder(str(tiny_gpt2), max_length=16, pooling="last_token")
    enc.model.save_pretrained(tmp_path / "encoder")
    enc.tokenizer.save_pretrained(tmp_path / "encoder")
    again = TextEncoder(str(tmp_path / "encoder"), max_length=16)
    assert again.pooling == "last_token"
    np.testing.assert_allclose(again.encode_batch([SHORT, LONG]), enc.encode_batch([SHORT, LONG]), atol=1e-6)
    assert TextEncoder(str(tiny_gpt2), max_length=16).pooling == "mean"  # a model never saved by us: mean


def test_an_unknown_pooling_is_refused_when_the_params_are_read():
    from core.params import load_params

    with pytest.raises(ValueError, match="encoder.pooling"):
        load_params("params.yaml", {"encoder.pooling": "max"})
