"""Unit tests of models.metrics (full-ranking ranks and HR/NDCG/MRR) and models.evaluate.evaluate_model.

Expected values are formulas from the metric definitions (RecBole style).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.baselines import StaticScores
from models.data import EvalSet
from models.evaluate import evaluate_model, select_model
from models.metrics import mask_seen, metrics_from_ranks, seen_mask, target_ranks


def _ranks(scores, targets, exclude):
    r, masked = target_ranks(torch.tensor(scores, dtype=torch.float32), torch.tensor(targets), [np.array(e, dtype=np.int64) for e in exclude])
    return r.tolist(), masked


def test_mask_seen_masks_padding_and_each_rows_history_in_place():
    scores = torch.arange(12, dtype=torch.float32).view(2, 6)
    out = mask_seen(scores, [np.array([2, 2, 5]), []])  # repeats and an empty history are fine
    assert out is scores
    inf = float("-inf")
    assert scores.tolist() == [[inf, 1, inf, 3, 4, inf], [inf, 7, 8, 9, 10, 11]]
    one = torch.ones(4)  # the service's single user: a (1, N+1) view masks the vector itself
    mask_seen(one.unsqueeze(0), [[3]])
    assert one.tolist() == [inf, 1, 1, inf]


def test_plain_rank_counts_higher_scores():
    # items 1..5; target 3 has score 0.5, items 1 and 4 are higher
    r, _ = _ranks([[0.0, 0.9, 0.1, 0.5, 0.7, 0.2]], [3], [[]])
    assert r == [1 + 2]


def test_excluded_history_never_ahead_of_target():
    scores = [[0.0, 0.9, 0.1, 0.5, 0.7, 0.2]]
    r, masked = _ranks(scores, [3], [[1, 4]])
    assert r == [1]  # both higher-scored items are history
    assert torch.isinf(masked[0, [0, 1, 4]]).all() and (masked[0, [0, 1, 4]] < 0).all()
    assert masked[0, 2].item() == pytest.approx(0.1) and masked[0, 5].item() == pytest.approx(0.2)


def test_target_in_history_is_still_rankable():
    scores = [[0.0, 0.9, 0.1, 0.5, 0.7, 0.2]]
    # target 3 is itself in the history; it keeps its own score 0.5: only item 1 (0.9) is ahead
    r, _ = _ranks(scores, [3], [[3, 4]])
    assert r == [1 + 1]
    # a target that is in the history and would be last still gets a finite rank
    r2, _ = _ranks([[0.0, 0.9, 0.1, 0.5, 0.7, 0.2]], [2], [[2]])
    assert r2 == [1 + 4]  # 1, 3, 4, 5 have higher scores


def test_ties_broken_by_lower_index():
    const = [[0.0] + [1.0] * 6]  # constant scorer, items 1..6
    for target in range(1, 7):
        r, _ = _ranks(const, [target], [[]])
        assert r == [target]  # every lower-index item wins the tie
    # ties with excluded lower-index items do not count
    r, _ = _ranks(const, [4], [[1, 3]])
    assert r == [1 + 1]  # only item 2 is ahead
    # a lower-index item with a tie but a higher index one with a higher score
    r, _ = _ranks([[0.0, 0.3, 0.3, 0.3, 0.4]], [2], [[]])
    assert r == [1 + 1 + 1]  # item 1 (tie, lower index) and item 4 (higher score)


def test_padding_column_never_counted():
    r, masked = _ranks([[100.0, 0.1, 0.5, 0.2]], [2], [[]])
    assert r == [1]
    assert masked[0, 0].item() == float("-inf")
    # padding also not counted when scores tie with the target
    r, _ = _ranks([[1.0, 1.0, 1.0]], [1], [[]])
    assert r == [1]


def test_batch_rows_are_independent():
    scores = [[0.0, 0.9, 0.1, 0.5], [0.0, 0.9, 0.1, 0.5]]
    r, _ = _ranks(scores, [3, 3], [[1], []])
    assert r == [1, 2]


def test_metrics_from_ranks_formulas():
    k = 10
    m = metrics_from_ranks(np.array([1, 3, 11]), k)
    assert m[f"hr@{k}"] == pytest.approx(2 / 3)
    assert m[f"ndcg@{k}"] == pytest.approx((1 / math.log2(1 + 1) + 1 / math.log2(3 + 1) + 0) / 3)
    assert m[f"ndcg@{k}"] == pytest.approx((1 + 1 / math.log2(4) + 0) / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 11) / 3)
    # boundary: rank == k counts, rank k+1 does not
    m5 = metrics_from_ranks(np.array([5, 6]), 5)
    assert m5["hr@5"] == pytest.approx(1 / 2)
    assert m5["ndcg@5"] == pytest.approx((1 / math.log2(6) + 0) / 2)


def test_evaluate_model_with_static_scores():
    # items 1..5 with scores 5 > 4 > 3 > 2 > 1 (item 1 best)
    model = StaticScores(torch.tensor([0.0, 5.0, 4.0, 3.0, 2.0, 1.0]))
    data = EvalSet(
        users=["a", "b", "c"],
        seq=np.array([[0, 1], [0, 2], [4, 5]]),
        ts=np.zeros((3, 2), dtype=np.int64),
        targets=np.array([3, 1, 1]),
        exclude=[np.array([1]), np.array([2]), np.array([4, 5])],
        target_ts=np.zeros(3, dtype=np.int64),
    )
    k = 2
    out = evaluate_model(model, data, k=k, batch_size=2)  # two batches
    # a: 1 excluded -> order 2,3,... target 3 at rank 2; b: target 1 at rank 1; c: target 1 at rank 1
    ranks = np.array([2, 1, 1])
    assert out[f"hr@{k}"] == pytest.approx(1.0)
    assert out[f"ndcg@{k}"] == pytest.approx(np.mean(1 / np.log2(ranks + 1)))
    assert out["mrr"] == pytest.approx(np.mean(1 / ranks))
    # top-2: a -> {2, 3}, b -> {1, 3}, c -> {1, 2}: 3 distinct of 5 items
    assert out[f"coverage@{k}"] == pytest.approx(3 / 5)
    assert out["users"] == 3


def test_select_model_picks_the_best_validation_score_among_the_allowed():
    metrics = {"sasrec": {"valid": {"ndcg@10": 0.42}}, "interest": {"valid": {"ndcg@10": 0.41}},
               "popularity": {"valid": {"ndcg@10": 0.11}}}
    assert select_model(metrics, "ndcg@10") == "sasrec"
    assert select_model(metrics, "ndcg@10", ("interest", "popularity")) == "interest"
    with pytest.raises(ValueError, match="names none of the trained models"):
        select_model(metrics, "ndcg@10", ("bert4rec",))


def test_select_model_weighs_both_jobs_and_skips_degenerate_models():
    metrics = {
        "hybrid": {"valid": {"ndcg@10": 0.300}, "valid_shift": {"hr@10": 0.20}},
        "hybrid_switch": {"valid": {"ndcg@10": 0.297}, "valid_shift": {"hr@10": 0.45}},   # within 2%: the shift score decides
        "interest_switch": {"valid": {"ndcg@10": 0.250}, "valid_shift": {"hr@10": 0.60}},  # follows best, but 17% worse when stationary
        "bad_hybrid": {"valid": {"ndcg@10": 0.310}, "valid_shift": {"hr@10": 0.90}, "degenerate": "every hybrid weight is 0"},
    }
    assert select_model(metrics, "ndcg@10", tolerance=0.02, shift_key="hr@10") == "hybrid_switch"
    assert select_model(metrics, "ndcg@10") == "hybrid"  # stationary NDCG alone; a degenerate model never wins
    assert select_model(metrics, "ndcg@10", tolerance=0.2, shift_key="hr@10") == "interest_switch"


def test_a_hybrid_whose_weights_are_all_zero_is_marked_degenerate():
    from models.evaluate import degenerate
    from models.hybrid import Hybrid
    from models.interest import InterestModel
    from models.baselines import StaticScores
    from models.switch import GateConfig, SwitchGate
    from tests.unit.helpers import random_text_emb, tiny_config

    base = InterestModel(tiny_config(), random_text_emb())
    pop = StaticScores(torch.ones(21))
    zero = Hybrid(base, {"popularity": pop}, {"popularity": 0.0})
    assert "interest" in degenerate("hybrid", zero)
    assert "interest_switch" in degenerate("hybrid_switch", SwitchGate(zero, GateConfig(), "hybrid"))
    assert degenerate("hybrid", Hybrid(base, {"popularity": pop}, {"popularity": 1.0})) is None
    assert degenerate("interest", base) is None


def test_a_seen_mask_ranks_as_the_history_lists_do():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(6, 12, generator=g)
    scores[2, 5] = scores[2, 7]  # a tie, broken by index
    targets = torch.tensor([1, 5, 7, 11, 3, 2])
    exclude = [np.array([2, 3]), np.array([], dtype=np.int64), np.array([5, 5, 9]), np.array([11]), np.array([4]), np.array([1, 2, 3])]
    r_lists, s_lists = target_ranks(scores, targets, exclude)
    mask = seen_mask(scores, exclude)
    assert mask[:, 0].all() and mask[2, 5] and mask[2, 9] and not mask[1, 1:].any()
    r_mask, s_mask = target_ranks(scores, targets, mask)
    assert torch.equal(r_lists, r_mask) and torch.equal(s_lists, s_mask)
    want = mask_seen(scores.clone(), exclude)
    assert torch.equal(s_mask, want)
