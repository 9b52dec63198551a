"""models.artifacts save/load round trip, models.inference.Engine, and serving.batch.score_file."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.params import TrainParams
from models import artifacts
from models.baselines import ItemKNN, StaticScores, item_knn, markov, popularity
from models.content import content
from models.data import ItemIndex, pad_left
from models.inference import Engine
from models.interest import InterestModel
from models.settings import model_config
from models.trend import trend_table
from serving.batch import score_file
from tests.unit.helpers import padded_batch, random_text_emb

N_ITEMS, TEXT_DIM, L = 12, 8, 6
IDS = [f"i{k}" for k in range(1, N_ITEMS + 1)]
TITLES = [f"Title {k}" for k in range(1, N_ITEMS + 1)]
INDEX = ItemIndex(tuple(IDS))
T0 = 1_700_000_000


def _train() -> pd.DataFrame:
    """Distinct popularity counts: i1 x6, i2 x5, i3 x4, i4 x3, i5 x2, i6 x1; sequences for item-kNN."""
    rows = []
    for u in range(6):
        for j, item in enumerate(range(1, 7 - u)):
            rows.append((f"u{u}", f"i{item}", T0 + 3600 * (10 * u + j)))
    rows += [("u9", "i7", T0), ("u9", "i8", T0 + 60), ("u9", "i9", T0 + 120)]  # i7..i9 once each
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    return df


def _text_emb() -> torch.Tensor:
    return random_text_emb(0, N_ITEMS)


def _models() -> dict[str, torch.nn.Module]:
    train = _train()
    tp = TrainParams(dim=16, max_len=L, n_layers=1, n_heads=2, dropout=0.0, use_transition=True, use_trend=True)
    knn = item_knn(train, INDEX)
    torch.manual_seed(0)
    interest = InterestModel(model_config("interest", tp, N_ITEMS, TEXT_DIM), _text_emb(), knn.sim, trend_table(train, INDEX, 1))
    with torch.no_grad():  # non-default values so a parameter left at its init would show
        for p in interest.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sasrec = InterestModel(model_config("sasrec", tp, N_ITEMS, TEXT_DIM), _text_emb())
    return {"popularity": popularity(train, INDEX), "item_knn": knn, "markov": markov(train, INDEX), "interest": interest.eval(),
            "sasrec": sasrec.eval(), "content": content(_text_emb(), n_recent=2, decay=0.25, temp=10.0)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifact") / "model"
    models = _models()
    artifacts.save(out, IDS, _text_emb(), models, {"data_version": "abc", "models": sorted(models)}, TITLES)
    return out, models


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    return padded_batch([[1, 2, 3], [7, 8, 9, 10, 11, 12], [5], [2, 2, 4, 6]], L, T0)


# ---------------------------------------------------------------- artifacts


def test_save_load_round_trip_gives_identical_scores(saved):
    out, models = saved
    assert {p.name for p in out.iterdir()} >= {"items.json", "text_embeddings.safetensors", "baselines.safetensors",
                                               "item_knn.safetensors", "markov.safetensors", "interest.safetensors", "interest_config.json",
                                               "sasrec.safetensors", "sasrec_config.json", "meta.json"}
    loaded = artifacts.load_models(out)
    assert set(loaded) == set(models)
    assert isinstance(loaded["popularity"], StaticScores) and isinstance(loaded["item_knn"], ItemKNN)
    # two ItemKNN models, each in its own file with its own shape
    assert (loaded["item_knn"].n_recent, loaded["item_knn"].symmetric) == (5, True)
    assert (loaded["markov"].n_recent, loaded["markov"].decay, loaded["markov"].symmetric) == (2, 0.5, False)
    assert torch.equal(loaded["markov"].sim.to_dense(), models["markov"].sim.to_dense())
    # the content component: its settings in content.json, its vectors the artifact's text embeddings
    assert (loaded["content"].n_recent, loaded["content"].decay, loaded["content"].temp) == (2, 0.25, 10.0)
    assert torch.equal(loaded["content"].text, models["content"].text)
    assert isinstance(loaded["interest"], InterestModel) and isinstance(loaded["sasrec"], InterestModel)
    assert all(not m.training for m in loaded.values())
    assert loaded["interest"].cfg == models["interest"].cfg and loaded["sasrec"].cfg == models["sasrec"].cfg
    assert not loaded["sasrec"].cfg.use_text and loaded["interest"].cfg.use_text
    assert loaded["interest"].cfg.use_transition and torch.equal(loaded["interest"].transition.to_dense(), models["item_knn"].sim.to_dense())
    # the trend table is as long as the data's span in days: it must come back with its own size and start
    assert loaded["interest"].cfg.use_trend and loaded["interest"].trend.shape[0] > 1
    assert torch.equal(loaded["interest"].trend, models["interest"].trend)
    assert int(loaded["interest"].trend_start) == int(models["interest"].trend_start)
    seq, ts = _batch()
    now = ts[:, -1] + 86400
    with torch.no_grad():
        for name, m in models.items():
            torch.testing.assert_close(loaded[name].score_all(seq, ts), m.score_all(seq, ts), rtol=0, atol=0, msg=name)
            torch.testing.assert_close(loaded[name].score_all(seq, ts, now), m.score_all(seq, ts, now), rtol=0, atol=0, msg=name)
            torch.testing.assert_close(loaded[name].interest_weights(seq, ts), m.interest_weights(seq, ts), msg=name)
    # every weight came back (load_state_dict is non-strict because text_emb is stored once, separately)
    for name in ("interest", "sasrec"):
        a, b = loaded[name].state_dict(), models[name].state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    assert artifacts.load_item_ids(out) == IDS
    assert artifacts.load_item_titles(out) == TITLES
    assert artifacts.load_meta(out)["data_version"] == "abc"


# ---------------------------------------------------------------- Engine


@pytest.mark.parametrize("name", ["interest", "sasrec", "item_knn", "popularity"])
def test_recommend_basic_contract(saved, name):
    out, _ = saved
    rec = Engine(out, name)
    hist, ts = ["i3", "i1", "i5", "i2"], [T0, T0 + 60, T0 + 3600, T0 + 7200]
    r = rec.recommend(hist, ts, k=5)
    assert not r.cold_start
    assert len(r.items) == 5
    scores = [it["score"] for it in r.items]
    assert scores == sorted(scores, reverse=True)
    assert all(np.isfinite(scores))
    ids = [it["item_id"] for it in r.items]
    assert len(set(ids)) == 5 and not set(ids) & set(hist)  # seen items excluded by default
    assert all(it["title"] == TITLES[IDS.index(it["item_id"])] for it in r.items)
    assert 1 <= len(r.because) <= 3
    assert all(b["item_id"] in hist and 0.0 <= b["weight"] <= 1.0 for b in r.because)
    assert [b["weight"] for b in r.because] == sorted((b["weight"] for b in r.because), reverse=True)
    assert len({b["item_id"] for b in r.because}) == len(r.because)


def test_recommend_scores_match_the_model(saved):
    out, models = saved
    rec = Engine(out, "interest")
    hist = ["i4", "i9", "i2"]
    ts = [T0, T0 + 600, T0 + 7200]
    r = rec.recommend(hist, ts, k=N_ITEMS, exclude_seen=False)
    assert len(r.items) == N_ITEMS  # every item (padding never)
    seq = torch.tensor(pad_left(np.array([4, 9, 2]), L)).unsqueeze(0)
    t = torch.tensor(pad_left(np.array(ts), L)).unsqueeze(0)
    with torch.no_grad():
        expected = models["interest"].score_all(seq, t)[0, 1:]
        w = models["interest"].interest_weights(seq, t)[0, -3:]
    order = torch.argsort(expected, descending=True).add(1).tolist()
    assert [it["item_id"] for it in r.items] == [IDS[i - 1] for i in order]
    assert [it["score"] for it in r.items] == pytest.approx(expected[torch.tensor(order) - 1].tolist(), abs=1e-6)
    top_w = torch.argsort(w, descending=True).tolist()
    assert [b["item_id"] for b in r.because] == [hist[j] for j in top_w]
    assert sum(b["weight"] for b in r.because) == pytest.approx(1.0, abs=1e-3)  # 3 behaviours: all of the weight


def test_recommend_exclude_seen(saved):
    out, _ = saved
    rec = Engine(out, "popularity")
    hist, ts = ["i1", "i3"], [T0, T0 + 60]
    excl = [it["item_id"] for it in rec.recommend(hist, ts, k=3).items]
    assert excl == ["i2", "i4", "i5"]
    kept = [it["item_id"] for it in rec.recommend(hist, ts, k=4, exclude_seen=False).items]
    assert kept == ["i1", "i2", "i3", "i4"]  # seen items allowed, in popularity order
    # a history longer than max_len: behaviours older than the model's window are still "seen" (as in the
    # evaluation, which excludes the whole history); k is capped by what is left to recommend
    all_but = rec.recommend(IDS[:-2], [T0 + j for j in range(N_ITEMS - 2)], k=10)
    assert N_ITEMS - 2 > L
    assert sorted(it["item_id"] for it in all_but.items) == sorted(IDS[-2:])  # both unseen in train: a tie
    knn = Engine(out, "item_knn")
    r = knn.recommend(IDS[:8], [T0 + j for j in range(8)], k=10)
    assert sorted(it["item_id"] for it in r.items) == sorted(IDS[8:])


def test_recommend_ignores_unknown_history_ids(saved):
    out, _ = saved
    rec = Engine(out, "interest")
    clean = rec.recommend(["i4", "i7"], [T0 + 10, T0 + 20], k=6)
    noisy = rec.recommend(["nope", "i4", "zzz", "i7", ""], [T0, T0 + 10, T0 + 15, T0 + 20, T0 + 30], k=6)
    assert noisy.items == clean.items and noisy.because == clean.because
    assert not noisy.cold_start
    assert {b["item_id"] for b in noisy.because} <= {"i4", "i7"}


def test_recommend_keeps_only_the_newest_max_len_behaviours(saved):
    out, _ = saved
    rec = Engine(out, "interest")
    hist = [f"i{k}" for k in (1, 2, 3, 4, 5, 6, 7, 8)]
    ts = [T0 + 60 * j for j in range(len(hist))]
    long = rec.recommend(hist, ts, k=4, exclude_seen=False)
    short = rec.recommend(hist[-L:], ts[-L:], k=4, exclude_seen=False)
    assert long.items == short.items and long.because == short.because


@pytest.mark.parametrize("hist", [[], ["unknown1", "unknown2"]])
def test_empty_history_is_a_cold_start_in_popularity_order(saved, hist):
    out, _ = saved
    rec = Engine(out, "interest")
    r = rec.recommend(hist, [T0 + j for j in range(len(hist))], k=5)
    assert r.cold_start and r.because == []
    assert [it["item_id"] for it in r.items] == ["i1", "i2", "i3", "i4", "i5"]
    assert [it["score"] for it in r.items] == [6.0, 5.0, 4.0, 3.0, 2.0]
    assert rec.recommend(None, None, k=2).cold_start  # missing lists (an unknown user in the online store)


def test_unknown_model_name(saved):
    out, _ = saved
    with pytest.raises(ValueError, match="not in"):
        Engine(out, "bert4rec")


# ---------------------------------------------------------------- batch scoring


def test_score_file_one_output_line_per_input_line(saved, tmp_path):
    out, _ = saved
    rec = Engine(out, "interest")
    lines = [
        json.dumps({"user_id": "a", "history": ["i1", "i2"], "ts": [T0, T0 + 60]}),  # 1 ok
        json.dumps({"user_id": 7, "history": ["i3"]}),                                # 2 ok: ts optional, id made a string
        "",                                                                           # 3 blank: skipped
        "{not json",                                                                  # 4 malformed JSON
        json.dumps({"user_id": "b", "history": ["i1", "i2"], "ts": [T0]}),            # 5 history/ts length mismatch
        json.dumps({"history": ["i1"]}),                                              # 6 no user_id
        "   ",                                                                        # 7 blank
        json.dumps(["i1", "i2"]),                                                     # 8 valid JSON, not an object
        json.dumps({"user_id": "c", "history": [], "ts": []}),                        # 9 ok: cold start
        json.dumps({"user_id": "d", "history": ["i1"], "ts": ["soon"]}),              # 10 unparsable timestamp
    ]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(lines) + "\n")
    counts = score_file(rec, src, dst, k=3, batch_size=2)
    rows = [json.loads(x) for x in dst.read_text().splitlines()]
    assert len(rows) == sum(1 for x in lines if x.strip()) == 8
    assert counts == {"ok": 3, "error": 5}
    ok = [r for r in rows if "error" not in r]
    assert [r["user_id"] for r in ok] == ["a", "7", "c"]
    assert all(len(r["items"]) == 3 for r in ok)
    assert [r["cold_start"] for r in ok] == [False, False, True]
    assert not {"i1", "i2"} & {it["item_id"] for it in ok[0]["items"]}
    errors = {r["line"]: r["error"] for r in rows if "error" in r}
    assert sorted(errors) == [4, 5, 6, 8, 10]  # 1-based line numbers of the input file
    assert errors[4].startswith("JSONDecodeError")
    assert "different lengths" in errors[5]
    assert errors[6].startswith("KeyError")
    assert errors[8].startswith("TypeError")
    # output order follows input order
    assert [r.get("user_id", r.get("line")) for r in rows] == ["a", "7", 4, 5, 6, 8, "c", 10]


def test_only_a_model_with_text_ranks_items_known_by_text(saved):
    """/items tells the client whether its new items can be recommended now: only through a text projection."""
    out, _ = saved
    assert Engine(out, "interest").ranks_by_text is True
    for name in ("sasrec", "item_knn", "popularity"):
        assert Engine(out, name).ranks_by_text is False


@pytest.mark.parametrize("name", ["interest", "item_knn", "popularity"])
def test_recommend_many_gives_what_recommend_gives_one_at_a_time(saved, name):
    out, _ = saved
    rec = Engine(out, name)
    hists = [(["i3", "i1", "i5", "i2"], [T0, T0 + 60, T0 + 3600, T0 + 7200]), ([], []), (["i7"], [T0]),
             (["i2", "i9", "zzz", "i4", "i4", "i6", "i1", "i8", "i3"], [T0 + 60 * j for j in range(9)])]
    many = rec.recommend_many(hists, k=5, batch_size=2)
    assert len(many) == len(hists)
    for (h, t), r in zip(hists, many):
        one = rec.recommend(h, t, k=5)
        assert [i["item_id"] for i in r.items] == [i["item_id"] for i in one.items] and r.cold_start == one.cold_start
        assert np.allclose([i["score"] for i in r.items], [i["score"] for i in one.items], atol=1e-4)
        assert [b["item_id"] for b in r.because] == [b["item_id"] for b in one.because]


def test_recommend_many_of_a_gated_model_keeps_each_users_switch_view(saved):
    out, models = saved
    from models.switch import GateConfig, SwitchGate

    rec = Engine(out, "interest")
    rec.model = SwitchGate(models["interest"], GateConfig(prior=0.0, windows=(2, 3), horizon=3)).eval()
    hists = [(["i1", "i2", "i3", "i4", "i5"], [T0 + 60 * j for j in range(5)]), (["i9", "i8"], [T0, T0 + 60])]
    many = rec.recommend_many(hists, k=4)
    for (h, t), r in zip(hists, many):
        one = rec.recommend(h, t, k=4)
        assert [i["item_id"] for i in r.items] == [i["item_id"] for i in one.items]
        assert r.switch["recent_items"] == one.switch["recent_items"] and r.switch["expert"] == one.switch["expert"]
        assert abs(r.switch["gate"] - one.switch["gate"]) < 1e-3


def test_batched_requests_get_what_each_gets_alone(saved):
    """serving.scoring.recommend_all (the service's micro-batches): each ask's own top-k, k and
    switch view, equal to ``recommend`` one at a time up to float rounding."""
    from serving.scoring import Ask, recommend_all

    out, _ = saved
    rec = Engine(out, "interest")
    hists = [(["i3", "i1", "i5", "i2"], [T0, T0 + 60, T0 + 3600, T0 + 7200]), ([], []), (["i7"], [T0]),
             (["i2", "i9", "zzz", "i4", "i4", "i6", "i1", "i8", "i3"], [T0 + 60 * j for j in range(9)]), (["i1", "i4"], [T0, T0 + 5])]
    asks = [Ask(rec, h, t, k, seen) for (h, t), k, seen in zip(hists, [5, 5, 5, 3, 5], [True, True, True, True, False])]
    for a, r in zip(asks, recommend_all(asks)):
        one = rec.recommend(a.hist_item_ids, a.hist_ts, a.k, a.exclude_seen)
        assert [i["item_id"] for i in r.items] == [i["item_id"] for i in one.items] and r.cold_start == one.cold_start
        assert np.allclose([i["score"] for i in r.items], [i["score"] for i in one.items], atol=1e-4)
        assert [b["item_id"] for b in r.because] == [b["item_id"] for b in one.because]


def test_a_model_not_trained_again_leaves_no_file_behind(tmp_path):
    """Retraining without a model (dropped from train.models) must not leave its old file to be loaded and selected."""
    models = _models()
    artifacts.save(tmp_path, IDS, _text_emb(), models, {"models": sorted(models)}, TITLES)
    assert (tmp_path / "markov.safetensors").exists()
    fewer = {k: v for k, v in models.items() if k not in ("markov", "sasrec")}
    artifacts.save(tmp_path, IDS, _text_emb(), fewer, {"models": sorted(fewer)}, TITLES)
    assert not (tmp_path / "markov.safetensors").exists() and not (tmp_path / "sasrec_config.json").exists()
    assert set(artifacts.load_models(tmp_path)) == set(fewer)
