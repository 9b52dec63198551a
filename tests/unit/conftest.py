"""Unit-test defaults shared by every module."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.helpers import BERT_HIDDEN, BERT_TEXTS, write_tiny_bert, write_tiny_decoder


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and spinning OpenMP threads crawl on a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny random BERT (``helpers.write_tiny_bert``) whose vocabulary covers ``BERT_TEXTS``."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), BERT_TEXTS, BERT_HIDDEN)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A tiny random GPT-2 whose tokenizer has no pad token (``helpers.write_tiny_decoder``)."""
    return write_tiny_decoder(tmp_path_factory.mktemp("tiny_gpt2"), "gpt2")
