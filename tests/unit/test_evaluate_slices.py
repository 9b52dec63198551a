"""The `evaluate` stage's test slices (models.evaluate.run) on a tiny hand-made dataset: user counts
worked out by hand, every existing number unchanged, and the same slices and slice metrics as the
ranking benchmark's, both through models.slices.slice_masks and models.evaluate.slice_metrics."""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from models.protocols import split_for
from core.params import load_params
from models import artifacts, evaluate, slices
from models.baselines import item_knn, popularity
from models.data import ItemIndex, leave_one_out, train_interactions, user_sequences
from models.evaluate import evaluate_model, metrics_for, rank_targets, slice_metrics

IDS = [f"i{k}" for k in range(1, 9)]
CATEGORIES = [["a"], ["a"], ["a"], ["b"], ["b"], ["c"], ["c"], ["b"]]  # i1..i3: a, i4, i5, i8: b, i6, i7: c
T0 = 1_700_000_000
MAX_LEN = 5
K = 3
# training part (all but the last two events): i1, i2, i3, i4, i5, i8. Test targets: u1 i7 and u2 i6
# are cold (i6 is only ever a validation target, u4's, and that is not training); u3 i1, u4 i2, u5 i8
# are warm. Interest shift: u1 (a-history, c target), u2 (a/b-history, c target). u6 has too few
# events to be evaluated, and no training part.
SEQS = {
    "u1": ["i1", "i2", "i3", "i1", "i7"],
    "u2": ["i2", "i1", "i4", "i2", "i6"],
    "u3": ["i1", "i3", "i2", "i5", "i1"],
    "u4": ["i3", "i4", "i5", "i6", "i2"],
    "u5": ["i2", "i3", "i8", "i1", "i8"],
    "u6": ["i6", "i7"],
}
MODELS = ("popularity", "item_knn")


def _interactions() -> pd.DataFrame:
    rows = [(u, item, T0 + 3600 * (10 * n + j), "interaction", None)
            for n, (u, items) in enumerate(SEQS.items()) for j, item in enumerate(items)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "event", "value"])
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    df["value"] = df["value"].astype("float64")
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """params, interactions, the trained models and the report of `evaluate` run on them."""
    root = tmp_path_factory.mktemp("evaluate")
    (root / "params.yaml").write_text(yaml.safe_dump({
        "train": {"max_len": MAX_LEN, "out_dir": "artifacts/model"},
        "evaluate": {"k": K, "select_metric": f"ndcg@{K}", "out": "reports/metrics.json"},
    }))
    params = load_params(root / "params.yaml")
    inter = _interactions()
    raw = params.path(params.data.raw_dir)
    raw.mkdir(parents=True)
    inter.to_parquet(raw / "interactions.parquet", index=False)
    index, train = ItemIndex(tuple(IDS)), train_interactions(inter)
    models = {"popularity": popularity(train, index), "item_knn": item_knn(train, index)}
    artifacts.save(params.path(params.train.out_dir), IDS, torch.zeros(len(IDS) + 1, 4), models,
                   {"dataset": "synthetic", "data_version": "v1", "params_hash": "p1", "encoder": "none"}, categories=CATEGORIES)
    evaluate.run(params)
    return params, inter, models, json.loads(params.path(params.evaluate.out).read_text())


def test_test_slices_have_the_hand_counted_users(stage):
    _, inter, _, report = stage
    test = leave_one_out(user_sequences(inter, ItemIndex(tuple(IDS))), "test", MAX_LEN)
    assert len(test.targets) == 5  # u6 is not evaluated
    for name in MODELS:
        m = report["models"][name]
        assert set(m["test_slices"]) == {"cold_item", "interest_shift", "short_history"}
        users = {sl: v["users"] for sl, v in m["test_slices"].items()}
        assert all(0 <= c <= m["test"]["users"] == 5 for c in users.values())
        assert users == {"cold_item": 2, "interest_shift": 2, "short_history": 5}  # every history is 4 events long
        # the cold slice's users are the test targets that never occur in training
        never_trained = set(IDS) - set(train_interactions(inter)["item_id"])
        assert users["cold_item"] == sum(IDS[t - 1] in never_trained for t in test.targets)
        # a whole slice is the whole split
        assert m["test_slices"]["short_history"] == m["test"]
        # neither popularity nor item-kNN can rank an item no training event had: last among the
        # unseen, never in the top 3 of 8 items with 4 seen in the history
        assert m["test_slices"]["cold_item"][f"hr@{K}"] == 0.0


def test_existing_numbers_and_selection_unchanged(stage):
    """The stage only adds ``test_slices``: every split's numbers are evaluate_model's, and the
    model is still picked on validation."""
    params, inter, models, report = stage
    seqs = user_sequences(inter, ItemIndex(tuple(IDS)))
    for name, model in models.items():
        m = report["models"][name]
        assert set(m) == {"valid", "test", "valid_shift", "test_slices"}
        for split in ("valid", "test"):
            assert m[split] == evaluate_model(model, leave_one_out(seqs, split, MAX_LEN), K)
    valid = {n: report["models"][n]["valid"][f"ndcg@{K}"] for n in MODELS}
    assert report["selected"] == evaluate.select_model(
        {n: {"valid": report["models"][n]["valid"]} for n in MODELS}, f"ndcg@{K}", (), params.evaluate.stationary_tolerance)
    assert report["models"][report["selected"]]["valid"][f"ndcg@{K}"] >= (1 - params.evaluate.stationary_tolerance) * max(valid.values())


def test_compact_metrics_carry_the_selected_models_slice_ndcg(stage):
    params, _, _, report = stage
    compact = json.loads((params.path(params.tracking.metrics_dir) / "evaluate.json").read_text())
    sel = report["models"][report["selected"]]["test_slices"]
    assert compact[f"test_cold_item_ndcg@{K}"] == round(sel["cold_item"][f"ndcg@{K}"], 4)
    assert compact[f"test_interest_shift_ndcg@{K}"] == round(sel["interest_shift"][f"ndcg@{K}"], 4)
    assert not any("short_history" in key for key in compact)


def test_benchmark_and_stage_cut_and_measure_the_same_slices(stage):
    """The benchmark's leave-one-out split (models.protocols) slices its test users as the
    stage does, and its per-slice metrics are the stage's numbers."""
    params, inter, models, report = stage
    items = pd.DataFrame({"item_id": IDS, "categories": CATEGORIES})
    sp = split_for("loo", inter, items, torch.zeros(len(IDS) + 1, 4), params.train)
    masks = sp.test_masks()
    stage_masks = slices.slice_masks(sp.test, slices.trained_items(train_interactions(inter), sp.index), CATEGORIES)
    assert list(masks) == list(stage_masks)
    for sl in masks:
        np.testing.assert_array_equal(masks[sl], stage_masks[sl])
    for name, model in models.items():
        ranks, top = rank_targets(model, sp.test, K)  # as benchmarks.ranking._Run.fit_and_test ranks
        assert slice_metrics(ranks, top, masks, K, len(IDS)) == report["models"][name]["test_slices"]
        assert metrics_for(ranks, top, K, len(IDS)) == report["models"][name]["test"]


def test_a_slice_without_users_says_so():
    ranks, top = np.array([1, 4]), np.array([[1, 2, 3], [2, 3, 4]])
    out = slice_metrics(ranks, top, {"none": np.array([False, False]), "first": np.array([True, False])}, K, 8)
    assert out["none"] == {"users": 0}
    assert out["first"] == metrics_for(ranks[:1], top[:1], K, 8) and out["first"]["users"] == 1
    assert slice_metrics(ranks, top, {}, K, 8) == {}


def test_the_stage_logs_each_models_slice_ndcg(stage, caplog):
    params, *_ = stage
    with caplog.at_level(logging.INFO, logger="models.evaluate"):
        evaluate.run(params)
    lines = [r.getMessage() for r in caplog.records if "test slices ndcg@" in r.getMessage()]
    assert len(lines) == len(MODELS)
    assert all("cold_item" in line and "interest_shift" in line and "short_history" in line for line in lines)
