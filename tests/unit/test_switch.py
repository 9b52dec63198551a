"""models.switch: the gate opens on evidence of a switch alone (no training), stays shut otherwise,
and its prior is fitted for both jobs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from models.data import EvalSet, pad_left
from models.gate_fit import fit_gate
from models.interface import ScoresThenWeights
from models.switch import GateConfig, SwitchGate, decayed_centroid, shift_back

N = 20  # items 1..10 are category A, 11..20 category B


class MajorityFollower(ScoresThenWeights, nn.Module):
    """A stand-in for a model trained on stationary data: it follows the majority of whatever it
    reads (scores = the share of each item's category in the sequence), with no notion of recency."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("text_emb", torch.cat([torch.zeros(1, 4), torch.randn(N, 4, generator=g)]))

    @property
    def n_items(self) -> int:  # the catalogue grows with add_items, as every model's does (models.interface)
        return len(self.text_emb) - 1

    def score_all(self, seq, ts, now=None):
        real = (seq > 0).float()
        share_b = ((seq > 10).float() * real).sum(1) / real.sum(1).clamp(min=1)  # (B,)
        is_b = (torch.arange(len(self.text_emb)) > 10).float()  # items added later count as B
        return 8.0 * (share_b.unsqueeze(1) * is_b + (1 - share_b).unsqueeze(1) * (1 - is_b))

    def interest_weights(self, seq, ts):
        w = (seq > 0).float()
        return w / w.sum(1, keepdim=True)

    def add_items(self, text_rows):
        self.text_emb = torch.cat([self.text_emb, text_rows])


def _history(n_a: int, n_b: int) -> tuple[torch.Tensor, torch.Tensor]:
    items = [1 + k % 10 for k in range(n_a)] + [11 + k % 10 for k in range(n_b)]
    return torch.tensor([items]), torch.arange(1, len(items) + 1).unsqueeze(0) * 3600


def _share_b(scores: torch.Tensor, k: int = 10) -> float:
    s = scores[0].clone()
    s[0] = float("-inf")
    return float((s.topk(k).indices > 10).float().mean())


def test_shift_back_drops_the_newest_entries_and_keeps_the_width():
    x = torch.tensor([[0, 1, 2, 3]])
    assert shift_back(x, 1).tolist() == [[0, 0, 1, 2]]
    assert shift_back(x, 0) is x


def test_decayed_centroid_is_the_decay_weighted_mean_of_unit_text_rows():
    text = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # unit rows, as SwitchGate passes them
    c = decayed_centroid(text, torch.tensor([[1, 2]]), half_life=1.0)  # weights 0.5 (older), 1 (newest)
    expected = torch.nn.functional.normalize(torch.tensor([[0.5, 1.0]]), dim=-1)
    assert torch.allclose(c, expected, atol=1e-6)


def test_the_base_model_alone_never_follows_a_late_switch():
    seq, ts = _history(40, 5)
    assert _share_b(MajorityFollower().score_all(seq, ts)) == 0.0


def test_the_gate_opens_on_a_few_events_of_a_new_interest_without_any_training():
    gate = SwitchGate(MajorityFollower(), GateConfig(prior=-2.0))
    seq, ts = _history(40, 3)
    experts, evidence, scores, _ = gate.switch_state(seq, ts)
    assert 1 - float(experts[0, 0]) > 0.5 and float(evidence[0].max()) > 2.0
    assert _share_b(scores) >= 0.5


def test_the_gate_stays_shut_for_a_user_who_keeps_their_interest():
    gate = SwitchGate(MajorityFollower(), GateConfig(prior=-2.0))
    seq, ts = _history(40, 0)
    experts, evidence, scores, _ = gate.switch_state(seq, ts)
    assert 1 - float(experts[0, 0]) < 0.2
    assert _share_b(scores) == 0.0


def test_a_shut_gate_gives_the_base_models_ranking():
    base = MajorityFollower()
    seq, ts = _history(30, 2)
    closed = SwitchGate(base, GateConfig(prior=-30.0, horizon=0)).score_all(seq, ts)
    assert torch.equal(closed[0, 1:].argsort(descending=True, stable=True), base.score_all(seq, ts)[0, 1:].argsort(descending=True, stable=True))


def test_interest_weights_move_to_the_recent_window_in_a_switch():
    gate = SwitchGate(MajorityFollower(), GateConfig(prior=-2.0, windows=(3,)))
    seq, ts = _history(40, 3)
    w = gate.interest_weights(seq, ts)[0]
    assert torch.isclose(w.sum(), torch.tensor(1.0), atol=1e-5)
    assert float(w[-3:].sum()) > 0.5  # the newest three behaviours explain most of the recommendation


def _evalset(rows: list[tuple[int, int, int]]) -> EvalSet:
    """(n_a, n_b, target) -> an evaluation set over _history sequences."""
    seqs, tss = zip(*(_history(a, b) for a, b, _ in rows))
    L = max(s.shape[1] for s in seqs)
    seq = np.stack([pad_left(s[0].numpy(), L) for s in seqs])
    ts = np.stack([pad_left(t[0].numpy(), L) for t in tss])
    return EvalSet([str(i) for i in range(len(rows))], seq, ts, np.array([t for *_, t in rows]), [np.unique(s[s > 0]) for s in seq],
                   ts[:, -1] + 3600)


def test_fit_gate_picks_the_best_shift_score_within_the_stationary_tolerance():
    valid = _evalset([(30, 0, 5), (25, 0, 7), (20, 1, 9)])      # stationary users (one noise event)
    shifted = _evalset([(30, 3, 18), (25, 4, 19), (20, 3, 17)])  # switched users: the next event is B
    gate, report = fit_gate(MajorityFollower(), valid, shifted, GateConfig(), "interest", tolerance=0.01)
    chosen = next(r for r in report["grid"] if r["prior"] == gate.cfg.prior)
    assert chosen["valid_ndcg"] >= 0.99 * report["base_valid_ndcg"]
    assert chosen["valid_shift_hr"] == max(r["valid_shift_hr"] for r in report["grid"] if r["valid_ndcg"] >= 0.99 * report["base_valid_ndcg"])
    assert report["valid_shift_hr"] > 0.5  # the gated model follows the spliced switches


def test_fit_gate_shuts_the_gate_when_every_opening_costs_the_stationary_users_too_much():
    # stationary users whose newest events look like a switch (4 B in a row) but who go back to A:
    # any prior the evidence can overcome costs them; only a prior below the largest possible
    # evidence (clip * sum of discounts = 20.8 here) keeps their ranking, and the fit must find it
    valid = _evalset([(30, 4, 5), (25, 4, 7), (20, 4, 9)])
    shifted = _evalset([(30, 4, 18), (25, 4, 19), (20, 4, 17)])
    gate, report = fit_gate(MajorityFollower(), valid, shifted, GateConfig(), "interest", tolerance=0.01)
    assert max(r["valid_ndcg"] for r in report["grid"] if r["prior"] >= -8) < 0.99 * report["base_valid_ndcg"]
    assert gate.cfg.prior <= -20.8
    assert report["valid_ndcg"] >= 0.99 * report["base_valid_ndcg"]


def test_the_category_mix_expert_follows_a_switch_to_any_category():
    cats = torch.zeros(N + 1, 2)
    cats[1:11, 0], cats[11:, 1] = 1.0, 1.0
    pop = torch.arange(N + 1, 0, -1).float()
    gate = SwitchGate(MajorityFollower(), GateConfig(prior=-2.0, windows=(3,), category_window=10), item_categories=cats, popularity=pop)
    assert gate.expert_names == ["recent 3", "category mix"]
    seq, ts = _history(40, 3)
    lp = gate._category(seq)
    assert float(lp[0, 11:].exp().sum()) > 0.6  # the decayed mix of the newest 10 is mostly B (2.2 of 3.3 weight)
    assert float(lp[0, 11]) > float(lp[0, 20])  # inside B, the more popular item first
    experts, _, scores, _ = gate.switch_state(seq, ts)
    assert 1 - float(experts[0, 0]) > 0.5 and _share_b(scores) >= 0.5


def test_a_gated_model_round_trips_through_the_artifact(tmp_path):
    from models import artifacts
    from models.interest import InterestModel
    from tests.unit.helpers import random_text_emb, tiny_config

    base = InterestModel(tiny_config(), random_text_emb()).eval()
    cats = torch.zeros(21, 2)
    cats[1:11, 0], cats[11:, 1] = 1.0, 1.0
    gate = SwitchGate(base, GateConfig(prior=-1.5, category_window=10), "interest", cats, torch.arange(21).float()).eval()
    artifacts.save(tmp_path, [f"i{k}" for k in range(20)], base.text_emb, {"interest": base, "interest_switch": gate}, {})
    loaded = artifacts.load_models(tmp_path)["interest_switch"]
    assert isinstance(loaded, SwitchGate) and loaded.cfg == gate.cfg and loaded.expert_names == gate.expert_names
    seq = torch.tensor([[0, 1, 2, 3, 12, 13]])
    ts = torch.arange(6).unsqueeze(0) * 3600
    assert torch.allclose(loaded.score_all(seq, ts), gate.score_all(seq, ts), atol=1e-5)


def test_items_added_after_training_stay_rankable_behind_the_gate():
    cats = torch.zeros(N + 1, 2)
    cats[1:11, 0], cats[11:, 1] = 1.0, 1.0
    gate = SwitchGate(MajorityFollower(), GateConfig(prior=-2.0, windows=(3,), category_window=10), item_categories=cats, popularity=torch.ones(N + 1))
    gate.add_items(torch.randn(2, 4))
    seq, ts = _history(10, 3)
    scores = gate.score_all(torch.cat([seq, torch.tensor([[N + 1]])], 1), torch.cat([ts, ts[:, -1:] + 60], 1))
    assert scores.shape == (1, N + 3) and torch.isfinite(scores[0, 1:]).all()


@pytest.mark.parametrize("frozen_long,windows", [(False, (2, 4)), (True, (2, 4)), (True, (2, 3))])  # (2, 3): 8 > 2 x 3, two calls
def test_one_forward_pass_and_the_chunked_passes_agree(monkeypatch, frozen_long, windows):
    """Serving scores the request, its evidence steps and every window in one batch; evaluation
    chunks them. Both must give the same mixture (padding is masked, positions count from the end)."""
    import models.switch as switch
    from models.interest import InterestModel
    from tests.unit.helpers import random_text_emb, tiny_config

    torch.manual_seed(0)
    gate = SwitchGate(InterestModel(tiny_config(), random_text_emb()).eval(), GateConfig(prior=0.0, windows=windows, horizon=3,
                                                                                          frozen_long=frozen_long))
    seq = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 15, 16, 17, 18]])
    ts = torch.arange(8).repeat(2, 1) * 3600 + (seq > 0) * 1_700_000_000
    one = gate.score_all(seq, ts)
    monkeypatch.setattr(switch, "STEP_ROWS", 1)  # every evidence row alone, the request apart
    assert torch.allclose(gate.score_all(seq, ts), one, atol=1e-4)


@pytest.mark.parametrize("frozen_long", [False, True])
def test_switch_state_explains_from_the_same_pass_as_two_separate_calls(frozen_long):
    """Serving takes scores and interest weights from one pass (``switch_state``); they must be
    those of ``score_all`` and ``interest_weights`` called apart."""
    from models.interest import InterestModel
    from tests.unit.helpers import random_text_emb, tiny_config

    torch.manual_seed(0)
    gate = SwitchGate(InterestModel(tiny_config(), random_text_emb()).eval(), GateConfig(prior=0.0, windows=(2, 4), horizon=3,
                                                                                          frozen_long=frozen_long))
    seq = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 15, 16, 17, 18]])
    ts = torch.arange(8).repeat(2, 1) * 3600 + (seq > 0) * 1_700_000_000
    with torch.no_grad():
        experts, _, scores, weights = gate.switch_state(seq, ts)
        assert torch.allclose(scores, gate.score_all(seq, ts), atol=1e-5)
        assert torch.allclose(weights, gate.interest_weights(seq, ts, experts), atol=1e-6)
        assert torch.allclose(weights.sum(1), torch.ones(2), atol=1e-5)
    # a base without score_and_explain still explains (through its interest_weights)
    plain = SwitchGate(MajorityFollower(), GateConfig(prior=0.0))
    s2, t2 = _history(10, 3)
    assert torch.allclose(plain.switch_state(s2, t2)[3].sum(1), torch.ones(1), atol=1e-5)


@pytest.mark.parametrize("windows", [(2, 4), (2, 3)])  # (2, 3): two calls, as a long history at serving
def test_the_likelihood_memo_scores_as_a_full_pass(windows):
    """Serving keeps each evidence likelihood across requests (``models.memo.LikelihoodMemo``): the
    same batch again, the users in another batch (another padding width), a user with one more
    event and a changed catalogue must all score as a gate that keeps nothing."""
    from models.interest import InterestModel
    from models.memo import LikelihoodMemo
    from tests.unit.helpers import random_text_emb, tiny_config

    torch.manual_seed(0)
    base = InterestModel(tiny_config(), random_text_emb()).eval()
    cfg = dict(prior=0.0, windows=windows, horizon=3, frozen_long=True)
    plain, kept = SwitchGate(base, GateConfig(**cfg)), SwitchGate(base, GateConfig(**cfg))
    kept.memo = LikelihoodMemo()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 15, 16, 17, 18]])
    ts = torch.arange(8).repeat(2, 1) * 3600 + (seq > 0) * 1_700_000_000

    def same(s, t):
        for a, b in zip(kept.switch_state(s, t), plain.switch_state(s, t)):
            assert torch.allclose(a, b, atol=1e-5)

    with torch.no_grad():
        same(seq, ts)
        held = len(kept.memo.table())
        assert held > 0
        same(seq, ts)  # all from the memo now
        assert len(kept.memo.table()) == held
        same(seq[:1, 2:], ts[:1, 2:])  # the first user alone, without its padding: the same keys
        assert len(kept.memo.table()) == held
        grown = torch.cat([seq[:, 1:], torch.tensor([[9], [19]])], 1)  # one more event each
        same(grown, torch.cat([ts[:, 1:], ts[:, -1:] + 600], 1))
        assert len(kept.memo.table()) > held
        kept.add_items(random_text_emb(seed=3, n=2)[1:])  # a changed catalogue: every kept likelihood is stale
        assert len(kept.memo.table()) == 0
        same(seq, ts)
