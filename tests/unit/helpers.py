"""Small shared test helpers: the tiny interest-model setup and the Feast repo module guard."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import torch

from features import store
from models.interest import InterestConfig

N_ITEMS, TEXT_DIM, DIM, L = 20, 8, 16, 8
HOUR = 3600
T0 = 1_700_000_000


def tiny_config(**kw) -> InterestConfig:
    """A model small enough to train for a few hundred steps in a unit test."""
    base = dict(n_items=N_ITEMS, text_dim=TEXT_DIM, dim=DIM, max_len=L, n_layers=2, n_heads=2, dropout=0.0)
    base.update(kw)
    return InterestConfig(**base)


def random_text_emb(seed: int = 0, n: int = N_ITEMS) -> torch.Tensor:
    """(n+1, TEXT_DIM) random 'text embeddings', row 0 (padding) zero."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n + 1, TEXT_DIM, generator=g)
    emb[0] = 0
    return emb


@contextmanager
def repo_modules_restored() -> Iterator[None]:
    """load_repo_objects imports the repo files by bare name: do not leave a test repo's modules behind."""
    loaded_before = {m: sys.modules.get(m) for m in store.REPO_MODULES}
    try:
        yield
    finally:
        for m, mod in loaded_before.items():
            if mod is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = mod
