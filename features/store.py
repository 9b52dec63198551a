"""The Feast side: apply the repo, write offline sources, materialize, and read features back.

Only this module talks to Feast, so the rest of pulse deals in DataFrames and dicts.
"""
from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

OFFLINE_DIR = "data/offline"  # relative to the Feast repo, as in data_sources.py
# Retrieval goes through Feast feature services (features/repo/feature_services.py), so what a
# model reads is declared, versioned and visible in `feast ui`, not a list hidden in code.
USER_SERVICE = "user_online_v1"
# the feature list of USER_SERVICE, for readers of this module and the tests; Feast reads the service
USER_BEHAVIOUR_FEATURES = [
    "user_behaviour:hist_item_ids",
    "user_behaviour:hist_ts",
    "user_behaviour:event_count",
    "user_behaviour:last_event_ts",
    "user_behaviour:cat_share_short",
    "user_behaviour:cat_share_long",
    "user_behaviour:cat_share_recent",
]


def get_store(repo_dir: Path):
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo_dir))


REPO_MODULES = ("entities", "data_sources", "feature_views", "feature_services")


def load_repo_objects(repo_dir: Path) -> list:
    """Every Feast object declared in the repo's files (one object kind per file).

    The files import each other by bare name, as under ``feast apply``, so the repo folder is
    put on sys.path for the import and taken off again.
    """
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    root = str(Path(repo_dir).resolve())
    sys.path.insert(0, root)
    try:
        modules = [importlib.import_module(m) for m in REPO_MODULES]
    finally:
        sys.path.remove(root)
    objects: list = []
    for mod in modules:
        for value in vars(mod).values():
            if isinstance(value, (Entity, DataSource, FeatureView, FeatureService)) and not any(value is o for o in objects):
                objects.append(value)
    return objects


def apply_repo(repo_dir: Path) -> list[str]:
    """The Python form of ``feast apply``: register every object declared in the repo."""
    objects = load_repo_objects(repo_dir)
    get_store(repo_dir).apply(objects)
    names = sorted({o.name for o in objects})
    log.info("feast apply: %s", names)
    return names


def write_offline(repo_dir: Path, user_behaviour: pd.DataFrame, item_profile: pd.DataFrame) -> dict[str, Path]:
    out = Path(repo_dir) / OFFLINE_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = {"user_behaviour": out / "user_behaviour.parquet", "item_profile": out / "item_profile.parquet"}
    user_behaviour.to_parquet(paths["user_behaviour"], index=False)
    item_profile.to_parquet(paths["item_profile"], index=False)
    return paths


def materialize(repo_dir: Path, start: pd.Timestamp, end: pd.Timestamp) -> None:
    """Load the latest feature rows in [start, end] into the SQLite online store."""
    get_store(repo_dir).materialize(start_date=start.to_pydatetime(), end_date=end.to_pydatetime())


def historical_user_behaviour(repo_dir: Path, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join: for each (user_id, event_timestamp) row, the state strictly before it.

    Callers pass the target's feature timestamp minus one microsecond, so the row never sees
    the target event itself nor anything after it.
    """
    fs = get_store(repo_dir)
    job = fs.get_historical_features(entity_df=entity_df, features=user_service(fs))
    return job.to_df()


def user_service(store):
    """The registered ``user_online_v1`` feature service (from the registry cache: no file read
    per request on the serving path)."""
    return store.get_feature_service(USER_SERVICE, allow_cache=True)


def online_user_behaviour(store, user_ids: list[str]) -> list[dict]:
    """Current behaviour of each user from the online store, through the ``user_online_v1``
    feature service (None values for unknown users)."""
    resp = store.get_online_features(features=user_service(store), entity_rows=[{"user_id": u} for u in user_ids]).to_dict()
    return [{k: resp[k][i] for k in resp} for i in range(len(user_ids))]
