"""Interest-shift benchmark: how many new events until the top-10 follows a user's new interest?

Uses the synthetic generator's ground truth. For every user whose true interest switches, start
from their history before the first switch, feed the events of the episode after it (up to the
next switch, if any; a user who does not turn within it counts as "never") one at a time through the
same path as ``POST /events`` (``merge_behaviour`` + Feast ``write_to_online_store``), read the
state back from the online store as ``POST /recommend`` does, and count the events until at
least half of the top-10 belongs to the new interest. Compared with a static-profile baseline
that ignores recency (the mean text embedding of the whole history, new events included).
Each of ``--models`` (default: the interest model and the hybrid) is replayed on the same events.
Also times each event -> updated recommendation round trip (without HTTP), per model.

    python -m serving.shift_benchmark [--params params.yaml] [--max-events 20] [--users 100] [--models interest,hybrid]
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.cli import configure_logging
from features.params import load_params
from features.store import get_store, online_user_behaviour
from features.transforms import category_matrix, category_vocabulary, unix_seconds
from models import artifacts
from models.inference import Recommender
from features.online import Event, merge_behaviour

log = logging.getLogger(__name__)


def events_to_shift(top_ids: list[list[str]], primary: dict[str, str], new_interest: str, k: int = 10) -> int | None:
    """1-based number of events after which >= half of the top-k is in the new interest (None: never)."""
    for n, ids in enumerate(top_ids, 1):
        if sum(primary.get(i) == new_interest for i in ids[:k]) * 2 >= k:
            return n
    return None


def first_switch(user_truth: pd.DataFrame, max_events: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events before the first switch, the first ``max_events`` of the episode right after it):
    a later switch would make "the new interest" ambiguous, so the replay stops there."""
    return user_truth[user_truth["episode"] == 0], user_truth[user_truth["episode"] == 1].head(max_events)


def static_profile_top(text: np.ndarray, pos: dict[str, int], ids: list[str], history: list[str], k: int) -> list[str]:
    """Recency-blind baseline: cosine to the mean text embedding of the whole history."""
    idx = [pos[i] for i in history if i in pos]
    u = text[idx].mean(0)
    s = text @ u
    s[0] = -np.inf
    s[idx] = -np.inf
    return [ids[j - 1] for j in np.argsort(-s, kind="stable")[:k]]


def share_curve(tops_per_user: list[list[list[str]]], primary: dict[str, str], interests: list[str], n: int = 10, k: int = 10) -> list[float]:
    """Mean share of the top-k in the new interest after 1..n post-switch events (users with fewer
    events count until their last one): how fast the recommendations turn, not only when they cross half."""
    out = []
    for j in range(n):
        shares = [sum(primary.get(i) == new for i in tops[j][:k]) / k for tops, new in zip(tops_per_user, interests) if len(tops) > j]
        out.append(round(float(np.mean(shares)), 3) if shares else float("nan"))
    return out


def summarize(counts: list[int | None], cap: int) -> dict:
    filled = np.array([c if c is not None else cap + 1 for c in counts], dtype=float)
    return {"users": len(counts), "median": float(np.median(filled)), "p90": float(np.percentile(filled, 90)),
            "never_within_cap": int(sum(c is None for c in counts)), "cap": cap}


def main() -> None:
    ap = argparse.ArgumentParser(description="events needed until recommendations follow an interest switch")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--max-events", type=int, default=20)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--models", default="interest,hybrid", help="comma-separated models of the artifact to replay (those present)")
    ap.add_argument("--out", default="reports/interest-shift.json")
    args = ap.parse_args()
    configure_logging()
    params = load_params(args.params)
    raw = params.path(params.data.raw_dir)
    truth = pd.read_parquet(raw / "ground_truth.parquet")
    items = pd.read_parquet(raw / "items.parquet")
    items["categories"] = items["categories"].map(list)
    primary = dict(zip(items["item_id"], items["categories"].map(lambda c: c[0])))
    model_dir = params.path(params.train.out_dir)
    present = artifacts.load_models(model_dir)
    names = [m for m in args.models.split(",") if m in present]
    if not names:
        raise SystemExit(f"none of --models {args.models} is in {model_dir} (has {sorted(present)})")
    recs = {m: Recommender(model_dir, m, params.train.max_len) for m in names}
    rec = recs[names[0]]
    text = present["interest"].text_emb.numpy() if "interest" in present else present[names[0]].text_emb.numpy()
    cats = category_vocabulary(items)
    cat_vectors = category_matrix(items, cats)
    # a scratch copy of the Feast repo: the benchmark's simulated users never touch the real online store
    scratch = Path(tempfile.mkdtemp(prefix="pulse-shift-"))
    shutil.copytree(params.path(params.features.repo_dir), scratch / "repo")
    store = get_store(scratch / "repo")
    fp = params.features
    shifters = truth[truth["shifts"]].groupby("user_id", sort=True)
    pulse_counts: dict[str, list] = {m: [] for m in names}
    pulse_all: dict[str, list] = {m: [] for m in names}
    latencies: dict[str, list] = {m: [] for m in names}
    static_counts, static_all, interests = [], [], []
    for n_user, (user, g) in enumerate(shifters):
        if n_user >= args.users:
            break
        before, after = first_switch(g, args.max_events)
        if before.empty or after.empty:
            continue
        new_interest = after["true_interest"].iloc[0]
        sim_user = f"shift-bench-{user}"  # a fresh online row for the replay
        state = merge_behaviour({}, [Event(sim_user, i, int(t)) for i, t in zip(before["item_id"], unix_seconds(before["ts"]))],
                                fp.history_len, cat_vectors, len(cats), fp.short_half_life_days, fp.long_half_life_days)
        history, static_tops = list(before["item_id"]), []
        pulse_tops: dict[str, list] = {m: [] for m in names}
        for item, t in zip(after["item_id"], unix_seconds(after["ts"])):
            # each model times the whole round trip (online write, read back, score); the order
            # alternates so that neither model always runs on warm caches
            for m in names if len(history) % 2 else names[::-1]:
                t0 = time.perf_counter()
                state_m = merge_behaviour(state, [Event(sim_user, item, int(t))], fp.history_len, cat_vectors, len(cats),
                                          fp.short_half_life_days, fp.long_half_life_days)
                store.write_to_online_store("user_behaviour", pd.DataFrame([{"user_id": sim_user, "event_timestamp": pd.Timestamp(int(t), unit="s", tz="UTC"), **state_m}]))
                online = online_user_behaviour(store, [sim_user])[0]
                top = recs[m].recommend(online["hist_item_ids"], online["hist_ts"], k=10)
                latencies[m].append((time.perf_counter() - t0) * 1000)
                pulse_tops[m].append([i["item_id"] for i in top.items])
            state = state_m
            history.append(item)
            static_tops.append(static_profile_top(text, rec.pos, rec.ids, history, 10))
        for m in names:
            pulse_counts[m].append(events_to_shift(pulse_tops[m], primary, new_interest))
            pulse_all[m].append(pulse_tops[m])
        static_counts.append(events_to_shift(static_tops, primary, new_interest))
        static_all.append(static_tops)
        interests.append(new_interest)
    report: dict = {"command": "python -m serving.shift_benchmark " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())}
    for m in names:
        lat = np.array(latencies[m])
        report[f"pulse_{m}_model"] = {**summarize(pulse_counts[m], args.max_events),
                                      "new_interest_share_after_n_events": share_curve(pulse_all[m], primary, interests),
                                      "event_to_recommendation_ms": {"n": int(len(lat)), "p50": float(np.percentile(lat, 50)),
                                                                     "p99": float(np.percentile(lat, 99)), "max": float(lat.max())}}
    report["static_profile_baseline"] = {**summarize(static_counts, args.max_events),
                                         "new_interest_share_after_n_events": share_curve(static_all, primary, interests)}
    shutil.rmtree(scratch, ignore_errors=True)
    out = params.path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
