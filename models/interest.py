"""The pulse interest-weight model: time-aware attention over a user's recent behaviours.

Item vector  = projection of the item's text embedding (+ a learned id embedding, optional),
               so items nobody has consumed still get a vector.
Short-term   = causal self-attention whose logits are penalised by a learned decay on the
               elapsed time between behaviours (per head).
Long-term    = attention pooling over all past behaviours with its own learned time decay.
User vector  = gate * short + (1 - gate) * long; score = user . item for every item.
Interest weights = how much each past behaviour contributed: the gate-weighted mix of the last-layer attention
               row and the long-term pooling weights (used to explain).
Trend prior (optional) = a learned multiple of the item's log event count in the days before the moment of the
               request (models/trend.py), larger the longer the user has been away: a user back after months takes
               what everyone takes now, one mid-session follows their own sequence; training reads each target's moment.
Transition prior (optional) = a learned mix of the co-occurrence rows (sparse: models/sparse.py) of the last few
               behaviours, added to the scores: short-term "what follows what" evidence that a small-data
               transformer learns slowly, fixed from the training data; lag weights, scale learned.

Index 0 is padding everywhere; sequences are left-padded so the newest behaviour is last.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.dropout import BatchRows, SplitInvariantDropout
from models.memo import kept_until_changed
from models.sparse import CsrMatrix
from models.trend import day_rows


@dataclass
class InterestConfig:
    n_items: int                 # catalogue size (indices 1..n_items; 0 = padding)
    text_dim: int                # width of the text embeddings
    dim: int = 64                # model width
    max_len: int = 200           # behaviours attended over (defaults equal TrainParams': models/settings.py)
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    use_id_embedding: bool = True
    use_text: bool = True
    use_time_decay: bool = True
    use_long_term: bool = True
    use_position: bool = True
    use_transition: bool = False  # add a learned-weight item-to-item transition prior to the scores
    transition_recent: int = 5    # behaviours (newest first) whose transition rows feed the prior
    use_trend: bool = False       # add the learned trend prior: item counts in the days before the request (models/trend.py)
    block: str = "preln"          # preln (GPT-style) | sasrec (the SASRec paper's layer, as RecTools builds it)
    init: str = "normal"          # normal (N(0, 0.02) embeddings) | xavier (Xavier-normal on every matrix, as RecTools)
    gate_init: float = 0.0        # initial bias of the short/long gate (logit of the short-term share)
    cold_neighbours: int = 10     # items added after training borrow the id embedding of this many text neighbours (0: none)

    def to_dict(self) -> dict:
        return asdict(self)


def elapsed_hours(ts: torch.Tensor) -> torch.Tensor:
    """(B, L) unix seconds -> (B, L, L) log1p of hours from behaviour j to behaviour i (>= 0)."""
    dt = (ts.unsqueeze(2) - ts.unsqueeze(1)).clamp(min=0).float() / 3600.0
    return torch.log1p(dt)


class TimeAwareAttention(nn.Module):
    def __init__(self, cfg: InterestConfig, batch: BatchRows | None = None) -> None:
        super().__init__()
        self.n_heads, self.dim = cfg.n_heads, cfg.dim
        self.c_attn = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.c_proj = nn.Linear(cfg.dim, cfg.dim)
        self.drop = SplitInvariantDropout(cfg.dropout, batch)
        self.decay = nn.Parameter(torch.full((cfg.n_heads,), -2.0)) if cfg.use_time_decay else None

    def forward(self, x: torch.Tensor, logdt: torch.Tensor, mask: torch.Tensor,
                kv: torch.Tensor | None = None, last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``kv``: keys and values from another tensor than the queries (the SASRec layer's raw input).
        ``last``: only the newest position asks (scoring needs no other), output (B, 1, D)."""
        B, L, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=2)
        if kv is not None:
            w, b = self.c_attn.weight, self.c_attn.bias
            k, v = F.linear(kv, w[D:], b[D:]).split(D, dim=2)
        if last:
            q, logdt, mask = q[:, -1:], logdt[:, -1:], mask[:, -1:]
        Lq = q.shape[1]
        hs = D // self.n_heads
        q = q.reshape(B, Lq, self.n_heads, hs).transpose(1, 2)  # (B, nh, Lq, hs)
        k, v = (t.reshape(B, L, self.n_heads, hs).transpose(1, 2) for t in (k, v))  # (B, nh, L, hs)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, Lq, L)
        if self.decay is not None:
            att = att - F.softplus(self.decay).view(1, -1, 1, 1) * logdt.unsqueeze(1)
        att = att.masked_fill(~mask.unsqueeze(1), float("-inf")).softmax(-1)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(B, Lq, D)
        return self.c_proj(y), att


class Block(nn.Module):
    def __init__(self, cfg: InterestConfig, batch: BatchRows | None = None) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.attn = TimeAwareAttention(cfg, batch)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, 4 * cfg.dim), nn.GELU(), nn.Linear(4 * cfg.dim, cfg.dim), SplitInvariantDropout(cfg.dropout, batch))
        self.drop = SplitInvariantDropout(cfg.dropout, batch)

    def forward(self, x: torch.Tensor, logdt: torch.Tensor, mask: torch.Tensor, last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        a, att = self.attn(self.ln_1(x), logdt, mask, last=last)
        x = x[:, -a.shape[1]:] + self.drop(a)
        return x + self.mlp(self.ln_2(x)), att


class SASRecBlock(nn.Module):
    """The SASRec paper's layer as RecTools implements it (our check that the baseline is theirs):
    queries from LayerNorm(x) but keys and values from raw x, residuals taken from the normalised
    tensors, a d -> d ReLU feed-forward, dropout only on attention weights and the feed-forward."""

    def __init__(self, cfg: InterestConfig, batch: BatchRows | None = None) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.attn = TimeAwareAttention(cfg, batch)
        drop = lambda: SplitInvariantDropout(cfg.dropout, batch)  # noqa: E731
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.ReLU(), drop(), nn.Linear(cfg.dim, cfg.dim), drop())

    def forward(self, x: torch.Tensor, logdt: torch.Tensor, mask: torch.Tensor, last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.ln_1(x)
        a, att = self.attn(q, logdt, mask, kv=x, last=last)
        x = q[:, -a.shape[1]:] + a
        f = self.ln_2(x)
        return f + self.mlp(f), att


BLOCKS: dict[str, type[nn.Module]] = {"preln": Block, "sasrec": SASRecBlock}


class InterestModel(nn.Module):
    def __init__(self, cfg: InterestConfig, text_emb: torch.Tensor | None = None, transition: torch.Tensor | None = None,
                 trend: tuple[torch.Tensor, int] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.n_items + 1
        if cfg.use_trend:  # (days + 1, N+1) table and the unix second of its day 0, from the training events
            table, start = trend if trend is not None else (torch.zeros(1, n), 0)
            self.register_buffer("trend", table.float())
            self.register_buffer("trend_start", torch.tensor(int(start), dtype=torch.long))
            self.trend_scale = nn.Parameter(torch.tensor(0.5))  # weight of the trend for a user active just now
            self.trend_gap = nn.Parameter(torch.tensor(0.0))    # its change per log1p(hour) since the newest behaviour
        if cfg.use_transition:  # (N+1, N+1) item-to-item similarity from training sequences, row 0 empty; sparse
            self.transition = CsrMatrix.own(transition, n)
            self.transition_lag = nn.Parameter(torch.zeros(cfg.transition_recent))
            self.transition_scale = nn.Parameter(torch.tensor(1.0))
        # text embeddings are a frozen buffer (row 0 = padding); new items are appended at serving time
        self.register_buffer("text_emb", text_emb.float() if text_emb is not None else torch.zeros(n, cfg.text_dim))
        self.text_proj = nn.Linear(cfg.text_dim, cfg.dim) if cfg.use_text else None
        self.id_emb = nn.Embedding(n, cfg.dim, padding_idx=0) if cfg.use_id_embedding else None
        # id rows of items added after training (add_items), imputed from text neighbours; not saved: re-added at every load
        self.register_buffer("cold_id", torch.zeros(0, cfg.dim), persistent=False)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim) if cfg.use_position else None
        self.batch_rows = BatchRows()  # which rows of the global batch a training pass holds (data-parallel runs)
        self.drop = SplitInvariantDropout(cfg.dropout, self.batch_rows)
        if cfg.block not in BLOCKS:
            raise ValueError(f"unknown block {cfg.block!r}: expected one of {sorted(BLOCKS)}")
        if cfg.init not in ("normal", "xavier"):
            raise ValueError(f"unknown init {cfg.init!r}: expected normal or xavier")
        self.blocks = nn.ModuleList([BLOCKS[cfg.block](cfg, self.batch_rows) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.dim)
        if cfg.use_long_term:
            self.long_query = nn.Linear(cfg.dim, 1)
            self.long_decay = nn.Parameter(torch.tensor(-2.0))
            self.gate = nn.Linear(2 * cfg.dim, 1)
        if not (cfg.use_text or cfg.use_id_embedding):
            raise ValueError("the interest model needs text or id embeddings (or both)")
        # small init for every learned embedding: unit variance would drown the 0.02-scale item vectors (a popularity plateau)
        for emb in (self.id_emb, self.pos_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.02)
        if cfg.init == "xavier":
            for param in (p for p in self.parameters() if p.dim() > 1):
                nn.init.xavier_normal_(param)
        if cfg.use_long_term:
            # > 0 starts with the short-term interest leading: it rescued a one-switch synthetic set
            # from an early "dominant interest" plateau, but slowed MovieLens-100K (docs/benchmarks.md)
            nn.init.constant_(self.gate.bias, cfg.gate_init)

    @property
    def n_items(self) -> int:  # the catalogue now (models.interface): cfg.n_items trained, plus those added since
        return self.text_emb.shape[0] - 1

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        CsrMatrix.upgrade_state(state_dict, prefix + "transition")  # an artifact from before the sparse prior
        super()._load_from_state_dict(state_dict, prefix, *args)

    @kept_until_changed(lambda m: (m.text_emb, m.cold_id, *(p for x in (m.text_proj, m.id_emb) if x is not None for p in x.parameters())))
    def item_vectors(self) -> torch.Tensor:
        """(N+1, D) vectors of every item; row 0 (padding) is zero. Kept between requests (models/memo.py)."""
        text_emb = self.text_emb  # read once: add_items may swap in a longer one meanwhile (serving threads)
        parts = []
        if self.text_proj is not None:
            parts.append(self.text_proj(text_emb))
        if self.id_emb is not None:  # items added after training: imputed rows (cold_id), else none (text only)
            cold = self.cold_id  # read once, like text_emb; add_items grows text_emb first
            ids = torch.cat([self.id_emb.weight, cold])[: text_emb.shape[0]] if len(cold) else self.id_emb.weight
            parts.append(F.pad(ids, (0, 0, 0, text_emb.shape[0] - ids.shape[0])))
        v = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        return torch.cat([torch.zeros_like(v[:1]), v[1:]])  # padding row stays zero

    def encode(self, seq: torch.Tensor, ts: torch.Tensor, items: torch.Tensor | None = None,
               last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """seq, ts (B, L) -> user vectors at every position (B, L, D) and interest weights (B, L, L).

        ``last_only``: the newest position only, (B, 1, D) and (B, 1, L). Scoring and explaining
        need nothing else, and the last layer and the long-term pooling then cost one row, not L
        (validation after every epoch, and every /recommend)."""
        B, L = seq.shape
        items = self.item_vectors() if items is None else items
        x = items[seq]  # (B, L, D)
        if self.pos_emb is not None:  # position counted back from the newest behaviour
            x = x + self.pos_emb(torch.arange(L - 1, -1, -1, device=seq.device).clamp(max=self.cfg.max_len - 1))
        valid = seq > 0
        eye = torch.eye(L, dtype=torch.bool, device=seq.device)
        mask = (torch.tril(torch.ones(L, L, dtype=torch.bool, device=seq.device)) & valid.unsqueeze(1)) | eye  # (B, L, L)
        logdt = elapsed_hours(ts)
        h = self.drop(x)
        zero_padding = self.cfg.block == "sasrec"  # the SASRec layer re-zeroes padding before every block
        for i, block in enumerate(self.blocks):
            if zero_padding:
                h = h * valid[:, -h.shape[1]:].unsqueeze(-1)
            h, att = block(h, logdt, mask, last=last_only and i == len(self.blocks) - 1)
        if zero_padding:
            h = h * valid[:, -h.shape[1]:].unsqueeze(-1)
        short = self.ln_f(h)  # (B, L, D), or (B, 1, D) with last_only
        weights = att.mean(1)  # (B, L, L) last layer, heads averaged
        if not self.cfg.use_long_term:
            return short, weights
        rows = h.shape[1]  # the query positions: L, or the newest one
        logits = self.long_query(x).squeeze(-1).unsqueeze(1).expand(B, rows, L)  # (B, rows, L)
        if self.cfg.use_time_decay:  # the no-time-decay ablation ignores elapsed time here too
            logits = logits - F.softplus(self.long_decay) * logdt[:, -rows:]
        pool = logits.masked_fill(~mask[:, -rows:], float("-inf")).softmax(-1)
        long = pool @ x  # (B, L, D)
        g = torch.sigmoid(self.gate(torch.cat([short, long], -1)))  # (B, L, 1)
        return g * short + (1 - g) * long, g * weights + (1 - g) * pool

    def transition_prior(self, seq: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(n, N+1) prior at the positions ``keep`` (B, L bool): the lag-weighted sum of the
        transition rows of the behaviours at lags 0..m-1 before (and including) each position."""
        w = self.transition_lag.softmax(0)
        out = 0.0
        for lag in range(self.cfg.transition_recent):
            prev = F.pad(seq, (lag, 0))[:, : seq.shape[1]]  # behaviour `lag` steps back (0 = padding)
            out = out + w[lag] * self.transition.rows(prev[keep])
        return self.transition_scale * out

    def trend_prior(self, now: torch.Tensor | None, newest: torch.Tensor) -> torch.Tensor:
        """(n, N+1) trend prior of n requests at the moments ``now`` (unix seconds; None: after all
        known data, as the service asks) from users whose newest behaviour is at ``newest``."""
        table = self.trend
        if now is None:  # the newest window, no time away
            return self.trend_scale * table[-1:].expand(len(newest), -1)
        away = torch.log1p((now - newest).clamp(min=0).float() / 3600.0)
        return (self.trend_scale + self.trend_gap * away).unsqueeze(-1) * table[day_rows(now, self.trend_start, len(table))]

    def _scores(self, user: torch.Tensor, items: torch.Tensor, seq: torch.Tensor, keep: torch.Tensor,
                now: torch.Tensor | None, newest: torch.Tensor) -> torch.Tensor:
        logits = user @ items.T
        # items appended at serving time (add_items) may be ahead of a prior: no transitions or counts yet
        if self.cfg.use_transition:
            prior = self.transition_prior(seq, keep)
            logits = logits + F.pad(prior, (0, logits.shape[1] - prior.shape[1]))
        if self.cfg.use_trend:
            prior = self.trend_prior(now, newest)
            logits = logits + F.pad(prior, (0, logits.shape[1] - prior.shape[1]))
        return logits

    def loss(self, seq: torch.Tensor, ts: torch.Tensor, labels: torch.Tensor, label_ts: torch.Tensor | None = None) -> torch.Tensor:
        """Full-catalogue softmax cross-entropy at every position whose label is an item (> 0).
        ``label_ts``: the labels' own moments, the request times the trend prior reads."""
        if self.cfg.use_trend and label_ts is None:
            raise ValueError("the trend prior needs the labels' timestamps (label_ts)")
        items = self.item_vectors()
        user, _ = self.encode(seq, ts, items)
        keep = labels > 0
        now = label_ts[keep] if label_ts is not None else None
        logits = self._scores(user[keep], items, seq, keep, now, ts[keep])  # (n, N+1)
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, labels[keep])

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N+1) scores of every item for the newest position of each sequence, requested at
        ``now`` (B,) unix seconds (None: after all known data, at the newest behaviour)."""
        return self.score_and_explain(seq, ts, now)[0]

    def score_and_explain(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(``score_all``, ``interest_weights``) from one encoder pass: serving needs both per request."""
        items = self.item_vectors()
        user, w = self.encode(seq, ts, items, last_only=True)
        last = torch.zeros_like(seq, dtype=torch.bool)
        last[:, -1] = True
        return self._scores(user[:, -1], items, seq, last, now, ts[:, -1]), w[:, -1]

    @torch.no_grad()
    def set_trend(self, table: torch.Tensor, start: int) -> None:
        """Swap in a trend table counted over newer events (no retraining: the table is data)."""
        self.trend = F.pad(table.to(self.trend), (0, self.trend.shape[1] - table.shape[1]))  # items added since: no counts
        self.trend_start = torch.tensor(int(start), dtype=torch.long, device=self.trend.device)

    def add_items(self, text_rows: torch.Tensor, neighbours: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Append items known only by their text (cold items): they score through the text projection plus an
        id embedding borrowed from their nearest trained items by text (and have no transitions yet). Without
        the borrowed part a cold item lacks the id half of every trained item's vector and ranks far below
        items of the same kind. ``neighbours``: their ``text_neighbours``, when the caller (the hybrid) has them."""
        text_rows = text_rows.to(self.text_emb)
        self.text_emb = torch.cat([self.text_emb, text_rows])
        if self.id_emb is not None and self.text_proj is not None and self.cfg.cold_neighbours > 0:
            self.cold_id = torch.cat([self.cold_id, self.borrowed_id_rows(text_rows, neighbours)])
        if self.cfg.use_transition:
            self.transition = self.transition.padded(len(text_rows))
        if self.cfg.use_trend:
            self.trend = F.pad(self.trend, (0, len(text_rows)))

    @torch.no_grad()
    def set_item_text(self, index: int, text_row: torch.Tensor, neighbours: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Replace one item's text vector; an item added after training also re-borrows its id row."""
        self.text_emb[index] = text_row.to(self.text_emb)
        cold = index - self.id_emb.weight.shape[0] if self.id_emb is not None else -1
        if 0 <= cold < len(self.cold_id):
            self.cold_id[cold] = self.borrowed_id_rows(self.text_emb[index : index + 1], neighbours)[0]

    @torch.no_grad()
    def text_neighbours(self, text_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``cold_neighbours`` most text-similar trained items of each new item: item indices
        (m, k) and cosine weights (m, k) summing to 1 (negative similarities count 0)."""
        trained = self.cfg.n_items + 1
        known = F.normalize(self.text_emb[1:trained], dim=-1)
        k = min(self.cfg.cold_neighbours, known.shape[0])
        sims = F.normalize(text_rows.to(known), dim=-1) @ known.T  # (m, trained - 1)
        top = sims.topk(k, dim=-1)
        w = top.values.clamp(min=0)
        return 1 + top.indices, w / w.sum(-1, keepdim=True).clamp(min=1e-8)

    @torch.no_grad()
    def borrowed_id_rows(self, text_rows: torch.Tensor, neighbours: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(m, D) id rows for new items: the weighted mean id embedding of their text neighbours."""
        idx, w = neighbours if neighbours is not None else self.text_neighbours(text_rows)
        return (w.unsqueeze(-1) * self.id_emb.weight[idx]).sum(1)

    def interest_weights(self, seq: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        """(B, L) weight of each past behaviour in the newest user vector (sums to 1)."""
        return self.encode(seq, ts, last_only=True)[1][:, -1]
