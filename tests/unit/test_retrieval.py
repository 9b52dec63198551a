"""ANN retrieval: the FAISS index (models/retrieval.py) and the serving path that uses it (models/candidates.py, Engine)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.ann import clustered, queries_for
from core.params import TrainParams
from models import artifacts
from models.baselines import item_knn, popularity
from models.content import content
from models.candidates import AnnSettings, CandidateScorer, interest_part, item_rows
from models.data import ItemIndex
from models.hybrid import Hybrid
from models.inference import Engine
from models.interest import InterestModel
from models.retrieval import INDEX_FILE, AnnConfig, AnnIndex, exact_top_k, recall_at_k, rerank
from models.settings import model_config
from models.switch import GateConfig, SwitchGate
from tests.unit.helpers import TEXT_DIM, random_text_emb

faiss = pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def catalogue() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    vectors, centres = clustered(4000, 32, 40, rng, noise=1.0)
    return vectors, queries_for(centres, 100, rng)


# ---------------------------------------------------------------- the index


def test_index_recall_on_a_clustered_catalogue(catalogue):
    vectors, queries = catalogue
    truth = exact_top_k(queries, vectors, 10) + 1
    index = AnnIndex.build(vectors, cfg=AnnConfig(nprobe=8))
    assert index.ntotal == 4000 and index.index.nlist == 63  # sqrt(N) lists
    few = recall_at_k(index.search(queries, 10), truth)
    index.set_effort(32)
    more = recall_at_k(index.search(queries, 10), truth)
    assert 0.85 <= few < more and more >= 0.97  # nprobe is the recall knob: 8 of 63 lists miss some, 32 almost none
    index.set_effort(index.index.nlist)  # every list: the exact answer
    assert recall_at_k(index.search(queries, 10), truth) == 1.0


def test_added_items_are_found_without_a_rebuild(catalogue):
    vectors, queries = catalogue
    index = AnnIndex.build(vectors[:3000])
    quantizer = faiss.downcast_index(index.index.quantizer)
    centroids = faiss.rev_swig_ptr(quantizer.get_xb(), quantizer.ntotal * quantizer.d).copy()
    index.add(vectors[3000:])  # ids continue: 3001..4000
    extra = 3 * queries[:1] / np.linalg.norm(queries[:1]) * np.linalg.norm(vectors, axis=1).max()
    index.add(extra)  # id 4001: the best item for query 0
    assert index.ntotal == 4001
    assert index.search(queries[:1], 1)[0, 0] == 4001
    after = faiss.rev_swig_ptr(quantizer.get_xb(), quantizer.ntotal * quantizer.d)
    assert np.array_equal(centroids, after)  # the coarse quantiser was not retrained
    index.set_effort(index.index.nlist)
    truth = exact_top_k(queries[1:], np.vstack([vectors, extra]), 10) + 1
    assert recall_at_k(index.search(queries[1:], 10), truth) == 1.0  # the later items are searchable like the first


def test_update_replaces_an_items_vector(catalogue, tmp_path):
    vectors, queries = catalogue
    index = AnnIndex.build(vectors)
    index.update(np.array([17]), 5 * queries[:1] / np.linalg.norm(queries[:1]) * np.linalg.norm(vectors, axis=1).max())
    assert index.ntotal == 4000 and index.search(queries[:1], 1)[0, 0] == 17
    index.save(tmp_path / INDEX_FILE)
    again = AnnIndex.load(tmp_path / INDEX_FILE, effort=5)
    assert again.ntotal == 4000 and again.index.nprobe == 5 and again.search(queries[:1], 1)[0, 0] == 17


def test_rerank_of_covering_candidates_is_the_exact_top_k(catalogue):
    vectors, queries = catalogue
    q = queries[3]
    ids, scores = rerank(np.r_[np.arange(1, 4001), -1], np.r_[vectors @ q, 99.0], 10)  # -1: "no candidate", skipped
    assert ids.tolist() == (exact_top_k(q, vectors, 10)[0] + 1).tolist()
    assert np.all(np.diff(scores) <= 0)


# ---------------------------------------------------------------- the serving path

N_ITEMS, L = 300, 8
IDS = [f"i{k}" for k in range(1, N_ITEMS + 1)]
T0 = 1_700_000_000


def _train() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{int(i)}", T0 + 60 * j) for u in range(60) for j, i in enumerate(rng.integers(1, N_ITEMS + 1, 15))]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    return df


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    train, index = _train(), ItemIndex(tuple(IDS))
    tp = TrainParams(dim=16, max_len=L, n_layers=1, n_heads=2, dropout=0.0, cold_neighbours=3)
    torch.manual_seed(0)
    interest = InterestModel(model_config("interest", tp, N_ITEMS, TEXT_DIM), random_text_emb(0, N_ITEMS)).eval()
    with torch.no_grad():
        for p in interest.parameters():
            p.add_(0.3 * torch.randn_like(p))
    knn, pop, text = item_knn(train, index), popularity(train, index), content(interest.text_emb)
    hybrid = Hybrid(interest, {"item_knn": knn, "popularity": pop, "content": text},
                    {"item_knn": 1.0, "popularity": 0.5, "content": 1.0}).eval()  # content: re-ranked from the candidates' text only
    out = tmp_path_factory.mktemp("ann_model")
    artifacts.save(out, IDS, interest.text_emb, {"interest": interest, "item_knn": knn, "popularity": pop, "content": text,
                                                 "hybrid": hybrid}, {"dataset": "t"})
    return out


def _history(seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    return [IDS[int(i)] for i in rng.integers(0, N_ITEMS, 6)], [T0 + 3600 * j for j in range(6)]


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
@pytest.mark.parametrize("name", ["interest", "hybrid"])
def test_ann_path_above_the_threshold_gives_the_exact_top_k_when_candidates_cover_it(model_dir, name, kind):
    cover = AnnSettings(min_items=N_ITEMS, index=kind, candidates=N_ITEMS, nprobe=1000, ef_search=1000, popular=5)  # every item
    exact = Engine(model_dir, name)
    ann = Engine(model_dir, name, ann=cover)
    assert exact.retrieval is None and isinstance(ann.retrieval, CandidateScorer)
    ann._score = None  # the full-catalogue path must not run
    for seed in range(5):
        h, t = _history(seed)
        a, b = exact.recommend(h, t, k=10), ann.recommend(h, t, k=10)
        assert [i["item_id"] for i in a.items] == [i["item_id"] for i in b.items]
        assert a.because == b.because
        gap = np.array([i["score"] for i in a.items]) - np.array([i["score"] for i in b.items])
        if name == "interest":  # the same formula: the same scores
            np.testing.assert_allclose(gap, 0, atol=1e-4)
        else:  # the hybrid: up to the interest model's log-partition, one constant per request
            np.testing.assert_allclose(gap, gap[0], atol=1e-4)
        assert not {i["item_id"] for i in b.items} & set(h)  # seen items stay excluded


def test_below_the_threshold_scoring_stays_exact(model_dir):
    engine = Engine(model_dir, "hybrid", ann=AnnSettings(min_items=N_ITEMS + 1))
    assert engine.retrieval is None
    engine.recommend(*_history(0))  # and it answers
    meta = {"ann_min_items": 7, "ann_nprobe": 3, "ann_index": "ivf", "other": 1}
    assert AnnSettings.from_metadata(meta) == AnnSettings(min_items=7, nprobe=3, index="ivf")


def test_the_ann_path_reads_only_candidates(model_dir):
    settings = AnnSettings(min_items=N_ITEMS, index="ivf", candidates=20, nprobe=2, popular=3)
    engine = Engine(model_dir, "hybrid", ann=settings)
    h, t = _history(3)
    seq = torch.tensor([[engine.pos[i] for i in h]])
    user, _ = engine.retrieval.base.encode(seq, torch.tensor([t]), engine.retrieval.items, last_only=True)
    cand = engine.retrieval.candidates(seq, user[0, -1])
    knn = engine.model.components["item_knn"]
    assert set(knn.neighbours(seq).tolist()) <= set(cand.tolist())  # every item kNN can lift is re-ranked
    assert len(cand) < N_ITEMS
    rec = engine.recommend(h, t, k=5)
    assert {engine.pos[i["item_id"]] for i in rec.items} <= set(cand.tolist())


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_items_posted_after_packaging_join_the_index_without_a_rebuild(model_dir, kind):
    settings = AnnSettings(min_items=N_ITEMS, index=kind, candidates=10, nprobe=4, ef_search=16)
    engine = Engine(model_dir, "interest", ann=settings)
    index = engine.retrieval.index
    assert index.kind == kind
    quantizer_size = index.index.quantizer.ntotal if kind == "ivf" else 0
    h, t = _history(4)
    seq = torch.tensor([[engine.pos[i] for i in h]])
    user, _ = engine.model.encode(seq, torch.tensor([t]), last_only=True)
    # a text whose projection points along the user's interest: the new item must top their list
    proj = engine.model.text_proj
    text = torch.linalg.lstsq(proj.weight, (50 * user[0, -1] - proj.bias).unsqueeze(1)).solution.T.detach()
    new = engine.upsert_items(["fresh"], ["Fresh"], text)
    assert new == ["fresh"] and index.ntotal == N_ITEMS + 1 and engine.retrieval.index is index
    if kind == "ivf":
        assert index.index.quantizer.ntotal == quantizer_size  # not retrained
    torch.testing.assert_close(engine.retrieval.items, engine.model.item_vectors())
    assert engine.recommend(h, t, k=3).items[0]["item_id"] == "fresh"
    # re-posting it with another text moves its index vector too
    engine.upsert_items(["fresh"], ["Fresh"], -text)
    torch.testing.assert_close(engine.retrieval.items, engine.model.item_vectors())
    assert engine.recommend(h, t, k=3).items[0]["item_id"] != "fresh"


def test_a_packaged_index_is_loaded_and_extended(model_dir, tmp_path):
    import shutil

    from models.candidates import package_index

    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    models = artifacts.load_models(d)
    assert package_index(d, models["interest"], AnnSettings(min_items=N_ITEMS + 1)) is None  # below: no index
    assert package_index(d, models["interest"], AnnSettings(min_items=N_ITEMS)) == d / INDEX_FILE
    engine = Engine(d, "interest", ann=AnnSettings(min_items=N_ITEMS))
    assert engine.retrieval.index.ntotal == N_ITEMS and engine.retrieval.index.kind == "hnsw"  # the default kind, from the file


def test_item_rows_are_the_models_item_vectors(model_dir):
    model = artifacts.load_models(model_dir)["interest"]
    model.add_items(torch.randn(2, TEXT_DIM))
    idx = torch.arange(N_ITEMS + 3)
    torch.testing.assert_close(item_rows(model, idx), model.item_vectors().detach())


def test_switch_gated_models_are_not_retrieved_by_ann(model_dir):
    models = artifacts.load_models(model_dir)
    assert interest_part(models["hybrid"]) is models["hybrid"].base
    assert interest_part(SwitchGate(models["hybrid"], GateConfig())) is None
