"""Items in the catalogue that training never showed: warm them from their text neighbours.

Why: under leave-one-out an item whose only events are some users' last two is in the catalogue
but in no training window. Its id embedding is the initialisation, pushed down only as a softmax
negative, and item-kNN / EASE have an empty row for it, so the hybrid buries it (on Amazon
Scientific, 12 such items were the test target of 37 users, at a median rank near 3,600 of 4,385).
Items added after training (``POST /items``) already borrow their id rows and component rows from
their nearest *trained* items by text (``InterestModel.add_items``, ``Hybrid.add_items``); this
module does the same, at the end of training, for catalogue items the training data lacked.
Neighbours are drawn only from items training did show (a borrowed row of another untrained
item would be noise). ``train.warm_untrained_items`` switches it off.
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from models.data import ItemIndex
from models.interest import InterestModel


def untrained_items(train: pd.DataFrame, index: ItemIndex) -> list[int]:
    """Item indices (1-based, padding 0 excluded) of the catalogue that ``train`` never mentions."""
    seen = set(train["item_id"].unique())
    return [index.pos[i] for i in index.ids if i not in seen]


def trained_neighbours(base: InterestModel, items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``cold_neighbours`` most text-similar items among those training showed, for each of
    ``items``: indices (m, k) and cosine weights (m, k) summing to 1 (negative similarities count 0)."""
    n = base.cfg.n_items + 1
    text = F.normalize(base.text_emb[:n].float(), dim=-1)
    sims = text[torch.tensor(items)] @ text.T  # (m, n)
    sims[:, 0] = float("-inf")  # padding
    sims[:, items] = float("-inf")  # untrained: nothing to borrow
    k = min(base.cfg.cold_neighbours, n - 1 - len(items))
    top = sims.topk(k, dim=-1)
    w = top.values.clamp(min=0)
    return top.indices, w / w.sum(-1, keepdim=True).clamp(min=1e-8)


def can_warm(base: InterestModel) -> bool:
    """Only a model that reads text (neighbours) and has id rows (something to borrow) can."""
    return base.text_proj is not None and base.id_emb is not None and base.cfg.cold_neighbours > 0


@torch.no_grad()
def warm_interest(base: InterestModel, items: list[int]) -> None:
    """Each untrained item's id row becomes the weighted mean id row of its trained text neighbours."""
    if not items or not can_warm(base):
        return
    idx, w = trained_neighbours(base, items)
    weight = base.id_emb.weight
    weight[torch.tensor(items)] = (w.to(weight).unsqueeze(-1) * weight[idx]).sum(1)


@torch.no_grad()
def warm_components(base: InterestModel, components: dict[str, torch.nn.Module], items: list[int]) -> None:
    """Each hybrid component gives each untrained item the weighted rows of its trained text
    neighbours (``borrow_rows(..., at=item)``), in place: pass the hybrid's own copies, so that a
    component also served alone stays the plain baseline."""
    if not items or not can_warm(base):
        return
    idx, w = trained_neighbours(base, items)
    for m in components.values():
        for j, item in enumerate(items):
            m.borrow_rows(idx[j : j + 1], w[j : j + 1], at=item)
