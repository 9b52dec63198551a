"""Sparse item-to-item structures (models/sparse.py): equal to the dense matrices they replace."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from core.params import TrainParams
from models import artifacts
from models.baselines import ItemKNN, cooccurrence_similarity, item_knn
from models.data import ItemIndex
from models.interest import InterestModel
from models.settings import model_config
from models.sparse import CsrMatrix
from tests.unit.helpers import TEXT_DIM, random_text_emb

N = 40
INDEX = ItemIndex(tuple(f"i{k}" for k in range(1, N + 1)))


def dense_cooccurrence(train: pd.DataFrame, index: ItemIndex, window: int = 5) -> torch.Tensor:
    """The dense implementation the sparse one replaced, kept here as the reference."""
    pos = index.pos
    n = len(index) + 1
    co = np.zeros((n, n), dtype=np.float32)
    for _, g in train.groupby("user_id", sort=False):
        s = g["item_id"].map(pos).dropna().astype(np.int64).to_numpy()
        for d in range(1, window + 1):
            if len(s) > d:
                np.add.at(co, (s[:-d], s[d:]), 1.0 / d)
    co = co + co.T
    np.fill_diagonal(co, 0.0)
    norm = np.sqrt(np.maximum(co.sum(1), 1e-9))
    return torch.from_numpy(co / norm[:, None] / norm[None, :])


def _train(seed: int = 0, users: int = 30, events: int = 25) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(f"u{int(u)}", f"i{int(i)}" if rng.random() > 0.05 else "unknown", t)
            for t, (u, i) in enumerate(zip(rng.integers(0, users, users * events), rng.integers(1, N + 1, users * events)))]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])  # users interleaved, repeats, unknown items


def test_sparse_cooccurrence_equals_the_dense_one():
    train = _train()
    sparse, dense = cooccurrence_similarity(train, INDEX), dense_cooccurrence(train, INDEX)
    assert sparse.shape == (N + 1, N + 1) and sparse.nnz == int((dense != 0).sum())
    torch.testing.assert_close(sparse.to_dense(), dense, rtol=1e-5, atol=1e-7)


def test_top_k_covering_every_row_changes_nothing_and_a_small_k_keeps_the_largest():
    train = _train(1)
    full = cooccurrence_similarity(train, INDEX)
    widest = int(full.crow.diff().max())
    torch.testing.assert_close(cooccurrence_similarity(train, INDEX, top_k=widest).to_dense(), full.to_dense(), rtol=0, atol=0)
    k = 3
    top = cooccurrence_similarity(train, INDEX, top_k=k).to_dense()
    dense = full.to_dense()
    assert int((top != 0).sum(1).max()) == k
    for row in range(1, N + 1):
        kept = top[row][top[row] != 0]
        if len(kept):
            assert kept.min() >= dense[row].topk(k).values.min()  # the k largest of the full row
            torch.testing.assert_close(top[row][top[row] != 0], dense[row][top[row] != 0])  # with the full data's values


def test_item_knn_scores_equal_the_dense_formula():
    train = _train(2)
    m = item_knn(train, INDEX)
    sim = dense_cooccurrence(train, INDEX)
    seq = torch.tensor([[0, 0, 3, 7, 7, 1], [5, 9, 11, 2, 4, 6]])
    w = m.decay ** torch.arange(4, -1, -1, dtype=torch.float32)
    recent = seq[:, -5:]
    expect = torch.einsum("bm,bmn->bn", w.unsqueeze(0) * (recent > 0).float(), sim[recent])
    torch.testing.assert_close(m.score_all(seq, torch.zeros_like(seq)), expect, rtol=1e-5, atol=1e-6)


def test_csr_state_round_trip_and_an_old_dense_artifact_still_loads(tmp_path):
    train = _train(3)
    knn = item_knn(train, INDEX)
    artifacts.save(tmp_path, list(INDEX.ids), random_text_emb(0, N), {"item_knn": knn}, {"dataset": "t"})
    loaded = artifacts.load_models(tmp_path)["item_knn"]
    assert torch.equal(loaded.sim.to_dense(), knn.sim.to_dense())
    save_file({"sim": knn.sim.to_dense()}, str(tmp_path / "item_knn.safetensors"))  # the format before sparse
    old = artifacts.load_models(tmp_path)["item_knn"]
    assert isinstance(old, ItemKNN) and torch.equal(old.sim.to_dense(), knn.sim.to_dense())


def test_an_interest_model_saved_with_a_dense_transition_loads_sparse():
    tp = TrainParams(dim=16, max_len=6, n_layers=1, n_heads=2, use_transition=True)
    cfg = model_config("interest", tp, N, TEXT_DIM)
    sim = cooccurrence_similarity(_train(4), INDEX)
    m = InterestModel(cfg, random_text_emb(0, N), sim)
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("transition.")}
    state["transition"] = sim.to_dense()  # what an artifact from before held
    fresh = InterestModel(cfg, random_text_emb(0, N))
    fresh.load_state_dict(state, strict=False)
    assert torch.equal(fresh.transition.to_dense(), sim.to_dense())


def test_padded_rows_and_with_entries():
    m = CsrMatrix.from_dense(torch.tensor([[0.0, 0, 0], [0, 0, 2], [0, 3, 0]]))
    p = m.padded(2)
    assert p.shape == (5, 5) and torch.equal(p.to_dense()[:3, :3], m.to_dense()) and p.to_dense()[3:].abs().sum() == 0
    q = p.with_entries(torch.tensor([4, 1]), torch.tensor([1, 4]), torch.tensor([5.0, 5.0]), clear=2)
    expect = torch.zeros(5, 5)
    expect[1, 4] = expect[4, 1] = 5.0
    assert torch.equal(q.to_dense(), expect)
    torch.testing.assert_close(p.rows(torch.tensor([2, 0, 1])), p.to_dense()[[2, 0, 1]])
