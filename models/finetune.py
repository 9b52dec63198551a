"""Contrastive fine-tuning of the text encoder on what users consume next.

Positive pairs are (an item's text, the text of the item the same user consumed next) from the
training part of the sequences; the other pairs in the batch are the negatives (in-batch
InfoNCE, symmetric). The encoder learns that "things people watch after X" should sit near X,
which is what the interest model needs from item text, especially for cold items.
On CUDA the forward runs under bf16 autocast; on CPU, keep ``encoder.finetune_steps`` small.
"""
from __future__ import annotations

import logging
import random

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from models.encoder import TextEncoder, mean_pool

log = logging.getLogger(__name__)


def next_item_pairs(train: pd.DataFrame, items: pd.DataFrame, max_pairs: int, seed: int) -> list[tuple[str, str]]:
    """(text, next text) for consecutive, different items of each user's training sequence."""
    text = dict(zip(items["item_id"], items["text"]))
    pairs = []
    for _, g in train.groupby("user_id", sort=False):
        ids = g["item_id"].tolist()
        pairs += [(text[a], text[b]) for a, b in zip(ids, ids[1:]) if a != b and a in text and b in text and text[a] != text[b]]
    random.Random(seed).shuffle(pairs)
    return pairs[:max_pairs]


def _embed(enc: TextEncoder, texts: list[str]) -> torch.Tensor:
    tok = enc.tokenizer(texts, padding=True, truncation=True, max_length=enc.max_length, return_tensors="pt").to(enc.device)
    return F.normalize(mean_pool(enc.model(**tok).last_hidden_state, tok["attention_mask"]), dim=-1)


def finetune(enc: TextEncoder, pairs: list[tuple[str, str]], steps: int, batch_size: int = 32, lr: float = 2e-5,
             temperature: float = 0.05, seed: int = 0) -> list[float]:
    """In-batch InfoNCE for ``steps`` steps; returns the loss per step. Updates ``enc.model`` in place."""
    if len(pairs) < 2:
        raise ValueError("encoder fine-tuning needs at least 2 next-item pairs")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(enc.model.parameters(), lr=lr)
    use_amp = str(enc.device).startswith("cuda")
    enc.model.train()
    losses = []
    for _ in tqdm(range(steps), desc="finetune encoder", mininterval=2, disable=None):
        batch = rng.sample(pairs, min(batch_size, len(pairs)))
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
            a = _embed(enc, [p[0] for p in batch])
            b = _embed(enc, [p[1] for p in batch])
            logits = (a @ b.T).float() / temperature  # (B, B): the diagonal are the true next items
            target = torch.arange(len(batch), device=logits.device)
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    enc.model.eval()
    log.info("encoder fine-tuned for %d steps: loss %.3f -> %.3f", steps, losses[0], losses[-1])
    return losses
