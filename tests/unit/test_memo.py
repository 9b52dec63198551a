"""models.memo: item-side work kept between requests, recomputed whenever an input changes.

The interest model's item vectors are the case that matters: kept under no_grad (scoring), always
what a fresh computation gives after add_items, set_item_text, an optimizer step or load_state_dict,
and never kept with autograd on (training needs each step's graph)."""
from __future__ import annotations

import torch

from models.interest import InterestModel
from models.memo import TensorMemo
from tests.unit.helpers import random_text_emb, tiny_config


def _fresh(model: InterestModel) -> torch.Tensor:
    return type(model).item_vectors.__wrapped__(model)  # the computation itself, without the memo


def test_memo_reuses_until_an_input_is_replaced_or_changed_in_place():
    calls = []
    memo, x = TensorMemo(), torch.ones(3)

    def compute() -> torch.Tensor:
        calls.append(1)
        return x * 2

    with torch.no_grad():
        first = memo(compute, [x])
        assert memo(compute, [x]) is first and len(calls) == 1
        x.add_(1)  # in place: a new version
        assert torch.equal(memo(compute, [x]), torch.full((3,), 4.0)) and len(calls) == 2
        x = torch.zeros(3)  # another tensor
        assert torch.equal(memo(compute, [x]), torch.zeros(3)) and len(calls) == 3
    memo(compute, [x])
    memo(compute, [x])
    assert len(calls) == 5  # autograd on: computed every time


def test_item_vectors_are_kept_for_scoring_and_follow_every_change():
    torch.manual_seed(0)
    model = InterestModel(tiny_config(), random_text_emb(0)).eval()
    with torch.no_grad():
        kept = model.item_vectors()
        assert model.item_vectors() is kept
        model.add_items(random_text_emb(1)[1:3])
        assert torch.equal(model.item_vectors(), _fresh(model)) and len(model.item_vectors()) == len(kept) + 2
        model.set_item_text(len(kept), random_text_emb(2)[1])  # an added item: its text and its borrowed id row
        assert torch.equal(model.item_vectors(), _fresh(model))
        model.set_item_text(1, random_text_emb(3)[1])  # a trained item
        assert torch.equal(model.item_vectors(), _fresh(model))
    before = model.item_vectors().detach().clone()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = model.item_vectors().pow(2).sum()
    assert loss.requires_grad  # with autograd on, the vectors carry the graph
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = model.item_vectors()
        assert not torch.equal(after, before) and torch.equal(after, _fresh(model))
    torch.manual_seed(1)
    other = InterestModel(tiny_config(), random_text_emb(0)).eval()
    with torch.no_grad():
        kept = other.item_vectors()
        other.load_state_dict({k: v for k, v in model.state_dict().items() if k != "text_emb"}, strict=False)
        assert torch.equal(other.item_vectors(), _fresh(other)) and not torch.equal(other.item_vectors(), kept)
