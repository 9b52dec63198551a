"""From canonical tables to model inputs: id maps, per-user sequences, leave-one-out splits.

Per-user order is (timestamp, original row order), the tie rule of the benchmark protocol;
ingest keeps that order in interactions.parquet, so a stable group-by preserves it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from features.transforms import feature_timestamps, unix_seconds

PAD = 0


@dataclass(frozen=True)
class ItemIndex:
    """item id <-> contiguous index (1..N; 0 is padding)."""

    ids: tuple[str, ...]

    @property
    def pos(self) -> dict[str, int]:
        return {i: k + 1 for k, i in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)


def item_index(items: pd.DataFrame) -> ItemIndex:
    return ItemIndex(tuple(items["item_id"].astype(str)))


def item_category_matrix(categories: list[list[str]]) -> torch.Tensor:
    """(N+1, C) each item's categories, weighted 1/len (rows sum to 1; row 0, padding, and items
    without a category are zero), categories in sorted order."""
    names = sorted({c for cats in categories for c in cats})
    col = {c: j for j, c in enumerate(names)}
    out = torch.zeros(len(categories) + 1, len(names))
    for i, cats in enumerate(categories, 1):
        known = [col[c] for c in cats if c in col]
        if known:
            out[i, known] = 1.0 / len(known)
    return out


@dataclass
class UserSequence:
    items: np.ndarray  # (n,) item indices, oldest first
    ts: np.ndarray     # (n,) unix seconds


def user_sequences(interactions: pd.DataFrame, index: ItemIndex) -> dict[str, UserSequence]:
    pos = index.pos
    df = interactions.assign(_i=interactions["item_id"].map(pos).fillna(0).astype(np.int64), _t=unix_seconds(interactions["ts"]))
    return {u: UserSequence(g["_i"].to_numpy(), g["_t"].to_numpy()) for u, g in df.groupby("user_id", sort=True)}


def pad_left(values: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.int64)
    v = np.asarray(values, dtype=np.int64)[-length:]
    if len(v):
        out[length - len(v):] = v
    return out


def trim_padding(*arrays: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop the leading columns that are padding in every row of ``arrays[0]`` (left-padded
    windows; positions count back from the newest behaviour, so a model's output at the real
    positions does not change). Batches of similar lengths then skip most of the padding."""
    real = (arrays[0] > 0).any(0)
    first = int(real.nonzero()[0]) if real.any() else arrays[0].shape[1] - 1
    return tuple(a[:, first:] for a in arrays)


@dataclass
class EvalSet:
    """Inputs, targets and exclusions of one leave-one-out split (valid or test)."""

    users: list[str]
    seq: np.ndarray        # (B, L) left-padded item indices
    ts: np.ndarray         # (B, L) their timestamps
    targets: np.ndarray    # (B,)
    exclude: list[np.ndarray]  # items of the whole input history (never recommended again)
    target_ts: np.ndarray  # (B,)
    hist_len: np.ndarray | None = None  # (B,) events in each user's full input history


def eval_batches(data: EvalSet, batch_size: int, device: str) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor], list[np.ndarray]]]:
    """An evaluation split as model inputs: (row indices, score_all's arguments plus the targets,
    exclusions), in batches of similar history length, each trimmed of its all-padding columns.
    A window is left-padded to max_len while most histories are far shorter, and validation runs
    after every training epoch (on MovieLens-100K this cut it from 6 s to ~2 s). ``now`` is each
    request's moment, the target's timestamp (the trend prior reads it)."""
    order = np.argsort((data.seq > 0).sum(1), kind="stable")
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        seq, ts = trim_padding(torch.as_tensor(data.seq[rows]), torch.as_tensor(data.ts[rows]))
        inputs = {"seq": seq.to(device), "ts": ts.to(device), "now": torch.as_tensor(data.target_ts[rows], device=device),
                  "targets": torch.as_tensor(data.targets[rows], device=device)}
        yield rows, inputs, [data.exclude[j] for j in rows]


def leave_one_out(seqs: dict[str, UserSequence], split: str, max_len: int) -> EvalSet:
    """valid: history = all but the last two events, target = second-last; test: target = last."""
    cut = {"valid": 2, "test": 1}[split]
    users, seq, ts, tg, ex, tts, hl = [], [], [], [], [], [], []
    for u, s in seqs.items():
        if len(s.items) < 3:
            continue  # the protocol skips users with fewer than 3 events
        hist, hts = s.items[: len(s.items) - cut], s.ts[: len(s.items) - cut]
        users.append(u)
        seq.append(pad_left(hist, max_len))
        ts.append(pad_left(hts, max_len))
        tg.append(s.items[len(s.items) - cut])
        tts.append(s.ts[len(s.items) - cut])
        ex.append(np.unique(hist))
        hl.append(len(hist))
    return EvalSet(users, np.array(seq).reshape(-1, max_len), np.array(ts).reshape(-1, max_len), np.array(tg), ex,
                   np.array(tts), np.array(hl))


def temporal_split(interactions: pd.DataFrame, index: ItemIndex, max_len: int, quantile: float = 0.9
                   ) -> tuple[pd.Timestamp, dict[str, UserSequence], EvalSet]:
    """Global temporal split: train = events before the cut-off (the ``quantile`` of timestamps),
    test = each user's first event after it, with all their pre-cut-off events as history."""
    cutoff = interactions["ts"].quantile(quantile)
    before = interactions[interactions["ts"] < cutoff]
    after = interactions[interactions["ts"] >= cutoff]
    train_seqs = user_sequences(before, index)
    first_after = after.groupby("user_id", sort=True).head(1)
    pos = index.pos
    users, seq, ts, tg, ex, tts, hl = [], [], [], [], [], [], []
    for u, item, t in zip(first_after["user_id"], first_after["item_id"], unix_seconds(first_after["ts"])):
        s = train_seqs.get(u)
        if s is None or not len(s.items) or item not in pos:
            continue  # no history before the cut-off: nothing to predict from
        users.append(u)
        seq.append(pad_left(s.items, max_len))
        ts.append(pad_left(s.ts, max_len))
        tg.append(pos[item])
        tts.append(t)
        ex.append(np.unique(s.items))
        hl.append(len(s.items))
    test = EvalSet(users, np.array(seq).reshape(-1, max_len), np.array(ts).reshape(-1, max_len), np.array(tg, dtype=np.int64),
                   ex, np.array(tts), np.array(hl))
    return cutoff, train_seqs, test


def cold_item_split(interactions: pd.DataFrame, items: pd.DataFrame, max_len: int, fraction: float = 0.1, seed: int = 0
                    ) -> tuple[pd.DataFrame, int, dict[str, UserSequence], pd.DataFrame, EvalSet]:
    """Cold-item protocol: a random ``fraction`` of the catalogue is held out of training entirely.

    The catalogue is reordered so the held-out items come last (indices ``n_warm + 1`` on): a
    model is trained on the first ``n_warm`` and then gets the others the way the service's
    ``POST /items`` adds them (``add_items``: text plus borrowed id rows, no co-occurrence, no counts).
    Test = the users whose leave-one-out target (last event) is a held-out item, with their full
    history as input; training sequences = every other event except each user's last, with no
    held-out item; their last event is the validation target (``models.protocols``), so the training
    rows, which the seed-free models (item-kNN, the Markov chain, popularity) count, leave it out as
    leave-one-out's do: counted, it leaked into the hybrid's weight search (validation NDCG@10 0.64
    on Amazon Scientific against the interest model's 0.08, weights 30 / 10 / 10).
    Returns (reordered items, n_warm, training sequences, training rows, test set).
    """
    rng = np.random.default_rng(seed)
    n = len(items)
    cold_rows = np.zeros(n, dtype=bool)
    cold_rows[rng.choice(n, size=max(1, int(round(n * fraction))), replace=False)] = True
    ordered = pd.concat([items[~cold_rows], items[cold_rows]], ignore_index=True)
    n_warm = int((~cold_rows).sum())
    index = item_index(ordered)
    seqs = user_sequences(interactions, index)
    test = leave_one_out({u: s for u, s in seqs.items() if len(s.items) >= 3 and s.items[-1] > n_warm}, "test", max_len)
    train_seqs = {}
    for u, s in seqs.items():
        keep = (s.items[:-1] > 0) & (s.items[:-1] <= n_warm)
        train_seqs[u] = UserSequence(s.items[:-1][keep], s.ts[:-1][keep])
    warm = set(ordered["item_id"].iloc[:n_warm])
    last = interactions.groupby("user_id", sort=False).cumcount(ascending=False) == 0
    rows = interactions[~last & interactions["item_id"].isin(warm)]
    rows = rows[rows.groupby("user_id", sort=False).cumcount(ascending=False) >= 1]  # not the validation target
    return ordered, n_warm, train_seqs, rows, test


def train_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    """Every event but each user's last two (those are validation and test)."""
    rank_from_end = interactions.groupby("user_id", sort=False).cumcount(ascending=False)
    return interactions[rank_from_end >= 2]


def training_entity_df(interactions: pd.DataFrame, max_len: int) -> pd.DataFrame:
    """Feast entity rows for training: one query per window of ``max_len`` train targets.

    A query at target q returns the ``max_len`` behaviours before q; training on every position
    of (history + q) covers targets q-max_len+1..q. Queries step back by ``max_len`` from each
    user's last train target, so every train target is predicted exactly once per epoch while
    Feast answers ~events/max_len rows instead of one per event. The timestamp is the target's
    feature time minus 1 microsecond: strictly before the target.
    """
    df = interactions.assign(_ft=feature_timestamps(interactions))
    rows = []
    for u, g in df.groupby("user_id", sort=False):
        n = len(g)
        ft, items, ts = g["_ft"].to_numpy(), g["item_id"].to_numpy(), g["ts"].to_numpy()
        for q in range(n - 3, 0, -max_len):  # last train target is n-3 (0-based)
            rows.append((u, ft[q] - pd.Timedelta(microseconds=1), items[q], ts[q]))
    out = pd.DataFrame(rows, columns=["user_id", "event_timestamp", "target_item", "target_ts"])
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    out["target_ts"] = pd.to_datetime(out["target_ts"], utc=True)
    return out


Windows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def windows_from_features(rows: pd.DataFrame, index: ItemIndex, max_len: int) -> Windows:
    """(seq, ts, labels, label_ts), each (B, max_len): inputs are history, labels the next item at
    each position, label_ts the labels' timestamps (the moment of each prediction)."""
    pos = index.pos
    seqs, tss, labels, label_ts = [], [], [], []
    for hist, hts, target, tts in zip(rows["hist_item_ids"], rows["hist_ts"], rows["target_item"], unix_seconds(rows["target_ts"])):
        hist = [] if hist is None else list(hist)
        hts = [] if hts is None else list(hts)
        full = [pos.get(i, PAD) for i in hist] + [pos.get(target, PAD)]
        full_ts = [int(t) for t in hts] + [int(tts)]
        seqs.append(pad_left(full[:-1], max_len))
        tss.append(pad_left(full_ts[:-1], max_len))
        labels.append(pad_left(full[1:], max_len))
        label_ts.append(pad_left(full_ts[1:], max_len))
    return _windows(seqs, tss, labels, label_ts, max_len)


def _windows(seqs: list, tss: list, labels: list, label_ts: list, max_len: int) -> Windows:
    lab = np.array(labels).reshape(-1, max_len)
    seq = np.array(seqs).reshape(-1, max_len)
    lab[seq == PAD] = PAD  # no input at that position: nothing to predict from
    return seq, np.array(tss).reshape(-1, max_len), lab, np.array(label_ts).reshape(-1, max_len)


def windows_from_sequences(seqs: dict[str, UserSequence], max_len: int, holdout: int = 2) -> Windows:
    """The windows ``training_entity_df`` + Feast + ``windows_from_features`` produce, straight from sequences.

    Used by the benchmark (many seeds and protocols, no feature store round trip); a unit
    test proves both paths give identical arrays. ``holdout`` events per user are kept out
    (2 under leave-one-out: validation and test).
    """
    seqs_out, ts_out, lab_out, lts_out = [], [], [], []
    for s in seqs.values():
        n = len(s.items)
        for q in range(n - 1 - holdout, 0, -max_len):
            lo = max(0, q - max_len)
            seqs_out.append(pad_left(s.items[lo:q], max_len))
            ts_out.append(pad_left(s.ts[lo:q], max_len))
            lab_out.append(pad_left(s.items[lo + 1 : q + 1], max_len))
            lts_out.append(pad_left(s.ts[lo + 1 : q + 1], max_len))
    return _windows(seqs_out, ts_out, lab_out, lts_out, max_len)


def splice_windows(windows: Windows, fraction: float, seed: int) -> Windows:
    """Switch augmentation: ``fraction`` x rows more, each the prefix of one training window spliced
    at a random point onto the continuation of another's, re-timed to follow on at the second
    window's own pace. Stationary training data then shows the model users who switch, so it
    learns to let the newest behaviours lead when they disagree with the rest.

    Rows are (seq, ts, labels, label_ts) as ``windows_from_features`` makes them; a window's full
    sequence is its real inputs plus its last label."""
    seq, ts, lab, lab_ts = windows
    B, L = seq.shape
    n_new = int(round(fraction * B))
    if n_new == 0 or B < 2:
        return windows
    rng = np.random.default_rng(seed)
    full = [(np.append(s[s > PAD], lb[-1]), np.append(t[s > PAD], lt[-1])) for s, t, lb, lt in zip(seq, ts, lab, lab_ts)]
    usable = [i for i, (f, _) in enumerate(full) if len(f) >= 3 and f[-1] > PAD]
    if len(usable) < 2:
        return windows
    rows = []
    for _ in range(n_new):
        i, j = rng.choice(usable, size=2, replace=False)
        (fi, ti), (fj, tj) = full[i], full[j]
        c = int(rng.integers(1, len(fi) - 1))  # prefix length kept from the first window
        d = int(rng.integers(0, len(fj) - 2))  # the second window continues from here (>= 2 events)
        gap = max(int(tj[d] - tj[d - 1]) if d > 0 else 3600, 1)
        items = np.concatenate([fi[:c], fj[d:]])[-(L + 1):]
        times = np.concatenate([ti[:c], ti[c - 1] + gap + (tj[d:] - tj[d])])[-(L + 1):]
        rows.append((pad_left(items[:-1], L), pad_left(times[:-1], L), pad_left(items[1:], L), pad_left(times[1:], L)))
    extra = [np.stack(a) for a in zip(*rows)]
    return tuple(np.concatenate([a, e]) for a, e in zip(windows, extra))  # type: ignore[return-value]
