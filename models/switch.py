"""Following a change of interest that the training data never showed: a training-free
short-term state and a switch gate around any trained model.

A sequence model trained on stationary histories learns to follow the majority of whatever it
reads: with 200 behaviours of one interest, ten new ones never win. Nothing in its weights says
"the user has just changed". So the gate does not learn *that*; it measures it, per request,
with the classic Bayesian answer to "did the source change?", a mixture of experts that read
different spans of the history, weighted by how well each predicted what the user just did:

    long expert   L   = the trained model on the whole history (what it learned)
    short experts S_w = the same model on the newest w behaviours only, for each w in
                        ``windows`` (3 reacts within events; 10 holds a switch once it has
                        lasted), optionally times a training-free text prior: the cosine of every
                        item's text to the decayed mean text embedding of those behaviours
                        (``interest <- decay * interest + (1 - decay) * item``, decay per event)
                  C   = when items have categories, a training-free expert: the per-event decayed
                        category mix of the newest behaviours (the online ``cat_share_recent``)
                        times each item's share of its category's training events
    evidence      E_w = sum over the newest ``horizon`` events t of discount**(t-1) *
                        clip(dead-zone(log p_S_w(event_t) - log p_L(event_t))): how much better
                        S_w predicted what the user actually did, from what came before each
                        event (ratios within ``margin`` nats count 0: noise); with ``frozen_long``
                        p_L reads the history before the horizon only, the old interest as it
                        stood: a model that learned "what follows what" (item-kNN) otherwise
                        absorbs the new events, the evidence fades, the gate shuts too early
    weights           softmax over experts of (0 for L, prior - log(#windows) + E_w for S_w)
    prediction    p   = the weighted sum of the experts' next-item distributions
    gate          g   = the total weight of the short experts: the user is in a switch when g >= 0.5

A user who keeps their interest is predicted best by the long expert, so every E_w < 0 and the
trained model answers alone. Two or three events of a new, coherent interest are predicted far
better by a short expert, its E_w jumps, and the recommendations follow within those events,
whatever the kind of change. ``prior`` is fitted on validation (``fit_gate``), but the gate opens
on evidence alone: it needs no switch in the training data.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.interface import ServableModel
from models.memo import LikelihoodMemo
from models.switch_evidence import EvidenceLookup, shift_back

STEP_ROWS = 256  # evidence rows per forward pass (x (1 + windows) with the short experts: bounds attention memory)


@dataclass
class GateConfig:
    windows: tuple[int, ...] = (3, 10)  # newest behaviours each short-term expert reads
    horizon: int = 8           # recent events whose likelihoods are the evidence
    discount: float = 0.8      # weight of the event t steps back: discount ** (t - 1)
    prior: float = -2.0        # log-odds of a switch before any evidence (fitted on validation)
    text_weight: float = 0.0   # weight of the text-centroid prior in the short experts (0: the model alone)
    text_temp: float = 20.0    # sharpness of that prior: cosine * text_temp
    half_life: float = 1.0     # of the decayed text centroid, in events
    clip: float = 5.0          # cap of one event's log-likelihood ratio (one odd event cannot decide)
    margin: float = 1.0        # dead zone of one event's ratio: |ratio| below it counts 0 (noise between two similar experts)
    frozen_long: bool = False  # evidence against the long expert as it stood before the horizon (not updated by the recent events)
    category_window: int = 0   # behaviours the category-mix expert reads (0: no such expert; measured worse, docs/benchmarks.md)
    category_half_life: float = 2.0  # its per-event decay, as the online store's cat_share_recent

    def __post_init__(self) -> None:
        self.windows = tuple(int(w) for w in self.windows)  # from JSON: a list
        if not self.windows or min(self.windows) < 1:
            raise ValueError(f"switch windows must be positive integers, got {self.windows}")

    def to_dict(self) -> dict:
        return asdict(self)


def decayed_centroid(text: torch.Tensor, seq: torch.Tensor, half_life: float) -> torch.Tensor:
    """(B, d) decay-weighted mean of the text rows (unit rows: ``text`` is normalised by the caller)
    of ``seq`` (B, w), normalised, the newest weighing 1,
    the one before 0.5 ** (1 / half_life), ...: the training-free short-term interest vector."""
    w = seq.shape[1]
    age = torch.arange(w - 1, -1, -1, device=seq.device, dtype=torch.float32)
    weights = 0.5 ** (age / half_life) * (seq > 0).float()  # (B, w)
    return F.normalize((weights.unsqueeze(-1) * text[seq]).sum(1), dim=-1)


class SwitchGate(nn.Module):
    """Any ``ServableModel`` with ``text_emb`` (the interest model, the hybrid) behind the switch
    gate; itself a ``ServableModel`` again (the one model interface, ``models.interface``)."""

    def __init__(self, base: ServableModel, cfg: GateConfig, base_name: str = "interest", item_categories: torch.Tensor | None = None,
                 popularity: torch.Tensor | None = None) -> None:
        """``item_categories`` (N+1, C) category weights per item (rows sum to 1, row 0 zero) and
        ``popularity`` (N+1,) training counts enable the category-mix expert."""
        super().__init__()
        self.base, self.cfg, self.base_name = base, cfg, base_name
        self.memo: LikelihoodMemo | None = None  # serving's evidence likelihoods across requests (``Engine`` sets one)
        self.register_buffer("item_cat", None)  # (N+1, C) category weights per item
        self.register_buffer("cat_item", None)  # (N+1, C) P(item | category)
        if item_categories is not None and cfg.category_window > 0 and item_categories.shape[1] > 0:
            cats = item_categories.float()
            pop = (popularity.float() if popularity is not None else torch.ones(len(cats))).clamp(min=0) + 1.0  # add-one: unseen items too
            within = cats * pop.unsqueeze(1)
            self.item_cat, self.cat_item = cats, within / within.sum(0, keepdim=True).clamp(min=1e-12)

    @property
    def text_emb(self) -> torch.Tensor:
        return self.base.text_emb

    @property
    def n_items(self) -> int:
        return self.base.n_items

    @property
    def text_proj(self) -> nn.Module | None:  # ranks items known only by text, as its base does
        return getattr(self.base, "text_proj", None)

    def config(self) -> dict:
        return {"base": self.base_name, **self.cfg.to_dict()}

    def _long(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(log-probabilities, the base's interest weights, or None when it cannot give them from the same pass)."""
        s, w = self.base.score_and_explain(seq, ts, now)
        s = s.float()
        s[:, 0] = float("-inf")
        return torch.log_softmax(s, -1), w

    def _text_prior(self, lp: torch.Tensor, window: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """A short expert's log-probabilities times the text-centroid prior of its window (``text_weight``)."""
        if not self.cfg.text_weight:
            return lp
        sims = decayed_centroid(text, window, self.cfg.half_life) @ text.T  # (B, N+1)
        sims[:, 0] = float("-inf")
        prior = torch.log_softmax(self.cfg.text_temp * sims, -1)
        n = min(lp.shape[1], prior.shape[1])  # items being added meanwhile: the common prefix
        return torch.log_softmax(lp[:, :n] + self.cfg.text_weight * prior[:, :n], -1)

    def _category(self, seq: torch.Tensor) -> torch.Tensor:
        """The category-mix expert, training-free: P(item) = sum_c mix_c P(item | c), with mix the
        per-event decayed category mix of the newest ``category_window`` behaviours (the online
        store's ``cat_share_recent``) and P(item | c) the item's share of its category's training
        events. It knows nothing the data did not count, so it follows a switch to any category."""
        w = seq[:, -self.cfg.category_window:]
        age = torch.arange(w.shape[1] - 1, -1, -1, device=seq.device, dtype=torch.float32)
        decay = (0.5 ** (age / self.cfg.category_half_life) * (w > 0).float()).unsqueeze(-1)  # (B, w, 1)
        n = self.item_cat.shape[0]
        known = (w < n).float().unsqueeze(-1)  # items added after training (add_items) have no categories here
        mix = (decay * known * self.item_cat[w.clamp(max=n - 1)]).sum(1)  # (B, C)
        mix = mix / mix.sum(1, keepdim=True).clamp(min=1e-12)
        p = F.pad(mix @ self.cat_item.T, (0, self.n_items + 1 - n))  # (B, N+1): no count of added items, P 0
        lp = torch.log(p + 1e-9)
        lp[:, 0] = float("-inf")
        return torch.log_softmax(lp, -1)

    def _expert_logps(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None, text: torch.Tensor
                      ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """[long, short_w for each window, (category mix)] log-probabilities of the rows ``seq`` (B, L),
        and the long expert's interest weights (B, L) (None if its model has no ``score_and_explain``).

        The long and short experts are the same model, so they score in one batch: each window is
        left-padded back to width L (padding is masked, and positions count back from the newest
        behaviour, so a window scores as it would alone). One forward pass instead of one per
        expert: per-call overhead dominates at serving's batch of one (measured: one padded pass
        14.7 ms p50 per request, one pass per window width 19.4 ms)."""
        B, L = seq.shape
        windows = self.cfg.windows
        pad = lambda x, w: F.pad(x[:, -w:], (L - min(w, L), 0))  # noqa: E731
        rows = torch.cat([seq] + [pad(seq, w) for w in windows])
        rows_ts = torch.cat([ts] + [pad(ts, w) for w in windows])
        lps, weights = self._long(rows, rows_ts, None if now is None else now.repeat(1 + len(windows)))
        parts = lps.split(B)
        out = [parts[0]] + [self._text_prior(lp, seq[:, -w:], text) for w, lp in zip(windows, parts[1:])]
        if self.item_cat is not None:
            out.append(self._category(seq))
        return out, None if weights is None else weights[:B]

    @property
    def expert_names(self) -> list[str]:
        """The short experts, in ``experts`` order (after the long one)."""
        return [f"recent {w}" for w in self.cfg.windows] + (["category mix"] if self.item_cat is not None else [])

    def expert_window(self, e: int) -> int:
        """Behaviours short expert ``e`` (0-based, ``expert_names`` order) reads."""
        return self.cfg.windows[e] if e < len(self.cfg.windows) else self.cfg.category_window

    def experts(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """([log p_L, log p_S_w for each window] (B, N+1) each, evidence (B, len(windows))): the
        experts' next-item log-probabilities and the switch evidence of each short expert from
        the newest ``horizon`` events (see the module docstring)."""
        return self.explained_experts(seq, ts, now)[:2]

    def explained_experts(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None
                          ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """``experts`` and the long expert's interest weights (B, L) from the same pass (None if
        its model cannot give them so)."""
        text = F.normalize(self.base.text_emb.float(), dim=-1)
        B, L = seq.shape
        h = min(self.cfg.horizon, L - 1)
        if h < 1:
            logps, base_w = self._expert_logps(seq, ts, now, text)
            return logps, torch.zeros(B, len(logps) - 1, device=seq.device), base_w
        # the newest h events, each predicted from what came before it: all h steps in one batch
        steps = range(1, h + 1)
        prev_seq, prev_ts = torch.cat([shift_back(seq, t) for t in steps]), torch.cat([shift_back(ts, t) for t in steps])
        targets, moments = torch.cat([seq[:, L - t] for t in steps]), torch.cat([ts[:, L - t] for t in steps])
        valid = ((targets > 0) & (prev_seq[:, -1] > 0)).unsqueeze(1)  # an event, with at least one before it
        idx = targets.clamp(min=0).unsqueeze(1)
        if not self._reads_now() and (h + 1) * B <= STEP_ROWS and self.cfg.frozen_long:  # serving, frozen long expert
            return self._frozen_pass(seq, ts, prev_seq, prev_ts, idx, valid, h, text)
        if not self._reads_now() and (h + 1) * B <= STEP_ROWS:  # serving: the request and its evidence in one pass
            both, base_w = self._expert_logps(torch.cat([seq, prev_seq]), torch.cat([ts, prev_ts]), None, text)
            logps = [lp[:B] for lp in both]
            ll_long, *ll_short = (lp[B:].gather(1, idx) for lp in both)
            if self.cfg.frozen_long:  # the long expert before the horizon: the rows of step h, for every step's target
                ll_long = both[0][B + (h - 1) * B:].repeat(h, 1).gather(1, idx)
                valid = valid & (prev_seq[(h - 1) * B:, -1] > 0).repeat(h).unsqueeze(1)
            ratio = torch.cat(ll_short, 1) - ll_long
            return logps, self._evidence(ratio, valid, h, B), None if base_w is None else base_w[:B]
        logps, base_w = self._expert_logps(seq, ts, now, text)
        ratios, ll_longs = [], []
        for rows in torch.arange(h * B, device=seq.device).split(STEP_ROWS):
            a, b, m, i = prev_seq[rows], prev_ts[rows], moments[rows], idx[rows]
            ll_long, *ll_short = (lp.gather(1, i) for lp in self._expert_logps(a, b, m, text)[0])  # (n, 1) each
            ll_longs.append(ll_long)
            ratios.append(torch.cat(ll_short, 1) - ll_long)
        ratio = torch.cat(ratios)
        if self.cfg.frozen_long:
            frozen = torch.cat([self._long(prev_seq[r], prev_ts[r], moments[r])[0] for r in torch.arange((h - 1) * B, h * B, device=seq.device).split(STEP_ROWS)])
            ratio = ratio + torch.cat(ll_longs) - frozen.repeat(h, 1).gather(1, idx)
            valid = valid & (prev_seq[(h - 1) * B:, -1] > 0).repeat(h).unsqueeze(1)
        return logps, self._evidence(ratio, valid, h, B), base_w

    def _frozen_pass(self, seq: torch.Tensor, ts: torch.Tensor, prev_seq: torch.Tensor, prev_ts: torch.Tensor,
                     idx: torch.Tensor, valid: torch.Tensor, h: int, text: torch.Tensor
                     ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """``explained_experts`` for serving with ``frozen_long``, rows sized to what each expert reads:
        the long expert two row sets at full width (the request; the history before the horizon), the
        short experts theirs at the widest window's width; one call when the history is short
        (docs/results.md). With a ``memo`` (``Engine`` sets one) only the evidence rows of events new
        since the user's last request are scored (``models.switch_evidence``)."""
        B, L = seq.shape
        windows = self.cfg.windows
        W = min(max(windows), L)
        W = L if L <= 2 * W else W
        rows, rows_ts = torch.cat([seq, prev_seq]), torch.cat([ts, prev_ts])
        frozen, frozen_ts = prev_seq[(h - 1) * B:], prev_ts[(h - 1) * B:]
        lookup = EvidenceLookup(self.memo, rows, rows_ts, idx, B, h, windows)
        need_long = lookup.frozen_missing()  # users whose frozen row must be scored
        need_short = [lookup.short_missing(e) for e in range(len(windows))]  # evidence rows (step-major) to score, per window
        pad = lambda x, w: F.pad(x[:, -min(w, L):], (W - min(w, L), 0))  # noqa: E731  (every window fits in W)
        long_rows, long_ts = torch.cat([seq, frozen[need_long]]), torch.cat([ts, frozen_ts[need_long]])
        picks = [torch.cat([torch.arange(B, device=seq.device), B + m]) for m in need_short]  # the request's rows, then the missing steps'
        short_rows = torch.cat([pad(rows[p], w) for w, p in zip(windows, picks)])
        short_ts = torch.cat([pad(rows_ts[p], w) for w, p in zip(windows, picks)])
        if W == L:  # one call
            lp, base_w = self._long(torch.cat([long_rows, short_rows]), torch.cat([long_ts, short_ts]), None)
            long_lp, short_lp = lp[: len(long_rows)], lp[len(long_rows):]
        else:
            long_lp, base_w = self._long(long_rows, long_ts, None)
            short_lp, _ = self._long(short_rows, short_ts, None)
        shorts = [self._text_prior(lp, rows[p][:, -w:], text) for w, p, lp in zip(windows, picks, short_lp.split([len(p) for p in picks]))]
        logps = [long_lp[:B]] + [lp[:B] for lp in shorts]
        ll_long = lookup.long_likelihoods(long_lp[B:], need_long)
        ll_short = [lookup.short_likelihoods(e, lp[B:], m) for e, (lp, m) in enumerate(zip(shorts, need_short))]
        if self.item_cat is not None:  # training-free and cheap: every row, every time
            cat = self._category(rows)
            logps.append(cat[:B])
            ll_short.append(cat[B:].gather(1, idx))
        valid = valid & (frozen[:, -1] > 0).repeat(h).unsqueeze(1)
        ratio = torch.cat(ll_short, 1) - ll_long
        return logps, self._evidence(ratio, valid, h, B), None if base_w is None else base_w[:B]

    def _evidence(self, ratio: torch.Tensor, valid: torch.Tensor, h: int, B: int) -> torch.Tensor:
        """(B, E) evidence from the (h*B, E) log-likelihood ratios of the newest h events, step-major."""
        ratio = (ratio.sign() * (ratio.abs() - self.cfg.margin).clamp(min=0)).clamp(-self.cfg.clip, self.cfg.clip)
        ratio = torch.where(valid, ratio, torch.zeros_like(ratio)).view(h, B, -1)
        discount = self.cfg.discount ** torch.arange(h, device=ratio.device, dtype=ratio.dtype)
        return (discount.view(h, 1, 1) * ratio).sum(0)

    def _reads_now(self) -> bool:
        """Whether the wrapped model reads the request's moment (only the interest model's trend
        prior does); if not, the request and its evidence steps can share one forward pass."""
        model = getattr(self.base, "base", self.base)  # a hybrid's interest model
        return bool(getattr(getattr(model, "cfg", None), "use_trend", False))

    def expert_weights(self, evidence: torch.Tensor, prior: float | None = None) -> torch.Tensor:
        """(B, 1 + len(windows)) posterior weight of each expert, the long one first."""
        prior = self.cfg.prior if prior is None else prior
        # the prior odds of a switch are shared by the short experts: their total is e**prior, whatever their number
        logits = torch.cat([torch.zeros_like(evidence[:, :1]), evidence + prior - float(np.log(evidence.shape[1]))], 1)
        return logits.softmax(1)

    @staticmethod
    def mix(logps: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """log sum_e weights_e p_e, over the items every expert scores."""
        n = min(lp.shape[1] for lp in logps)
        stacked = torch.stack([lp[:, :n] for lp in logps], 1)  # (B, E, n)
        return torch.logsumexp(stacked + torch.log(weights.clamp(min=1e-12)).unsqueeze(-1), 1)

    def score_all(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None) -> torch.Tensor:
        logps, evidence = self.experts(seq, ts, now)
        return self.mix(logps, self.expert_weights(evidence))

    def score_and_explain(self, seq: torch.Tensor, ts: torch.Tensor, now: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(``score_all``, ``interest_weights``): as the service asks (``now`` None), one pass (``switch_state``)."""
        if now is None:
            return self.switch_state(seq, ts)[2:]
        return self.score_all(seq, ts, now), self.interest_weights(seq, ts)

    def switch_state(self, seq: torch.Tensor, ts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(expert weights (B, 1 + windows), evidence (B, windows), mixed log-probabilities (B, N+1),
        interest weights (B, L)), all from one pass: what one request needs to answer and explain.
        The gate, the probability that the user is in a switch, is ``1 - weights[:, 0]``."""
        logps, evidence, base_w = self.explained_experts(seq, ts)
        weights = self.expert_weights(evidence)
        return weights, evidence, self.mix(logps, weights), self.interest_weights(seq, ts, weights, base_w)

    def window_weights(self, seq: torch.Tensor, w: int) -> torch.Tensor:
        """(B, L) a short expert's weight on each behaviour: the per-event decay weights of its window."""
        L, w = seq.shape[1], min(w, seq.shape[1])
        age = torch.arange(w - 1, -1, -1, device=seq.device, dtype=torch.float32)
        out = torch.zeros(seq.shape, device=seq.device)
        out[:, L - w:] = 0.5 ** (age / self.cfg.half_life) * (seq[:, L - w:] > 0).float()
        return out / out.sum(1, keepdim=True).clamp(min=1e-8)

    def interest_weights(self, seq: torch.Tensor, ts: torch.Tensor, weights: torch.Tensor | None = None,
                         base_weights: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) weight of each behaviour: the base model's (``base_weights``, if the caller has
        them already) and the short windows', mixed by the experts' weights."""
        if weights is None:
            weights = self.expert_weights(self.experts(seq, ts)[1])
        if base_weights is None:
            base_weights = self.base.interest_weights(seq, ts)
        out = weights[:, :1] * base_weights.float()
        for e in range(weights.shape[1] - 1):
            out = out + weights[:, e + 1:e + 2] * self.window_weights(seq, self.expert_window(e))
        return out

    def add_items(self, text_rows: torch.Tensor) -> None:
        """New items: the base appends them (the category-mix expert has no count of them: P 0); the memo starts again."""
        self.base.add_items(text_rows)
        if self.memo is not None:
            self.memo.invalidate()

    @torch.no_grad()
    def set_item_text(self, index: int, text_row: torch.Tensor) -> None:
        self.base.set_item_text(index, text_row)
        if self.memo is not None:
            self.memo.invalidate()
