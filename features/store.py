"""The Feast side: apply the repo, write offline sources, materialize, and read features back.

Every call into Feast's API is in this module, so the rest of pulse deals in DataFrames and dicts.
The Feast objects themselves are declared in ``features/repo/`` (which Feast, and
``load_repo_objects`` here, load by path). Other modules only hold what this one returns: the
service and the ``features`` stage open the store with ``get_store`` and hand it to
``OnlineBehaviour``; ``models/train.py`` reads the training set through ``historical_user_behaviour``.
"""
from __future__ import annotations

import os
import subprocess
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


def apply_repo(repo_dir: Path) -> list[str]:
    """``feast apply`` on the repo: Feast's own CLI, so the stage does exactly what an operator
    does by hand in ``features/repo`` (it imports the repo's files, registers every object,
    removes the ones deleted from the files, and creates the online tables). Returns the names of
    the registered objects."""
    feast = Path(sys.executable).with_name("feast")
    cmd = [str(feast) if feast.exists() else "feast", "apply"]
    env = {**os.environ, "FEAST_USAGE": "False"}  # no usage telemetry from pipeline runs
    proc = subprocess.run(cmd, cwd=Path(repo_dir), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"`feast apply` in {repo_dir} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    store = get_store(repo_dir)
    names = sorted({o.name for o in [*store.list_entities(), *store.list_data_sources(), *store.list_feature_views(),
                                     *store.list_feature_services()]})
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


def online_user_behaviour(store, user_ids: list[str], service=None) -> list[dict]:
    """Current behaviour of each user from the online store, through the ``user_online_v1``
    feature service (None values for unknown users). A long-lived reader (the service) passes
    the ``service`` it resolved once: resolving it costs more than the read itself (~1.5 ms of ~2)."""
    resp = store.get_online_features(features=service or user_service(store), entity_rows=[{"user_id": u} for u in user_ids]).to_dict()
    return [{k: resp[k][i] for k in resp} for i in range(len(user_ids))]


def write_online_rows(store, view, rows: list[dict]) -> None:
    """Write rows (the view's join keys, every feature, ``event_timestamp``) to the online store.

    The same write as ``store.write_to_online_store(view_name, pd.DataFrame(rows))``, minus its
    DataFrame -> Arrow -> proto round trip: that costs ~6 of the ~9 ms of one event's online write
    (the 2-core machine, one user row), and an event's write is on the path of the promise
    "the next recommendation follows". Values go through Feast's own ``python_values_to_proto_values``
    and the provider's ``online_write_batch``, as its ingestion does; a unit test checks that both
    writes read back the same. ``view``: its name, or the FeatureView a long-lived writer resolved once.
    """
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.type_map import python_values_to_proto_values

    if not rows:
        return
    fv = store.get_feature_view(view, allow_registry_cache=True) if isinstance(view, str) else view
    keys = {e.name: e.dtype.to_value_type() for e in fv.entity_columns}
    features = [(f.name, f.dtype.to_value_type()) for f in fv.features]
    data = []
    for r in rows:
        key = EntityKeyProto(join_keys=list(keys),
                             entity_values=[python_values_to_proto_values([r[k]], t)[0] for k, t in keys.items()])
        values = {name: python_values_to_proto_values([r[name]], t)[0] for name, t in features}
        data.append((key, values, pd.Timestamp(r["event_timestamp"]).to_pydatetime(), None))
    store._get_provider().online_write_batch(store.config, fv, data, progress=None)


class OnlineBehaviour:
    """The online rows of ``user_behaviour``, with the feature service and view resolved once.

    What a long-lived reader and writer (the service) holds: resolving them from the registry
    costs more than a read (~1.5 ms of ~2) or a write (~2 ms of ~5) itself.
    """

    def __init__(self, store) -> None:
        self.store = store
        self.service = user_service(store)
        self.view = store.get_feature_view("user_behaviour", allow_registry_cache=True)

    def read(self, user_ids: list[str]) -> list[dict]:
        return online_user_behaviour(self.store, user_ids, self.service)

    def write(self, rows: list[dict]) -> None:
        write_online_rows(self.store, self.view, rows)
