"""Contrastive fine-tuning of the text encoder on what users consume next, with sentence-transformers.

Positive pairs are (an item's text, the text of the item the same user consumed next) from the
training part of the sequences only (never a validation or test event); the other pairs in the
batch are the negatives (in-batch InfoNCE, symmetric). The encoder learns that "things people
watch after X" should sit near X, which is what the interest model needs from item text,
especially for cold items.

The loss, optimiser loop, mixed precision and batching are sentence-transformers' rather than a
hand-written loop: a ``SentenceTransformer`` made of the modules that reproduce ``TextEncoder``
exactly (Transformer on the same weights, max length and padding, the same Pooling, Normalize)
is trained by ``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss`` in its
symmetric form, and the ``NoDuplicatesBatchSampler`` keeps a text from being its own false
negative within a batch.
The Transformer module holds the encoder's own ``AutoModel`` (shared, not copied), so the
weights are updated in place and ``TextEncoder(save_to)`` loads the result as before.
On CUDA the trainer runs in bf16 mixed precision; on CPU, keep ``encoder.finetune_steps`` small.
"""
from __future__ import annotations

import logging
import random
import tempfile
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm.auto import tqdm

from models.encoder import TextEncoder, resolve_model_path

if TYPE_CHECKING:  # heavy imports (datasets, accelerate) only when fine-tuning runs
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


def next_item_pairs(train: pd.DataFrame, items: pd.DataFrame, max_pairs: int, seed: int) -> list[tuple[str, str]]:
    """(text, next text) for consecutive, different items of each user's training sequence.

    ``train`` must be the training interactions only (``models.data.train_interactions``): a pair
    built from a user's last events would teach the encoder the validation/test targets.
    """
    text = dict(zip(items["item_id"], items["text"]))
    pairs = []
    for _, g in train.groupby("user_id", sort=False):
        ids = g["item_id"].tolist()
        pairs += [(text[a], text[b]) for a, b in zip(ids, ids[1:]) if a != b and a in text and b in text and text[a] != text[b]]
    random.Random(seed).shuffle(pairs)
    return pairs[:max_pairs]


# TextEncoder's pooling -> sentence-transformers' Pooling mode with the same rule
ST_POOLING = {"mean": "mean", "cls": "cls", "last_token": "lasttoken"}


def sentence_transformer(enc: TextEncoder) -> SentenceTransformer:
    """``enc`` as a SentenceTransformer: same tokenizer, padding and max length, same pooling, L2 norm.

    The Transformer module is loaded from the same path, then given ``enc.model`` itself, so
    training it trains the encoder (no second copy of the weights is kept). Its own tokenizer
    gets ``enc``'s pad token and padding side (a decoder tokenizer pads with eos, see
    ``models.encoder.ensure_pad_token``), or last-token vectors would differ.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(resolve_model_path(enc.model_name), max_seq_length=enc.max_length)
    transformer.model = enc.model
    transformer.tokenizer.pad_token = enc.tokenizer.pad_token
    transformer.tokenizer.padding_side = enc.tokenizer.padding_side
    pooling = Pooling(enc.dim, pooling_mode=ST_POOLING[enc.pooling])
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], device=str(enc.device))


def _loss_recorder(steps: int) -> Any:
    """A TrainerCallback that keeps every logged step loss and shows one progress bar."""
    from transformers import TrainerCallback

    class StepLosses(TrainerCallback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.bar = tqdm(total=steps, desc="finetune encoder", mininterval=2, disable=None)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))
                self.bar.update(1)

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self.bar.close()

    return StepLosses()


def _trainer_class() -> type:
    """SentenceTransformerTrainer without its model-card callback: the card is never written (the
    artifact is the AutoModel folder), and building it samples and tokenises the training texts."""
    from sentence_transformers import SentenceTransformerTrainer

    class Trainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            pass

    return Trainer


def finetune(enc: TextEncoder, pairs: list[tuple[str, str]], steps: int, batch_size: int = 32, lr: float = 2e-5,
             temperature: float = 0.05, seed: int = 0) -> list[float]:
    """Symmetric in-batch InfoNCE for ``steps`` steps; returns the loss per step.

    Updates ``enc.model`` in place and leaves it in eval mode. The optimiser matches the former
    hand-written loop (AdamW, weight decay 0.01, constant learning rate); the trainer adds
    gradient clipping at norm 1. Nothing is written to disk: checkpoints are off and the
    trainer's output folder is a temporary one.
    """
    if len(pairs) < 2:
        raise ValueError("encoder fine-tuning needs at least 2 next-item pairs")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import PrinterCallback, ProgressCallback

    model = sentence_transformer(enc)
    # MultipleNegativesSymmetricRankingLoss is deprecated in sentence-transformers 6 in favour of
    # this form: anchor->positive and positive->anchor softmaxes, averaged (scale = 1/temperature).
    loss = MultipleNegativesRankingLoss(model, scale=1.0 / temperature, directions=("query_to_doc", "doc_to_query"),
                                        partition_mode="per_direction")
    data = Dataset.from_dict({"anchor": [p[0] for p in pairs], "positive": [p[1] for p in pairs]})
    on_cuda = str(enc.device).startswith("cuda")
    recorder = _loss_recorder(steps)
    with tempfile.TemporaryDirectory(prefix="pulse-finetune-") as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr,
            weight_decay=0.01, lr_scheduler_type="constant", seed=seed, data_seed=seed,
            bf16=on_cuda, use_cpu=str(enc.device) == "cpu", dataloader_pin_memory=on_cuda,
            eval_strategy="no", save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=True,
            batch_sampler=BatchSamplers.NO_DUPLICATES,
        )
        trainer = _trainer_class()(model=model, args=args, train_dataset=data, loss=loss, callbacks=[recorder])
        for noisy in (PrinterCallback, ProgressCallback):  # they print every step's log dict
            trainer.remove_callback(noisy)
        trainer.train()
    enc.model.eval()
    losses = recorder.losses
    log.info("encoder fine-tuned for %d steps: loss %.3f -> %.3f", len(losses), losses[0], losses[-1])
    return losses
