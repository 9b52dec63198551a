"""Source adapters: each returns raw (interactions, items) DataFrames in the canonical column names.

Adapters only read and rename; validation and quarantine happen once, in core.schema.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd

from core.params import Params

Loaded = tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]


def load(params: Params) -> Loaded:
    """Dispatch on ``data.dataset``: (interactions, items, extra tables to save beside them)."""
    from features.adapters import movielens, recbole, synthetic, tabular

    loaders: dict[str, Callable[[Params], Loaded]] = {
        "synthetic": synthetic.load,
        "movielens-100k": movielens.load_100k,
        "movielens-1m": movielens.load_1m,
        "amazon-scientific": recbole.load_amazon_scientific,
        "csv": tabular.load,
        "parquet": tabular.load,
    }
    name = params.data.dataset
    if name not in loaders:
        raise ValueError(f"unknown data.dataset '{name}'; choose one of {sorted(loaders)}")
    return loaders[name](params)
