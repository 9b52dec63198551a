"""models.untrained: catalogue items no training event shows borrow their trained text neighbours'
rows (interest id rows; the hybrid's own component copies), and the saved hybrid does it again on load."""
from __future__ import annotations

import copy

import pandas as pd
import torch

from core.params import TrainParams
from models import artifacts
from models.baselines import item_knn, popularity
from models.data import ItemIndex
from models.hybrid import Hybrid
from models.interest import InterestModel
from models.settings import model_config
from models.untrained import trained_neighbours, untrained_items, warm_components, warm_interest
from tests.unit.helpers import padded_batch, random_text_emb

N_ITEMS, TEXT_DIM, L = 12, 8, 6
IDS = [f"i{k}" for k in range(1, N_ITEMS + 1)]
INDEX = ItemIndex(tuple(IDS))
UNTRAINED = [10, 11, 12]  # i10..i12: in the catalogue, in no training event
T0 = 1_700_000_000


def _train() -> pd.DataFrame:
    rows = [(f"u{u}", f"i{1 + (u + j) % 9}", T0 + 3600 * (10 * u + j)) for u in range(6) for j in range(5)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    return df


def _interest(text: torch.Tensor) -> InterestModel:
    torch.manual_seed(0)
    tp = TrainParams(dim=16, max_len=L, n_layers=1, n_heads=2, dropout=0.0, cold_neighbours=3)
    return InterestModel(model_config("interest", tp, N_ITEMS, TEXT_DIM), text).eval()


def test_untrained_items_are_the_catalogue_items_training_never_mentions():
    assert untrained_items(_train(), INDEX) == UNTRAINED


def test_neighbours_are_drawn_only_from_trained_items():
    model = _interest(random_text_emb(0, N_ITEMS))
    idx, w = trained_neighbours(model, UNTRAINED)
    assert idx.shape == (3, 3) and not set(idx.flatten().tolist()) & {0, *UNTRAINED}
    torch.testing.assert_close(w.sum(-1), torch.ones(3))


def test_warming_sets_only_untrained_id_rows_to_their_neighbours_mean():
    model = _interest(random_text_emb(0, N_ITEMS))
    before = model.id_emb.weight.detach().clone()
    warm_interest(model, UNTRAINED)
    after = model.id_emb.weight.detach()
    trained = [i for i in range(N_ITEMS + 1) if i not in UNTRAINED]
    assert torch.equal(after[trained], before[trained])
    idx, w = trained_neighbours(model, UNTRAINED)
    torch.testing.assert_close(after[UNTRAINED], (w.unsqueeze(-1) * before[idx]).sum(1))
    assert not torch.equal(after[UNTRAINED], before[UNTRAINED])


def test_warmed_hybrid_scores_untrained_items_and_comes_back_the_same_from_disk(tmp_path):
    train, text = _train(), random_text_emb(0, N_ITEMS)
    interest, knn, pop = _interest(text), item_knn(train, INDEX), popularity(train, INDEX)
    warm_interest(interest, UNTRAINED)
    plain = {"item_knn": knn, "popularity": pop}
    own = copy.deepcopy(plain)
    warm_components(interest, own, UNTRAINED)
    assert torch.all(knn.sim.to_dense()[UNTRAINED] == 0), "the component served alone stays the plain baseline"
    assert torch.all(own["item_knn"].sim.to_dense()[UNTRAINED].sum(1) > 0) and torch.all(own["popularity"].scores[UNTRAINED] > 0)
    hybrid = Hybrid(interest, own, {"item_knn": 1.0, "popularity": 0.5}).eval()
    hybrid.warmed = UNTRAINED
    out = tmp_path / "model"
    artifacts.save(out, IDS, text, {"interest": interest, **plain, "hybrid": hybrid}, {"models": ["hybrid"]})
    loaded = artifacts.load_models(out)["hybrid"]
    seq, ts = padded_batch([[1, 2, 3], [4, 5], [9]], L, T0)
    with torch.no_grad():
        torch.testing.assert_close(loaded.score_all(seq, ts), hybrid.score_all(seq, ts), rtol=0, atol=0)
        plain_hybrid = Hybrid(interest, plain, hybrid.weights).eval()
        lifted = hybrid.score_all(seq, ts)[:, UNTRAINED] > plain_hybrid.score_all(seq, ts)[:, UNTRAINED]
    assert lifted.all(), "borrowed rows lift the untrained items the plain components bury"
    assert loaded.warmed == UNTRAINED
