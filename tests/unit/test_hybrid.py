"""models.hybrid: late fusion of the interest model with item-kNN / popularity, its weight search on
validation, items added after training, and the artifact round trip."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from core.params import TrainParams
from models import artifacts
from models.baselines import ItemKNN, StaticScores, cooccurrence_similarity
from models.data import EvalSet, ItemIndex, pad_left
from models.evaluate import evaluate_model, n_items_of
from models.untrained import untrained_items
from models.hybrid import Hybrid, fit_hybrid, log_normalised
from models.inference import Engine
from models.interest import InterestModel
from models.fitting import fit_models, with_components
from tests.unit.helpers import HOUR, L, N_ITEMS, T0, random_text_emb, tiny_config

IDS = [f"i{k}" for k in range(1, N_ITEMS + 1)]


def _interest(**kw) -> InterestModel:
    torch.manual_seed(0)
    m = InterestModel(tiny_config(n_layers=1, **kw), random_text_emb())
    with torch.no_grad():  # away from the init, so every part of the score matters
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def _knn() -> ItemKNN:
    g = torch.Generator().manual_seed(1)
    sim = torch.rand(N_ITEMS + 1, N_ITEMS + 1, generator=g)
    sim = (sim + sim.T) / 2
    sim[0] = 0
    sim[:, 0] = 0
    sim.fill_diagonal_(0)
    return ItemKNN(sim)


def _pop() -> StaticScores:
    return StaticScores(torch.cat([torch.zeros(1), torch.arange(N_ITEMS, 0, -1, dtype=torch.float32)]))


def _eval_set(targets: list[int]) -> EvalSet:
    seq, ts, ex = [], [], []
    for u in range(len(targets)):
        h = np.array([(u + j) % N_ITEMS + 1 for j in range(3)])
        seq.append(pad_left(h, L))
        ts.append(pad_left(T0 + HOUR * np.arange(3), L))
        ex.append(np.unique(h))
    n = len(targets)
    return EvalSet([f"u{u}" for u in range(n)], np.stack(seq), np.stack(ts), np.array(targets), ex, np.zeros(n, dtype=np.int64))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    d = _eval_set([1, 2, 3])
    return torch.as_tensor(d.seq), torch.as_tensor(d.ts)


def test_log_normalised_is_a_log_distribution_over_the_catalogue():
    s = torch.tensor([[0.0, 3.0, 1.0, 0.0, -2.0]])
    out = log_normalised(s, 1e-3)
    assert out[0, 0] == float("-inf")  # padding
    assert torch.exp(out).sum().item() == pytest.approx(1.0, abs=1e-6)
    assert out[0, 1] > out[0, 2] > out[0, 3]
    assert out[0, 3] == out[0, 4]  # negative scores count as no evidence, like zero


def test_zero_weights_rank_as_the_interest_model_and_weights_add_log_scores():
    base, knn, pop = _interest(), _knn(), _pop()
    seq, ts = _batch()
    with torch.no_grad():
        plain = Hybrid(base, {"item_knn": knn, "popularity": pop}, {"item_knn": 0, "popularity": 0})
        s = base.score_all(seq, ts)
        s[:, 0] = float("-inf")
        torch.testing.assert_close(plain.score_all(seq, ts), torch.log_softmax(s, -1))
        h = Hybrid(base, {"item_knn": knn, "popularity": pop}, {"item_knn": 2.0, "popularity": 0.5})
        want = torch.log_softmax(s, -1) + 2.0 * log_normalised(knn.score_all(seq, ts), 1e-3) + 0.5 * log_normalised(pop.score_all(seq, ts), 1e-3)
        torch.testing.assert_close(h.score_all(seq, ts)[:, 1:], want[:, 1:])
        torch.testing.assert_close(h.interest_weights(seq, ts), base.interest_weights(seq, ts))
    assert n_items_of(h) == N_ITEMS
    assert h.text_proj is base.text_proj
    with pytest.raises(ValueError, match="weights missing"):
        Hybrid(base, {"item_knn": knn}, {})


def _oracle_validation() -> tuple[list[int], object, torch.Tensor]:
    """Validation targets, their eval set, and the (users, items) scores that put each target first."""
    targets = [(u * 7) % N_ITEMS + 1 for u in range(N_ITEMS)]
    oracle = torch.zeros(len(targets), N_ITEMS + 1)
    oracle[torch.arange(len(targets)), torch.as_tensor(targets)] = 1.0
    return targets, _eval_set(targets), oracle


def test_fit_hybrid_trusts_a_component_that_knows_the_targets_and_ignores_one_that_misleads():
    base = _interest()
    targets, valid, oracle = _oracle_validation()

    class Oracle(torch.nn.Module):  # scores each validation user's target highest (users come in order)
        def score_all(self, seq, ts, now=None):
            return oracle[: len(seq)]

    class Liar(torch.nn.Module):  # scores every item but the targets
        def score_all(self, seq, ts, now=None):
            return 1.0 - oracle[: len(seq)]

    h, search = fit_hybrid(base, {"oracle": Oracle(), "liar": Liar()}, valid, (0, 1, 5), k=10)
    assert h.weights["oracle"] > 0 and h.weights["liar"] == 0
    assert len(search["grid"]) == 9
    alone = next(g["valid_ndcg"] for g in search["grid"] if g["weights"] == {"oracle": 0.0, "liar": 0.0})
    assert search["valid_ndcg"] == max(g["valid_ndcg"] for g in search["grid"]) > alone
    assert search["valid_ndcg"] == pytest.approx(1.0)  # the oracle puts every target first
    with pytest.raises(ValueError, match="at least one component"):
        fit_hybrid(base, {}, valid, (0, 1))


def test_fit_hybrid_report_matches_evaluating_the_returned_model():
    base, knn, pop = _interest(), _knn(), _pop()
    valid = _eval_set([(u * 3) % N_ITEMS + 1 for u in range(N_ITEMS)])
    h, search = fit_hybrid(base, {"item_knn": knn, "popularity": pop}, valid, (0, 0.5, 2), k=10, batch_size=7)
    assert evaluate_model(h, valid, 10)["ndcg@10"] == pytest.approx(search["valid_ndcg"], abs=1e-9)
    assert evaluate_model(h, valid, 10)["ndcg@10"] >= evaluate_model(base, valid, 10)["ndcg@10"] - 1e-9


def test_a_new_item_borrows_the_rows_of_its_text_twin():
    """With one text neighbour, an item posted with the text of a trained item scores exactly like it."""
    base, knn, pop = _interest(cold_neighbours=1), _knn(), _pop()
    h = Hybrid(base, {"item_knn": knn, "popularity": pop}, {"item_knn": 1.5, "popularity": 0.5}).eval()
    twin = 7
    h.add_items(base.text_emb[twin : twin + 1].clone())
    assert knn.sim.shape == (N_ITEMS + 2, N_ITEMS + 2) and len(pop.scores) == N_ITEMS + 2
    new = N_ITEMS + 1
    assert torch.equal(pop.scores[new], pop.scores[twin])
    sim = knn.sim.to_dense()
    torch.testing.assert_close(sim[new, :new], sim[twin, :new])
    torch.testing.assert_close(sim[:new, new], sim[:new, twin])
    seq, ts = _batch()  # histories without the twin
    with torch.no_grad():
        s = h.score_all(seq, ts)
    torch.testing.assert_close(s[:, new], s[:, twin])
    # re-posting it with another item's text re-borrows from that item
    h.set_item_text(new, base.text_emb[3].clone())
    assert torch.equal(pop.scores[new], pop.scores[3])
    sim = knn.sim.to_dense()
    torch.testing.assert_close(sim[new, 1:new], sim[3, 1:new])


def test_borrowed_knn_rows_do_not_depend_on_how_new_items_were_batched():
    """Two items posted together or one after the other get the same rows: borrowed from trained items only."""
    base = _interest(cold_neighbours=3)
    text = torch.randn(2, base.text_emb.shape[1], generator=torch.Generator().manual_seed(5))
    together = Hybrid(_interest(cold_neighbours=3), {"item_knn": _knn()}, {"item_knn": 1.0})
    together.add_items(text.clone())
    apart = Hybrid(_interest(cold_neighbours=3), {"item_knn": _knn()}, {"item_knn": 1.0})
    apart.add_items(text[:1].clone())
    apart.add_items(text[1:].clone())
    a, b = together.components["item_knn"].sim.to_dense(), apart.components["item_knn"].sim.to_dense()
    torch.testing.assert_close(a, b)
    new = N_ITEMS + 1
    assert a[new, new + 1] == 0 and a[new + 1, new] == 0 and a[new, new] == 0
    assert a[new, 1:new].abs().sum() > 0  # but they are similar to trained items
    torch.testing.assert_close(a, a.T)
    # re-posting one of them changes its own row only, and keeps it off the other new item
    together.set_item_text(new, base.text_emb[4].clone())
    s = together.components["item_knn"].sim.to_dense()
    assert s[new, new + 1] == 0 and s[new + 1, new] == 0
    torch.testing.assert_close(s[new + 1], a[new + 1])
    torch.testing.assert_close(s, s.T)


def test_without_text_neighbours_new_items_get_no_borrowed_evidence():
    base, knn, pop = _interest(cold_neighbours=0), _knn(), _pop()
    h = Hybrid(base, {"item_knn": knn, "popularity": pop}, {"item_knn": 1.0, "popularity": 1.0})
    h.add_items(base.text_emb[5:6].clone())
    assert pop.scores[-1] == 0 and knn.sim.to_dense()[-1].abs().sum() == 0 and knn.sim.shape[0] == N_ITEMS + 2


def test_save_and_load_round_trip_with_own_copies_of_the_components(tmp_path):
    base, knn, pop = _interest(), _knn(), _pop()
    h = Hybrid(base, {"item_knn": knn, "recent_popularity": pop}, {"item_knn": 2.0, "recent_popularity": 0.5})
    models = {"interest": base, "item_knn": knn, "recent_popularity": pop, "hybrid": h}
    artifacts.save(tmp_path, IDS, base.text_emb, models, {"dataset": "t"})
    loaded = artifacts.load_models(tmp_path)
    assert set(loaded) == set(models) and isinstance(loaded["hybrid"], Hybrid)
    assert loaded["hybrid"].weights == h.weights
    seq, ts = _batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded["hybrid"].score_all(seq, ts), h.score_all(seq, ts), rtol=0, atol=0)
    loaded["hybrid"].add_items(torch.randn(2, base.text_emb.shape[1]))
    assert loaded["item_knn"].sim.shape[0] == N_ITEMS + 1 and loaded["interest"].text_emb.shape[0] == N_ITEMS + 1
    assert loaded["hybrid"].components["item_knn"].sim.shape[0] == N_ITEMS + 3
    with pytest.raises(ValueError, match="missing"):
        artifacts.save(tmp_path / "x", IDS, base.text_emb, {"hybrid": h}, {"dataset": "t"})


def test_recommender_serves_the_hybrid_and_ranks_new_items_by_text(tmp_path):
    base, knn, pop = _interest(cold_neighbours=1), _knn(), _pop()
    h = Hybrid(base, {"item_knn": knn, "recent_popularity": pop}, {"item_knn": 1.0, "recent_popularity": 0.5})
    artifacts.save(tmp_path, IDS, base.text_emb, {"interest": base, "item_knn": knn, "recent_popularity": pop, "hybrid": h},
                   {"dataset": "t"})
    rec = Engine(tmp_path, "hybrid")
    assert rec.ranks_by_text
    hist, ts = ["i1", "i2"], [T0, T0 + 60]
    before = rec.recommend(hist, ts, k=N_ITEMS)
    twin = next(i for i in before.items if i["item_id"] not in hist)["item_id"]
    rec.upsert_items(["fresh"], ["Fresh"], base.text_emb[IDS.index(twin) + 1 : IDS.index(twin) + 2].clone())
    after = {i["item_id"]: i["score"] for i in rec.recommend(hist, ts, k=N_ITEMS + 1).items}
    assert after["fresh"] == pytest.approx(after[twin], abs=1e-5)
    assert len(rec.recommend(hist, ts).because) > 0


def _train_df() -> pd.DataFrame:
    t = pd.Timestamp("2024-01-01", tz="UTC")
    rows = [(f"u{u}", f"i{(u + j) % N_ITEMS + 1}", t + pd.Timedelta(hours=10 * u + j)) for u in range(8) for j in range(5)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


def _windows(n: int = 32):
    seq, ts, lab = [], [], []
    for s in range(n):
        run = [(s + j) % N_ITEMS + 1 for j in range(5)]
        seq.append(pad_left(np.array(run[:-1]), L))
        lab.append(pad_left(np.array(run[1:]), L))
        ts.append(pad_left(T0 + HOUR * np.arange(4), L))
    ts_ = np.stack(ts)
    return np.stack(seq), ts_, np.stack(lab), np.where(ts_ > 0, ts_ + HOUR, 0)


def test_fit_models_builds_the_hybrid_from_its_components_or_reuses_them():
    index = ItemIndex(tuple(IDS))
    tp = TrainParams(epochs=1, dim=16, max_len=L, n_layers=1, batch_size=16, hybrid_grid=(0.0, 1.0))
    assert with_components(("hybrid",), tp) == ("hybrid", "interest", "item_knn", "markov", "recent_popularity", "content")
    assert with_components(("sasrec",), tp) == ("sasrec",)
    valid = _eval_set([(u * 5) % N_ITEMS + 1 for u in range(N_ITEMS)])
    text = random_text_emb()
    models, fits = fit_models(("hybrid",), _train_df(), index, text, _windows(), valid, tp, "cpu")
    assert set(models) == {"hybrid", "interest", "item_knn", "markov", "recent_popularity", "content"}
    untrained = untrained_items(_train_df(), index)
    assert untrained and models["hybrid"].warmed == untrained  # the data leaves items out: the hybrid warms its own copies
    assert models["hybrid"].base is models["interest"] and models["hybrid"].components["item_knn"] is not models["item_knn"]
    plain, _ = fit_models(("hybrid",), _train_df(), index, text, None, valid, replace(tp, warm_untrained_items=False), "cpu",
                          prefitted=models)
    assert plain["hybrid"].components["item_knn"] is models["item_knn"] and plain["hybrid"].warmed == []
    assert torch.equal(models["item_knn"].sim.to_dense(), cooccurrence_similarity(_train_df(), index).to_dense())
    assert fits["hybrid"].best_valid == pytest.approx(evaluate_model(models["hybrid"], valid)["ndcg@10"], abs=1e-9)
    again, fits2 = fit_models(("hybrid",), _train_df(), index, text, None, valid, tp, "cpu", prefitted=models)
    assert set(again) == {"hybrid"} and set(fits2) == {"hybrid"}  # nothing retrained (no windows were even given)
    assert again["hybrid"].base is models["interest"]
    for bad in (("bert4rec",), ("hybrid",), ("sasrec",), ()):  # only models that can borrow rows for new items
        with pytest.raises(ValueError, match="train.hybrid_with"):
            fit_models(("hybrid",), _train_df(), index, text, None, valid, TrainParams(hybrid_with=bad), "cpu")


def test_score_and_explain_is_score_all_and_interest_weights_from_one_pass():
    torch.manual_seed(3)
    seq = torch.randint(1, N_ITEMS + 1, (3, L))
    seq[0, :2] = 0  # left padding
    ts = T0 + torch.arange(L).repeat(3, 1) * HOUR
    interest = _interest()
    hybrid = Hybrid(interest, {"item_knn": _knn(), "popularity": _pop()}, {"item_knn": 0.5, "popularity": 0.2})
    for model in (interest, hybrid):
        with torch.no_grad():
            scores, weights = model.score_and_explain(seq, ts)
            assert torch.equal(scores, model.score_all(seq, ts))
            assert torch.allclose(weights, model.interest_weights(seq, ts))
        assert torch.allclose(weights.sum(1), torch.ones(3), atol=1e-5) and float(weights[0, :2].abs().sum()) == 0.0


def test_above_the_grid_budget_coordinate_ascent_finds_the_oracle_and_matches_the_returned_model():
    base = _interest()
    targets, valid, oracle = _oracle_validation()

    class Scores(torch.nn.Module):  # fixed scores per validation user (users come in order)
        def __init__(self, s):
            super().__init__()
            self.s = s

        def score_all(self, seq, ts, now=None):
            return self.s[: len(seq)]

    parts = {"liar": Scores(1.0 - oracle), "noise": Scores(torch.rand(len(targets), N_ITEMS + 1, generator=torch.Generator().manual_seed(1))),
             "oracle": Scores(oracle)}
    cells = 27 * len(targets) * (N_ITEMS + 1)  # 3^3 combinations, each ranking every user's catalogue
    h, search = fit_hybrid(base, parts, valid, (0, 1, 5), k=10, max_cells=cells - 1)
    assert search["method"] == "coordinate ascent" and len(search["grid"]) < 27
    assert h.weights["oracle"] > 0 and h.weights["liar"] == 0
    assert search["valid_ndcg"] == pytest.approx(1.0)
    assert search["grid"][0]["weights"] == {"liar": 0.0, "noise": 0.0, "oracle": 0.0}  # it starts from the interest model alone
    assert evaluate_model(h, valid, 10)["ndcg@10"] == pytest.approx(search["valid_ndcg"], abs=1e-9)
    _, full = fit_hybrid(base, parts, valid, (0, 1, 5), k=10, max_cells=cells)
    assert full["method"] == "grid" and len(full["grid"]) == 27 and full["valid_ndcg"] == pytest.approx(1.0)


def test_a_one_value_grid_under_coordinate_ascent_is_the_interest_model_alone():
    base, knn, pop = _interest(), _knn(), _pop()
    valid = _eval_set([(u * 3) % N_ITEMS + 1 for u in range(N_ITEMS)])
    h, search = fit_hybrid(base, {"item_knn": knn, "popularity": pop}, valid, (0,), k=10, max_cells=0)
    assert search["method"] == "coordinate ascent" and h.weights == {"item_knn": 0.0, "popularity": 0.0}
    assert len(search["grid"]) == 1
