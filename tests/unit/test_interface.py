"""The one model interface (models/interface.py): every model class pulse builds satisfies it,
states its catalogue size, and grows it when items are added (issue 12)."""
from __future__ import annotations

from typing import Callable

import pandas as pd
import pytest
import torch
import torch.nn as nn

from models import baselines
from models.content import content
from models.data import ItemIndex
from models.evaluate import evaluate_model, n_items_of
from models.hybrid import Hybrid
from models.interface import Explainer, HybridComponent, ScoringModel, ServableModel, missing_members
from models.interest import InterestModel
from models.shift import RecentMajority, StaticProfile
from models.switch import GateConfig, SwitchGate
from tests.unit.helpers import N_ITEMS, TEXT_DIM, padded_batch, random_text_emb, tiny_config

INDEX = ItemIndex(tuple(f"i{k}" for k in range(1, N_ITEMS + 1)))


def _train() -> pd.DataFrame:
    """Eight users, each walking a few neighbouring items: every baseline has something to count."""
    rows = [(f"u{u}", f"i{(u + j) % N_ITEMS + 1}", pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=u * 10 + j))
            for u in range(8) for j in range(5)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]).assign(event="view", value=1.0)


def _interest(**kw) -> InterestModel:
    torch.manual_seed(0)
    return InterestModel(tiny_config(n_layers=1, **kw), random_text_emb()).eval()


def _components() -> dict[str, nn.Module]:
    train = _train()
    return {"item_knn": baselines.item_knn(train, INDEX), "markov": baselines.markov(train, INDEX),
            "recent_popularity": baselines.recent_popularity(train, INDEX, 1.0), "ease": baselines.ease(train, INDEX, 10.0),
            "content": content(random_text_emb())}


def _hybrid() -> Hybrid:
    return Hybrid(_interest(), _components(), {"item_knn": 1.0, "markov": 1.0, "recent_popularity": 0.5, "ease": 0.0,
                                               "content": 1.0}).eval()


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "popularity": lambda: baselines.popularity(_train(), INDEX),
    "recent_popularity": lambda: baselines.recent_popularity(_train(), INDEX, 1.0),
    "item_knn": lambda: baselines.item_knn(_train(), INDEX),
    "markov": lambda: baselines.markov(_train(), INDEX),
    "ease": lambda: baselines.ease(_train(), INDEX, 10.0),
    "content": lambda: content(random_text_emb()),
    "interest": _interest,
    "sasrec": lambda: _interest(use_text=False, use_time_decay=False, use_long_term=False),
    "interest_priors": lambda: _interest(use_transition=True, use_trend=True),
    "hybrid": _hybrid,
    "interest_switch": lambda: SwitchGate(_interest(), GateConfig(), "interest").eval(),
    "hybrid_switch": lambda: SwitchGate(_hybrid(), GateConfig(), "hybrid").eval(),
}


def _width(model: nn.Module, extra: int = 0) -> int:
    seq, ts = padded_batch([[1, 2, 3], [4, 5, 6, 7, N_ITEMS + extra]])
    with torch.no_grad():
        return model.score_all(seq, ts).shape[1]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_model_is_servable_and_states_its_catalogue(name):
    m = BUILDERS[name]()
    assert isinstance(m, ScoringModel) and isinstance(m, Explainer) and isinstance(m, ServableModel), missing_members(m, ServableModel)
    assert m.n_items == N_ITEMS == n_items_of(m)
    assert _width(m) - 1 == m.n_items


@pytest.mark.parametrize("name", list(BUILDERS))
def test_adding_items_grows_the_catalogue_and_the_scores(name):
    m = BUILDERS[name]()
    m.add_items(torch.randn(2, TEXT_DIM))
    assert m.n_items == N_ITEMS + 2 == n_items_of(m)
    assert _width(m, extra=2) - 1 == m.n_items  # a history may name the new items at once


def test_hybrid_components_can_lend_rows_to_new_items():
    for name, m in _components().items():
        assert isinstance(m, HybridComponent), (name, missing_members(m, HybridComponent))
    assert not isinstance(_interest(), HybridComponent)  # the base, not a component: it borrows id rows itself


class ScoresOnly(nn.Module):
    """A model with ``score_all`` and nothing else: what the evaluator used to size by guessing."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scores", torch.zeros(N_ITEMS + 1))

    def score_all(self, seq, ts, now=None):
        return self.scores.expand(len(seq), -1)


def test_the_evaluator_refuses_a_model_without_the_interface_by_name():
    assert missing_members(ScoresOnly(), ScoringModel) == ["add_items", "n_items"]
    with pytest.raises(TypeError, match=r"the evaluator needs a ScoringModel \(add_items, n_items missing on ScoresOnly\)"):
        n_items_of(ScoresOnly())
    with pytest.raises(TypeError, match="ScoringModel"):
        evaluate_model(ScoresOnly(), None)  # refused before any scoring


def test_the_shift_reference_rows_state_their_catalogue_too():
    """The shift benchmark's reference rows are replayed (``score_all`` only), never served."""
    text = random_text_emb()
    for m in (StaticProfile(text), RecentMajority(torch.arange(N_ITEMS + 1) % 3, torch.ones(N_ITEMS + 1))):
        assert _width(m) - 1 == m.n_items == N_ITEMS
        assert not isinstance(m, ScoringModel)  # no add_items: not evaluable by the evaluator, not servable


@pytest.mark.parametrize("name", list(BUILDERS))
def test_score_and_explain_is_score_all_and_interest_weights(name):
    """The one call /recommend makes gives what the two separate calls give, for every model."""
    m = BUILDERS[name]()
    seq, ts = padded_batch([[1, 2, 3], [4, 5, 6, 7, 8]])
    with torch.no_grad():
        scores, weights = m.score_and_explain(seq, ts)
        torch.testing.assert_close(scores, m.score_all(seq, ts))
        torch.testing.assert_close(weights, m.interest_weights(seq, ts))
