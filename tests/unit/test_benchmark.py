"""benchmarks.ranking: _aggregate as formulas, run_protocol end to end on a tiny synthetic dataset, markdown()."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from features.adapters.synthetic import generate
from core.params import Params, SyntheticParams, TrainParams
from core.schema import validate
from benchmarks.ranking import _aggregate, markdown, run_protocols

MODELS = ("popularity", "item_knn", "sasrec")
ABLATION = {"interest-no_long_term": {"use_long_term": False}}
SEEDS = [1, 2]
K = 10


# ---------------------------------------------------------------- _aggregate


def test_aggregate_mean_and_std_over_runs():
    runs = [
        {"all": {"hr@10": 0.2, "users": 10, "note": "x"}, "cold_item": {"users": 0}, "train_seconds": 1.0, "best_epoch": 3, "name": "a"},
        {"all": {"hr@10": 0.6, "users": 10, "note": "y"}, "cold_item": {"users": 0}, "train_seconds": 3.0, "best_epoch": 5, "name": "b"},
    ]
    agg = _aggregate(runs)
    assert set(agg) == {"all", "cold_item", "train_seconds", "best_epoch"}  # non-numeric leaves dropped
    assert agg["all"]["hr@10"]["mean"] == pytest.approx(0.4)
    assert agg["all"]["hr@10"]["std"] == pytest.approx(0.2)  # population std: sqrt(((0.2-0.4)^2 + (0.6-0.4)^2) / 2)
    assert agg["all"]["users"] == {"mean": 10.0, "std": 0.0}
    assert "note" not in agg["all"]
    assert agg["cold_item"] == {"users": {"mean": 0.0, "std": 0.0}}
    assert agg["train_seconds"] == {"mean": 2.0, "std": 1.0}
    assert agg["best_epoch"] == {"mean": 4.0, "std": 1.0}
    three = _aggregate([{"a": {"b": {"c": v}}} for v in (1.0, 2.0, 6.0)])
    assert three["a"]["b"]["c"]["mean"] == pytest.approx(3.0)
    assert three["a"]["b"]["c"]["std"] == pytest.approx(np.std([1.0, 2.0, 6.0]))
    assert _aggregate([{"x": 5}]) == {"x": {"mean": 5.0, "std": 0.0}}
    assert _aggregate([]) == {}


# ---------------------------------------------------------------- run_protocol


def run_protocol(params: Params, protocol: str, interactions, items, text_emb, models: tuple[str, ...], seeds: list[int],
                 ablations: dict[str, dict], device: str, **kw) -> dict:
    """One protocol of ``run_protocols``: what most tests here need."""
    return run_protocols(params, {protocol: ablations}, interactions, items, text_emb, models, seeds, device, **kw)[protocol]


@pytest.fixture(scope="module")
def bench():
    raw_int, raw_items, _ = generate(SyntheticParams(n_users=20, n_items=30, n_categories=4, events_per_user=15))
    v = validate(raw_int, raw_items)
    g = torch.Generator().manual_seed(0)
    text_emb = torch.randn(len(v.items) + 1, 8, generator=g)
    text_emb[0] = 0
    params = Params(train=TrainParams(epochs=1, dim=16, max_len=10, n_layers=1, batch_size=64, patience=1, device="cpu"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the function-scoped one
    try:
        protocols = {
            proto: run_protocol(params, proto, v.interactions, v.items, text_emb, MODELS, SEEDS, ABLATION, "cpu")
            for proto in ("loo", "temporal")
        }
    finally:
        torch.set_num_threads(n)
    return v, params, protocols


@pytest.mark.parametrize("proto", ["loo", "temporal"])
def test_run_protocol_structure(bench, proto):
    v, _, protocols = bench
    res = protocols[proto]
    assert set(res) == {"users", "slice_users", "models"}
    n_users = v.interactions["user_id"].nunique()
    assert 0 < res["users"] <= n_users
    if proto == "loo":
        assert res["users"] == n_users  # every synthetic user has >= 5 events
    assert set(res["slice_users"]) == {"cold_item", "interest_shift", "short_history"}
    assert all(0 <= c <= res["users"] for c in res["slice_users"].values())
    assert res["slice_users"]["short_history"] >= 1  # the lowest quartile is never empty
    assert list(res["models"]) == [*MODELS, *ABLATION]
    for name, m in res["models"].items():
        assert {"all", "cold_item", "interest_shift", "short_history", "train_seconds", "best_epoch"} <= set(m)
        for key in (f"hr@{K}", f"ndcg@{K}", "mrr", f"coverage@{K}", "users"):
            stat = m["all"][key]
            assert set(stat) == {"mean", "std"}, (name, key)
            assert np.isfinite(stat["mean"]) and stat["std"] >= 0
        assert m["all"]["users"] == {"mean": float(res["users"]), "std": 0.0}
        assert 0 <= m["all"][f"hr@{K}"]["mean"] <= 1
        assert m["all"][f"ndcg@{K}"]["mean"] <= m["all"][f"hr@{K}"]["mean"] + 1e-12
        for sl, count in res["slice_users"].items():
            assert m[sl]["users"]["mean"] == count
    # deterministic baselines: one fit serves every seed, so no spread at all
    for name in ("popularity", "item_knn"):
        m = res["models"][name]
        for sl in m:
            for key, stat in m[sl].items() if sl not in ("train_seconds", "best_epoch") else [(sl, m[sl])]:
                assert stat["std"] == 0.0, (name, sl, key)
        assert m["best_epoch"] == {"mean": 0.0, "std": 0.0}
    # neural models ran their single epoch for each seed
    for name in ("sasrec", "interest-no_long_term"):
        assert res["models"][name]["best_epoch"]["mean"] == 1.0


def test_run_protocol_neural_models_depend_on_the_seed(bench):
    _, _, protocols = bench
    # two seeds of a randomly initialised model: different scores, hence (almost surely) some spread in MRR
    stds = [protocols[p]["models"][n]["all"]["mrr"]["std"] for p in protocols for n in ("sasrec", "interest-no_long_term")]
    assert max(stds) > 0


def test_run_protocol_is_reproducible_for_a_seed(bench):
    v, params, protocols = bench
    g = torch.Generator().manual_seed(0)
    text_emb = torch.randn(len(v.items) + 1, 8, generator=g)
    text_emb[0] = 0
    again = run_protocol(params, "loo", v.interactions, v.items, text_emb, ("popularity", "sasrec"), SEEDS, {}, "cpu")
    for name in ("popularity", "sasrec"):
        a, b = again["models"][name]["all"], protocols["loo"]["models"][name]["all"]
        for key in (f"hr@{K}", f"ndcg@{K}", "mrr"):
            assert a[key]["mean"] == pytest.approx(b[key]["mean"], abs=1e-9)


# ---------------------------------------------------------------- markdown


def test_markdown_renders_a_row_per_model(bench):
    v, params, protocols = bench
    report = {"dataset": "synthetic", "command": "python -m benchmarks.ranking --seeds 2", "seeds": SEEDS, "device": "cpu",
              "n_users": int(v.interactions["user_id"].nunique()), "n_items": len(v.items), "n_interactions": len(v.interactions),
              "train_params": dataclasses.asdict(params.train), "protocols": protocols, "seconds": 12.3}
    md = markdown(report, K)
    lines = md.splitlines()
    assert lines[0] == "# Benchmark: synthetic"
    assert "## Leave-one-out, full ranking" in lines
    assert "## Global temporal split (cut-off at the 90th percentile)" in lines
    assert md.count(f"| model | HR@{K} | NDCG@{K} |") == 2
    names = [*MODELS, *ABLATION]
    for proto in ("loo", "temporal"):
        p = protocols[proto]
        start = lines.index("## Leave-one-out, full ranking" if proto == "loo" else "## Global temporal split (cut-off at the 90th percentile)")
        header = next(i for i in range(start, len(lines)) if lines[i].startswith("| model |"))
        rows = []
        for line in lines[header + 2 :]:
            if not line.startswith("|"):
                break
            rows.append(line)
        assert [r.split("|")[1].strip() for r in rows] == names
        for r in rows:
            cells = [c.strip() for c in r.strip("|").split("|")]
            assert len(cells) == 9
        pop = rows[0]
        hr = p["models"]["popularity"]["all"][f"hr@{K}"]
        assert f"{hr['mean']:.4f} ± 0.0000" in pop
        assert f"{p['users']} test users" in md
    # a protocol that was not run is left out
    only_loo = markdown({**report, "protocols": {"loo": protocols["loo"]}}, K)
    assert "temporal" not in only_loo and only_loo.count("| popularity |") == 1


# ---------------------------------------------------------------- resuming from the fit log


def test_fit_log_resume_reuses_finished_fits_and_only_those(bench, tmp_path, caplog):
    from benchmarks.fit_log import FitLog

    v, params, protocols = bench
    g = torch.Generator().manual_seed(0)
    text_emb = torch.randn(len(v.items) + 1, 8, generator=g)
    text_emb[0] = 0
    path = tmp_path / "fits.jsonl"
    first = run_protocol(params, "loo", v.interactions, v.items, text_emb, ("popularity", "sasrec"), [1], {}, "cpu",
                         fit_log=FitLog(path, "k1", resume=False))
    lines = path.read_text().splitlines()
    assert len(lines) == 2  # one line per fit
    with path.open("a") as f:
        f.write('{"torn')  # an interrupted append
    caplog.set_level("INFO", logger="benchmarks.ranking")
    resumed = run_protocol(params, "loo", v.interactions, v.items, text_emb, ("popularity", "sasrec"), [1], {}, "cpu",
                           fit_log=FitLog(path, "k1", resume=True))
    assert resumed == first
    assert caplog.text.count("from the fit log") == 2
    other = FitLog(path, "k2", resume=True)  # other settings: nothing is reused
    assert other.get("loo", "sasrec", 1) is None
    assert not FitLog(path, "k1", resume=False).done and not path.exists()  # a fresh run starts a new log


# ---------------------------------------------------------------- cold-item protocol


def test_cold_item_split_keeps_held_out_items_out_of_training(bench):
    from models.data import cold_item_split, item_index, user_sequences

    v, params, _ = bench
    ordered, n_warm, train_seqs, rows, test = cold_item_split(v.interactions, v.items, 10, fraction=0.5, seed=3)
    assert sorted(ordered["item_id"]) == sorted(v.items["item_id"]) and len(ordered) - n_warm == round(0.5 * len(v.items))
    cold_ids = set(ordered["item_id"].iloc[n_warm:])
    assert all(s.items.max(initial=0) <= n_warm for s in train_seqs.values())  # held-out items come last, never in training
    assert not set(rows["item_id"]) & cold_ids
    assert len(test.targets) > 0 and (test.targets > n_warm).all()
    full = user_sequences(v.interactions, item_index(ordered))
    for u, target, hl in zip(test.users, test.targets, test.hist_len):
        assert full[u].items[-1] == target and hl == len(full[u].items) - 1  # the whole history is the input
    # the baselines count every training event but the validation target (each sequence's last), as under leave-one-out
    per_user = rows.groupby("user_id").size()
    assert all(per_user.get(u, 0) == max(len(s.items) - 1, 0) for u, s in train_seqs.items())
    again = cold_item_split(v.interactions, v.items, 10, fraction=0.5, seed=3)[0]
    assert again["item_id"].tolist() == ordered["item_id"].tolist()


def test_cold_protocol_puts_every_target_in_the_cold_slice(bench):
    v, params, _ = bench
    g = torch.Generator().manual_seed(0)
    text_emb = torch.randn(len(v.items) + 1, 8, generator=g)
    text_emb[0] = 0
    res = run_protocol(params, "cold", v.interactions, v.items, text_emb, ("popularity", "sasrec", "interest"), [1], {}, "cpu")
    assert res["slice_users"]["cold_item"] == res["users"] > 0  # every target is cold
    assert res["models"]["popularity"]["all"][f"hr@{K}"]["mean"] == 0.0  # never seen: zero counts, ranked last
    assert res["models"]["sasrec"]["all"][f"hr@{K}"]["mean"] == 0.0  # id-only: an added item has a zero vector
    assert res["models"]["interest"]["all"]["coverage@10"]["mean"] > 0
    with pytest.raises(ValueError, match="unknown protocol"):
        run_protocol(params, "nope", v.interactions, v.items, text_emb, ("popularity",), [1], {}, "cpu")


def test_fit_key_ignores_the_base_seed_but_not_other_settings():
    """Seeds run as separate processes share one key, so their fit logs pool into one report."""
    from core.params import load_params
    from benchmarks.fit_log import fit_key

    base = load_params("params.yaml")
    assert fit_key("movielens-100k", base) == fit_key("movielens-100k", load_params("params.yaml", {"train.seed": 43}))
    assert fit_key("movielens-100k", base) != fit_key("movielens-100k", load_params("params.yaml", {"train.lr": 0.01}))
    assert fit_key("movielens-100k", base) != fit_key("movielens-1m", base)
    assert fit_key("movielens-100k", base) != fit_key("movielens-100k", load_params("params.yaml", {"encoder.max_length": 64}))
    # ease_lambdas came after fit logs existed: at its default it leaves the key as it was, else it counts
    assert fit_key("movielens-100k", base) != fit_key("movielens-100k", load_params("params.yaml", {"train.ease_lambdas": [10]}))
    import dataclasses as dc
    import hashlib
    import json

    from benchmarks.fit_log import PROTOCOLS_VERSION
    old = {k: v for k, v in dc.asdict(base.train).items() if k not in ("seed", "ease_lambdas")}
    assert fit_key("movielens-100k", base) == hashlib.md5(json.dumps(["movielens-100k", old, dc.asdict(base.encoder), PROTOCOLS_VERSION],
                                                                     sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- the hybrid


@pytest.mark.parametrize("proto", ["loo", "cold", "temporal"])
def test_hybrid_is_built_from_the_interest_model_of_its_seed_not_a_second_fit(bench, monkeypatch, proto):
    import models.fitting as fitting

    v, params, _ = bench
    g = torch.Generator().manual_seed(0)
    text_emb = torch.randn(len(v.items) + 1, 8, generator=g)
    text_emb[0] = 0
    fits: list[int] = []
    real = fitting.fit_interest

    def counting(cfg, *a, **kw):
        fits.append(cfg.use_text)
        return real(cfg, *a, **kw)

    monkeypatch.setattr(fitting, "fit_interest", counting)
    tp = dataclasses.replace(params.train, hybrid_grid=(0.0, 1.0), hybrid_with=("item_knn", "recent_popularity"))
    res = run_protocol(dataclasses.replace(params, train=tp), proto, v.interactions, v.items, text_emb,
                       ("hybrid", "interest", "item_knn", "recent_popularity"), SEEDS, {}, "cpu")
    assert fits == [True] * len(SEEDS)  # one interest fit per seed, shared by the hybrid
    assert list(res["models"]) == ["interest", "item_knn", "recent_popularity", "hybrid"]  # the hybrid comes last
    h, i = res["models"]["hybrid"], res["models"]["interest"]
    assert set(h["hybrid_weights"]) == {"item_knn", "recent_popularity"}
    assert h["train_seconds"]["mean"] >= i["train_seconds"]["mean"]  # its cost includes the interest model's
    report = {"dataset": "synthetic", "command": "c", "seeds": SEEDS, "device": "cpu", "n_users": 1, "n_items": 1,
              "n_interactions": 1, "protocols": {proto: res}, "seconds": 1.0}
    w = h["hybrid_weights"]
    assert (f"hybrid weights picked on validation, mean over seeds: item_knn {w['item_knn']['mean']:.2f}, "
            f"recent_popularity {w['recent_popularity']['mean']:.2f}") in markdown(report, K)
    if proto == "cold":  # the cold protocol runs end to end for the hybrid, on the same users
        assert h["all"]["users"]["mean"] == i["all"]["users"]["mean"] == res["users"]


def test_parallel_jobs_give_the_single_process_results(bench):
    """--jobs runs the seeds and ablation rows of every protocol in one pool of worker processes;
    the report of each protocol must not change."""
    v, params, protocols = bench
    g = torch.Generator().manual_seed(0)
    text_emb = torch.randn(len(v.items) + 1, 8, generator=g)
    text_emb[0] = 0
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        par = run_protocols(params, {"loo": ABLATION, "temporal": ABLATION}, v.interactions, v.items, text_emb, MODELS, SEEDS,
                            "cpu", jobs=2)
    finally:
        torch.set_num_threads(n)
    assert list(par) == ["loo", "temporal"]
    for proto, one in protocols.items():
        got = par[proto]
        assert list(got["models"]) == list(one["models"]) and got["slice_users"] == one["slice_users"]
        assert got["users"] == one["users"]
        for name in one["models"]:
            for key in (f"hr@{K}", f"ndcg@{K}", "mrr"):
                assert got["models"][name]["all"][key]["mean"] == pytest.approx(one["models"][name]["all"][key]["mean"], abs=1e-6), (proto, name, key)
                assert got["models"][name]["all"][key]["std"] == pytest.approx(one["models"][name]["all"][key]["std"], abs=1e-6), (proto, name, key)


def test_temporal_protocol_validates_one_level_down_and_refits_seed_free_models_for_the_test(bench):
    """Models train before the validation cut-off (the same split inside the pre-cut-off data); the
    test's popularity is refit on every event before the test cut-off."""
    from models.baselines import popularity
    from models.data import item_index, temporal_split
    from models.evaluate import evaluate_model

    v, params, protocols = bench
    index = item_index(v.items)
    cutoff, _, test = temporal_split(v.interactions, index, params.train.max_len)
    before = v.interactions[v.interactions["ts"] < cutoff]
    inner, _, valid = temporal_split(before, index, params.train.max_len)
    assert inner < cutoff and len(valid.targets) > 0
    want = evaluate_model(popularity(before, index), test, K)
    got = protocols["temporal"]["models"]["popularity"]["all"]
    assert got[f"ndcg@{K}"]["mean"] == pytest.approx(want[f"ndcg@{K}"], abs=1e-12)
    assert got["mrr"]["mean"] == pytest.approx(want["mrr"], abs=1e-12)
    stale = evaluate_model(popularity(before[before["ts"] < inner], index), test, K)
    assert stale["mrr"] != pytest.approx(want["mrr"], abs=1e-9)  # counting only up to the validation cut-off differs


def test_the_benchmark_command_runs_on_movielens_1m_files(tmp_path, monkeypatch):
    """MovieLens-1M's ratings.dat is not on this machine; the same command must still run on the
    release's file format (``::``-separated, latin-1 titles) and write the report and the table."""
    import json
    import sys
    from pathlib import Path

    from benchmarks import ranking as benchmark
    from tests.unit.helpers import write_tiny_bert

    ml = tmp_path / "data" / "ml-1m"
    ml.mkdir(parents=True)
    genres = ["Comedy", "Drama", "Action|Thriller", "Children's|Animation"]
    movies = [f"{i}::Movie {i} caf\xe9 ({1990 + i % 9})::{genres[i % 4]}" for i in range(1, 31)]
    (ml / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    rng = np.random.default_rng(0)
    t0, day = 956_703_932, 86_400  # the release's first day, 2000-04-25
    ratings = [f"{u}::{m}::{rng.integers(1, 6)}::{t0 + (4 * k + u % 4) * day + u}"
               for u in range(1, 26) for k, m in enumerate(rng.choice(np.arange(1, 31), size=14, replace=False))]
    (ml / "ratings.dat").write_text("\n".join(ratings) + "\n")
    bert = write_tiny_bert(tmp_path / "bert")
    out = tmp_path / "reports"
    sets = {"data.source_dir": str(tmp_path / "data"), "data.download": "false", "encoder.model_name": str(bert),
            "encoder.max_length": 32, "encoder.cache_dir": str(tmp_path / "emb"), "train.epochs": 1, "train.patience": 1,
            "train.dim": 16, "train.max_len": 10, "train.n_layers": 1, "train.batch_size": 64}
    argv = ["benchmarks.ranking", "--dataset", "movielens-1m", "--seeds", "1", "--protocols", "loo,temporal", "--no-ablations",
            "--params", str(Path(__file__).resolve().parents[2] / "params.yaml"), "--out", str(out)]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    monkeypatch.setattr(sys, "argv", argv)
    benchmark.main()

    report = json.loads((out / "benchmark-movielens-1m.json").read_text())
    assert (report["dataset"], report["n_items"], report["n_users"], report["n_interactions"]) == ("movielens-1m", 30, 25, 350)
    models = {"hybrid_switch", "interest_switch", "hybrid", "interest", "sasrec", "item_knn", "markov", "content", "popularity",
              "recent_popularity"}
    for proto in ("loo", "temporal"):
        assert set(report["protocols"][proto]["models"]) == models
        assert report["protocols"][proto]["users"] > 0
    assert report["protocols"]["loo"]["users"] == 25
    table = (out / "benchmark-movielens-1m.md").read_text()
    assert "## Leave-one-out, full ranking" in table and "## Global temporal split" in table
    assert all(f"| {m} |" in table for m in models)
    assert len((out / "benchmark-movielens-1m.fits.jsonl").read_text().splitlines()) == 2 * len(models)


def test_workers_stop_when_the_benchmark_process_dies(tmp_path):
    """--jobs workers must not train on for minutes after their parent was killed."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    pidfile = tmp_path / "worker.pid"
    script = tmp_path / "parent.py"
    script.write_text(f"""
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from benchmarks.ranking import exit_with_parent

def work(path):
    open(path + ".tmp", "w").write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(120)  # a long fit

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent,
                               initargs=(os.getpid(), 0.2))
    pool.submit(work, {str(pidfile)!r})
    while not os.path.exists({str(pidfile)!r}):
        time.sleep(0.1)
    os._exit(0)  # dies without shutting the pool down, as a killed process does
""")
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    pid = int(pidfile.read_text())

    def alive() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return False
        return state != "Z"  # a zombie has exited; its new parent reaps it

    deadline = time.time() + 30
    while alive() and time.time() < deadline:
        time.sleep(0.2)
    if alive():
        os.kill(pid, 9)
        raise AssertionError("the worker kept running after its parent died")


def test_ease_picks_its_regularisation_on_validation_and_is_refit_on_train_and_valid_for_the_loo_test(bench):
    """EASE under leave-one-out: λ from the grid by validation NDCG on the train-only fit, then the
    test model is the closed form on train + valid with that λ (as the peer EASE was measured)."""
    from models.baselines import ease
    from models.data import item_index, leave_one_out, train_interactions, user_sequences
    from models.evaluate import evaluate_model
    from models.fitting import fit_ease

    v, params, _ = bench
    tp = dataclasses.replace(params.train, ease_lambdas=(1.0, 30.0))
    params = dataclasses.replace(params, train=tp)
    got = run_protocol(params, "loo", v.interactions, v.items, torch.zeros(len(v.items) + 1, 2), ("ease",), [1], {}, "cpu")
    index = item_index(v.items)
    seqs = user_sequences(v.interactions, index)
    valid, test = leave_one_out(seqs, "valid", tp.max_len), leave_one_out(seqs, "test", tp.max_len)
    picked, _ = fit_ease(train_interactions(v.interactions), index, tp.ease_lambdas, valid, K)
    row = got["models"]["ease"]
    assert row["ease_lambda"]["mean"] == picked.lam
    train_valid = v.interactions[v.interactions.groupby("user_id", sort=False).cumcount(ascending=False) >= 1]
    want = evaluate_model(ease(train_valid, index, picked.lam), test, K)
    assert row["all"]["mrr"]["mean"] == pytest.approx(want["mrr"], abs=1e-12)
    train_only = evaluate_model(picked, test, K)
    assert train_only["mrr"] != pytest.approx(want["mrr"], abs=1e-9)  # the refit is not a no-op here
