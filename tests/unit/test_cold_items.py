"""Items added after training (POST /items) are recommendable at once through their text."""
from __future__ import annotations


import pytest
import torch

from models import artifacts
from models.baselines import StaticScores
from models.inference import Engine
from models.interest import InterestConfig, InterestModel


@pytest.fixture()
def model_dir(tmp_path):
    torch.manual_seed(0)
    n, d = 12, 8
    text = torch.randn(n + 1, d)
    text[0] = 0
    cfg = InterestConfig(n_items=n, text_dim=d, dim=16, max_len=6, n_layers=1, n_heads=2, dropout=0.0)
    models = {"interest": InterestModel(cfg, text), "popularity": StaticScores(torch.arange(n + 1, dtype=torch.float32))}
    ids = [f"i{k}" for k in range(n)]
    artifacts.save(tmp_path, ids, text, models, {"dataset": "t"}, ids, [["a"]] * n)
    return tmp_path, text


def test_new_item_with_the_text_of_a_known_item_scores_like_it(model_dir):
    path, text = model_dir
    rec = Engine(path, "interest")
    # a twin: same text as i3
    new = rec.upsert_items(["twin"], ["Twin"], text[4:5].clone())
    assert new == ["twin"] and rec.ids[-1] == "twin"
    out = rec.recommend(["i1", "i2"], [1_700_000_000, 1_700_000_060], k=13, exclude_seen=True)
    got = {i["item_id"]: i["score"] for i in out.items}
    assert "twin" in got  # recommendable at once
    m = rec.model
    with torch.no_grad():
        v = m.item_vectors()
        borrowed = m.borrowed_id_rows(text[4:5])[0]
    # its text projection plus the id embedding borrowed from its text neighbours (its twin first)
    assert torch.allclose(v[-1], m.text_proj(text[4]) + borrowed, atol=1e-5)
    assert torch.allclose(m.cold_id[-1], borrowed)


def test_upsert_of_a_known_item_replaces_title_and_text(model_dir):
    path, text = model_dir
    rec = Engine(path, "interest")
    new = rec.upsert_items(["i0"], ["Renamed"], torch.zeros(1, text.shape[1]))
    assert new == [] and rec.titles[0] == "Renamed"
    assert torch.equal(rec.model.text_emb[1], torch.zeros(text.shape[1]))


def test_baselines_give_new_items_zero_scores(model_dir):
    path, text = model_dir
    rec = Engine(path, "popularity")
    rec.upsert_items(["fresh"], ["Fresh"], torch.randn(1, text.shape[1]))
    assert rec.model.scores[-1] == 0 and len(rec.model.scores) == 14
    cold = rec.recommend([], [], k=3)
    assert cold.cold_start and "fresh" not in [i["item_id"] for i in cold.items]


@pytest.mark.parametrize("name", ["interest", "popularity"])
def test_upserts_next_to_concurrent_recommends_never_fail(model_dir, name):
    """POST /items and POST /recommend run on different threads without a shared lock."""
    import threading

    path, text = model_dir
    rec = Engine(path, name)
    errors: list[BaseException] = []
    done = threading.Event()

    def reader(hist: list[str]) -> None:
        while not done.is_set():
            try:
                out = rec.recommend(hist, [1_700_000_000 + 60 * j for j in range(len(hist))], k=50)
                assert all(i["item_id"] in rec.ids for i in out.items)
            except BaseException as e:  # noqa: BLE001 - any failure is the finding
                errors.append(e)
                return

    threads = [threading.Thread(target=reader, args=(h,)) for h in (["i1", "i2"], [])]
    for t in threads:
        t.start()
    for j in range(200):
        rec.upsert_items([f"new{j}"], [f"New {j}"], torch.randn(1, text.shape[1]))
    done.set()
    for t in threads:
        t.join()
    assert not errors, repr(errors[0])
    assert len(rec.ids) == 12 + 200 and rec.pos["new199"] == 212
