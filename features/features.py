"""Stage `features`: compute user_behaviour and item_profile, write the Feast offline sources,
apply the Feast repo and materialize the online store.

"Now" is the latest event in the data (data time, not the wall clock), so the same input
always gives the same features.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import pandas as pd

from core import eventlog
from features import materialize, online, store, transforms
from core.cli import stage_main
from core.params import Params
from core.streamlog import ServiceLogs, logs_from_env

log = logging.getLogger(__name__)


@dataclass
class FeaturesResult:
    users: int
    items: int
    behaviour_rows: int
    categories: list[str]
    now: str
    feast_objects: list[str]
    replayed_events: int = 0
    materialized: dict | None = None  # mode (full | incremental), why, the interval and the rows in it

    def summary(self) -> dict:
        return asdict(self)


def run(params: Params, logs: ServiceLogs | None = None) -> FeaturesResult:
    """``logs``: the service's logs (default: ``$PULSE_EVENT_LOG``, else ``data.event_log``), chosen once here."""
    logs = logs or logs_from_env(params.path(params.data.event_log), params.path)
    raw = params.path(params.data.raw_dir)
    interactions = pd.read_parquet(raw / "interactions.parquet")
    # a user forgotten since the last ingest must not come back through the feature store
    interactions, n_forgotten = eventlog.drop_forgotten(interactions, eventlog.forgotten_users(logs.events))
    if n_forgotten:
        log.info("left out %d event(s) of forgotten users", n_forgotten)
    items = pd.read_parquet(raw / "items.parquet")
    items["categories"] = items["categories"].map(list)
    fp = params.features
    now = interactions["ts"].max()
    categories = transforms.category_vocabulary(items)
    log.info("computing user_behaviour for %d events", len(interactions))
    timeline = transforms.user_behaviour_timeline(
        interactions, items, categories, fp.history_len, fp.short_half_life_days, fp.long_half_life_days, fp.recent_half_life_events
    )
    profile = transforms.item_profile(interactions, items, now, fp.recent_days)
    repo = params.path(fp.repo_dir)
    store.write_offline(repo, timeline, profile)
    (repo / "data" / "categories.json").write_text(json.dumps(categories))
    names = store.apply_repo(repo)
    log.info("materializing the online store up to %s", now)
    # the first run loads everything; later ones only the rows after the last run (features/materialize.py)
    loaded = materialize.materialize_online(repo, {"user_behaviour": timeline, "item_profile": profile})
    replayed = replay_event_log(params, logs.events, items, categories, repo)
    forget_online(logs.events, interactions, len(categories), repo)
    return FeaturesResult(
        users=int(interactions["user_id"].nunique()),
        items=len(items),
        behaviour_rows=len(timeline),
        categories=categories,
        now=str(now),
        feast_objects=names,
        replayed_events=replayed,
        materialized=loaded.summary(),
    )


def replay_event_log(params: Params, events: eventlog.RecordLog, items: pd.DataFrame, categories: list[str], repo) -> int:
    """Re-apply events the service accepted after the last ingest: materializing wrote each user's
    state as of the raw data, which does not hold them yet (events already ingested are skipped)."""
    fp = params.features
    if not events.exists():
        return 0
    spec = online.BehaviourSpec(fp.history_len, transforms.category_matrix(items, categories), len(categories),
                                fp.short_half_life_days, fp.long_half_life_days, fp.recent_half_life_events)
    ob = store.OnlineBehaviour(store.get_store(repo))
    with events.locked(), ob.write_lock():  # a running service appends and writes online rows under the same locks
        n = online.replay_events(ob, eventlog.read_events(events), spec)
    log.info("re-applied %d logged event(s) not yet ingested to the online store", n)
    return n


def forget_online(events: eventlog.RecordLog, interactions: pd.DataFrame, n_categories: int, repo) -> int:
    """Empty the online rows of forgotten users with no events left: materializing writes only the
    users the data holds, so a row written before the forget would otherwise stay."""
    left = set(interactions["user_id"].astype(str))
    gone = {u: at for u, at in eventlog.forgotten_users(events).items() if u not in left}
    if not gone:
        return 0
    ob = store.OnlineBehaviour(store.get_store(repo))
    with events.locked(), ob.write_lock():
        states = dict(zip(gone, ob.read(list(gone))))
        # events the service accepted after the tombstone (not ingested yet) stay; the rest goes
        ob.write([online.forgotten_row(u, n_categories, at) for u, at in gone.items()
                  if not [t for t in (states[u].get("hist_ts") or []) if int(t) > at]])
    log.info("emptied the online rows of %d forgotten user(s)", len(gone))
    return len(gone)


def main() -> None:
    stage_main(run, "features: compute features, feast apply, materialize")


if __name__ == "__main__":
    main()
