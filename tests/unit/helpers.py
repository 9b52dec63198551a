"""Small shared test helpers: the tiny interest-model setup, padded batches, event frames, a tiny
BERT, and a Feast repo built from the project's own definitions (with its module guard)."""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from features import store, transforms
from models.data import pad_left
from models.interest import InterestConfig

N_ITEMS, TEXT_DIM, DIM, L = 20, 8, 16, 8
HOUR = 3600
T0 = 1_700_000_000


def tiny_config(**kw) -> InterestConfig:
    """A model small enough to train for a few hundred steps in a unit test."""
    base = dict(n_items=N_ITEMS, text_dim=TEXT_DIM, dim=DIM, max_len=L, n_layers=2, n_heads=2, dropout=0.0)
    base.update(kw)
    return InterestConfig(**base)


def random_text_emb(seed: int = 0, n: int = N_ITEMS) -> torch.Tensor:
    """(n+1, TEXT_DIM) random 'text embeddings', row 0 (padding) zero."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n + 1, TEXT_DIM, generator=g)
    emb[0] = 0
    return emb


def padded_batch(seqs: list[list[int]], length: int = L, t0: int = T0, step: int = HOUR) -> tuple[torch.Tensor, torch.Tensor]:
    """(seq, ts) of left-padded histories, one behaviour every ``step`` seconds from ``t0``."""
    seq = torch.tensor(np.stack([pad_left(np.array(s), length) for s in seqs]))
    ts = torch.tensor(np.stack([pad_left(t0 + step * np.arange(len(s)), length) for s in seqs]))
    return seq, ts


def events_frame(rows: list[tuple[str, str, pd.Timestamp]]) -> pd.DataFrame:
    """Canonical interactions (UTC ``ts``, event "view", value 1.0) from (user, item, time) rows."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "ts": pd.to_datetime([r[2] for r in rows], utc=True).astype("datetime64[ns, UTC]"),
            "event": "view",
            "value": 1.0,
        }
    )


BERT_HIDDEN = 32
BERT_TEXTS = ["a funny movie about love", "the dark war film", "space story", "a funny movie about love"]
WORDS = ["the", "a", "movie", "film", "about", "love", "war", "space", "funny", "dark", "story", "of", "and", "##s", "##ing"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tiny_bert(path: Path, texts: list[str] | None = None, hidden: int = 32) -> Path:
    """A randomly initialised 2-layer BERT and its WordPiece tokenizer, saved where
    ``encoder.model_name`` can point: the tests never download a model. ``texts``, when given,
    must be covered by the tiny vocabulary (no [UNK])."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS) + "\n")
    # transformers 5 builds the WordPiece tokenizer from a vocab mapping (a `vocab_file=` kwarg is ignored)
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab.read_text().split())}, do_lower_case=True)
    if texts:
        ids = tok(texts)["input_ids"]
        assert all(tok.unk_token_id not in row for row in ids), "the tiny vocab must cover the test texts"
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(SPECIAL) + len(WORDS), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    BertModel(cfg).eval().save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


EOS = "<|endoftext|>"


def write_tiny_decoder(path: Path, arch: str = "gpt2", hidden: int = 32) -> Path:
    """A randomly initialised 1-layer decoder (``gpt2``: absolute positions, or ``llama``: rotary)
    and a word-level tokenizer with an eos token but no pad token, as LLM tokenizers ship: the
    encoder must pad with eos. Built offline, vocabulary ``WORDS`` (covers ``BERT_TEXTS``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate([EOS, "[UNK]"] + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, unk_token="[UNK]")
    torch.manual_seed(0)
    if arch == "gpt2":
        model = GPT2Model(GPT2Config(vocab_size=len(vocab), n_layer=1, n_embd=hidden, n_head=2, n_positions=64,
                                     bos_token_id=0, eos_token_id=0))
    else:
        model = LlamaModel(LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                       bos_token_id=0, eos_token_id=0, pad_token_id=None))
    model.eval().save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


REPO_SRC = Path(__file__).resolve().parents[2] / "features" / "repo"


def build_feast_repo(repo: Path, inter: pd.DataFrame, items: pd.DataFrame, history_len: int, short_half_life_days: float,
                     long_half_life_days: float, recent_days: float) -> tuple[list[str], pd.DataFrame]:
    """A copy of the project's Feast repo at ``repo`` with the offline sources of ``inter`` written
    and applied (not materialized); returns the applied names and the user_behaviour timeline."""
    repo.mkdir(parents=True)
    for f in list(REPO_SRC.glob("*.py")) + [REPO_SRC / "feature_store.yaml"]:
        shutil.copy(f, repo / f.name)
    timeline = transforms.user_behaviour_timeline(inter, items, transforms.category_vocabulary(items), history_len,
                                                  short_half_life_days, long_half_life_days)
    profile = transforms.item_profile(inter, items, inter["ts"].max(), recent_days=recent_days)
    paths = store.write_offline(repo, timeline, profile)
    assert all(p.exists() and p.is_relative_to(repo) for p in paths.values())
    return store.apply_repo(repo), timeline



def locked_appends_from_threads(log, n_threads: int, per_thread: int, event) -> list[BaseException]:  # noqa: ANN001
    """Each of ``n_threads`` threads appends ``event(t, k)`` for k < ``per_thread`` under the
    log's lock, all starting together; the errors raised in any thread (none expected). One body
    for the file log's and the Redis stream log's "appends never interleave" tests."""
    import threading

    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def writer(t: int) -> None:
        try:
            start.wait()
            for k in range(per_thread):
                with log.locked():
                    log.append([event(t, k)])
        except BaseException as e:  # noqa: BLE001 - surfaced by the caller
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return errors


class DictOnlineStore:
    """An online store of dict rows behind the interface the service's writers use (``read``,
    ``write``, ``write_lock``): counts its writes, and fails them with ``fail`` (a full disk)."""

    shared = False

    def __init__(self, fail: bool = False) -> None:
        self.rows: dict[str, dict] = {}
        self.writes, self.fail = 0, fail

    @contextlib.contextmanager
    def write_lock(self):  # noqa: ANN201
        yield

    def read(self, users: list[str]) -> list[dict]:
        return [dict(self.rows.get(u, {})) for u in users]

    def write(self, rows: list[dict]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.writes += 1
        self.rows.update({r["user_id"]: r for r in rows})
