"""Online user_behaviour updates: new events merged into a user's row of Feast's online store.

One implementation for every writer of that row: the service's ``POST /events``, its replay of
the event log at start, and the ``features`` stage, which re-applies logged events that no ingest
has folded in yet (otherwise materializing would put back an older state and drop them).
The events themselves, their log and its lock are ``core.eventlog``'s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.eventlog import Event, events_by_user
from features.store import OnlineBehaviour
from features.transforms import SECONDS_PER_DAY, event_clock, latest_decayed_shares_many

REPLAY_BATCH = 1000  # users per online read/write when a whole log is replayed


def unapplied(state: dict, events: list[Event], history_len: int | None = None) -> list[Event]:
    """The events that a user's online state does not hold yet, each once (same item at the same
    second is the same event, as for ingest's exact duplicates), so a retried request or a replay
    of the log is applied once.

    With ``history_len``, events older than a full history are left out as well: whether they were
    applied cannot be told from the state, and they would fall off it anyway (a replay must not
    count them again).
    """
    ids = state.get("hist_item_ids") or []
    tss = [int(t) for t in (state.get("hist_ts") or [])]
    held = set(zip(ids, tss))
    oldest = tss[0] if history_len is not None and tss and len(tss) >= history_len else None
    out = []
    for e in events:
        if (e.item_id, e.ts) not in held and (oldest is None or e.ts >= oldest):
            held.add((e.item_id, e.ts))
            out.append(e)
    return out


def merge_behaviour(state: dict, events: list[Event], history_len: int, cat_vectors: dict[str, np.ndarray],
                    n_categories: int, short_half_life_days: float, long_half_life_days: float,
                    recent_half_life_events: float = 2.0) -> dict:
    """A user's behaviour state after new events, inserted in timestamp order.

    The category shares are recomputed over the kept history: the newest row of the
    ``decayed_shares`` the offline features use, bit for bit (``latest_decayed_shares`` computes
    that row only). Offline shares cover the user's whole history, so for users with more than
    ``history_len`` events the online shares are an approximation (the long half-life ones most);
    the next features run recomputes them exactly.
    """
    return merge_behaviours([(state, events)], history_len, cat_vectors, n_categories, short_half_life_days,
                            long_half_life_days, recent_half_life_events)[0]


def merge_behaviours(updates: list[tuple[dict, list[Event]]], history_len: int, cat_vectors: dict[str, np.ndarray],
                     n_categories: int, short_half_life_days: float, long_half_life_days: float,
                     recent_half_life_events: float = 2.0) -> list[dict]:
    """``merge_behaviour`` of many users (each ``(state, new events)``), the shares of all of them in
    one pass (``latest_decayed_shares_many``): the same rows, bit for bit, for a fraction of the
    interpreter time a large ``POST /events`` batch held while ``/recommend`` waited."""
    zero = np.zeros(n_categories)
    merged, shares_in = [], []
    for state, events in updates:
        ids = list(state.get("hist_item_ids") or [])
        tss = [int(t) for t in (state.get("hist_ts") or [])]
        pairs = list(zip(tss, range(len(ids)), ids)) + [(e.ts, len(ids) + k, e.item_id) for k, e in enumerate(events)]
        pairs.sort()  # by time, then arrival order: late events land where they belong
        kept = pairs[-history_len:]
        ids, tss = [p[2] for p in kept], [p[0] for p in kept]
        vecs = np.stack([cat_vectors.get(i, zero) for i in ids]) if ids else np.zeros((0, n_categories))
        t = np.array(tss, dtype=np.float64)
        shares_in.append((vecs, [(t, short_half_life_days * SECONDS_PER_DAY), (t, long_half_life_days * SECONDS_PER_DAY),
                                 (event_clock(len(vecs)), recent_half_life_events)]))
        merged.append((state, events, ids, tss))
    out = []
    for (state, events, ids, tss), (short, long_, recent) in zip(merged, latest_decayed_shares_many(shares_in, n_categories)):
        out.append({
            "hist_item_ids": ids,
            "hist_ts": tss,
            "event_count": int(state.get("event_count") or 0) + len(events),
            "last_event_ts": max(tss) if tss else 0,
            "cat_share_short": short.astype(np.float32).tolist(),
            "cat_share_long": long_.astype(np.float32).tolist(),
            "cat_share_recent": recent.astype(np.float32).tolist(),
        })
    return out


def forgotten_row(user_id: str, n_categories: int, at: int) -> dict:
    """The online row of a forgotten user: no history, no counts, no shares (a cold start)."""
    zero = [0.0] * n_categories
    return {"user_id": user_id, "event_timestamp": pd.Timestamp(at, unit="s", tz="UTC"), "hist_item_ids": [], "hist_ts": [],
            "event_count": 0, "last_event_ts": 0, "cat_share_short": zero, "cat_share_long": zero, "cat_share_recent": zero}


@dataclass(frozen=True)
class BehaviourSpec:
    """What a merge needs besides the events: the feature definitions of user_behaviour."""

    history_len: int
    cat_vectors: dict[str, np.ndarray]
    n_categories: int
    short_half_life_days: float
    long_half_life_days: float
    recent_half_life_events: float = 2.0


def fresh_events(online: OnlineBehaviour, by_user: dict[str, list[Event]], history_len: int | None = None
                 ) -> tuple[dict[str, dict], dict[str, list[Event]]]:
    """(each user's current online row, the events of ``by_user`` that row does not hold yet):
    the read half of an update, so the caller can log only what is new before writing."""
    users = list(by_user)
    states = dict(zip(users, online.read(users)))
    fresh = {u: evs for u in users if (evs := unapplied(states[u], by_user[u], history_len))}
    return states, fresh


def write_merged(online: OnlineBehaviour, states: dict[str, dict], fresh: dict[str, list[Event]], spec: BehaviourSpec) -> int:
    """The write half: merge each user's fresh events into the row read with them; returns how many."""
    merged = merge_behaviours([(states[u], evs) for u, evs in fresh.items()], spec.history_len, spec.cat_vectors,
                              spec.n_categories, spec.short_half_life_days, spec.long_half_life_days, spec.recent_half_life_events)
    rows = [{"user_id": user, "event_timestamp": pd.Timestamp(new["last_event_ts"], unit="s", tz="UTC"), **new}
            for user, new in zip(fresh, merged)]
    online.write(rows)
    return sum(len(evs) for evs in fresh.values())


def apply_events(online: OnlineBehaviour, by_user: dict[str, list[Event]], spec: BehaviourSpec, replay: bool = False) -> int:
    """Read-modify-write of each user's online row (the caller serialises writers). Events a row
    already holds are skipped (a client's retry, a replay). Returns how many were applied."""
    states, fresh = fresh_events(online, by_user, spec.history_len if replay else None)
    return write_merged(online, states, fresh, spec)


def replay_events(online: OnlineBehaviour, events: list[Event], spec: BehaviourSpec) -> int:
    """Apply every event of a log that the online store lacks, ``REPLAY_BATCH`` users at a time."""
    by_user = events_by_user(events)
    users = list(by_user)
    return sum(apply_events(online, {u: by_user[u] for u in users[i:i + REPLAY_BATCH]}, spec, replay=True)
               for i in range(0, len(users), REPLAY_BATCH))
