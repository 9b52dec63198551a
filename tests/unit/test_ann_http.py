"""benchmarks.ann_http's own parts: the synthetic artifact is one that serving's Engine loads and
serves on its ANN path (the HTTP benchmark's figures are only the production path's if it is),
and the memory probes read something real."""
from __future__ import annotations

import os

import numpy as np

from benchmarks.ann_http import exact_top10, item_ids, peak_rss_mb, write_artifact
from benchmarks.server import tree_memory_mb
from models import artifacts
from models.candidates import AnnSettings, package_index
from models.inference import Engine

N = 50


def test_written_artifact_is_served_by_the_engine_on_its_ann_path(tmp_path):
    out = tmp_path / "model"
    categories = write_artifact(out, N, seed=3, text_dim=16, n_categories=4)
    assert categories == ["c00", "c01", "c02", "c03"]
    assert artifacts.load_item_ids(out) == item_ids(N) == [f"i{k:07d}" for k in range(1, N + 1)]
    assert all(len(c) == 1 and c[0] in categories for c in artifacts.load_item_categories(out))
    assert artifacts.load_text_embeddings(out).shape == (N + 1, 16)
    assert artifacts.load_meta(out)["selected"] == "interest"
    settings = AnnSettings(min_items=10, candidates=N)  # every item a candidate: the re-rank must then be exact scoring
    assert package_index(out, artifacts.load_models(out)["interest"], settings) is not None
    engine = Engine(out, "interest", ann=settings)
    assert engine.retrieval is not None and engine.max_len == 50
    history = item_ids(N)[:5]
    ts = [1_700_000_000 + 60 * k for k in range(5)]
    top = [it["item_id"] for it in engine.recommend(history, ts, 10).items]
    assert len(top) == 10 and not set(top) & set(history)
    assert top == exact_top10(engine, history, ts)


def test_memory_probes_see_this_process_and_an_allocation():
    mem = tree_memory_mb(os.getpid())
    assert mem is not None and mem["rss_mb"] > 10 and mem["peak_mb"] >= mem["rss_mb"] and mem["processes"] >= 1
    assert tree_memory_mb(None) is None
    with peak_rss_mb(0.05) as probe:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    assert probe["peak_mb"] >= probe["before_mb"] + 50
    del block
