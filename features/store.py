"""The Feast side: apply the repo, write offline sources, materialize, and read features back.

Every call into Feast's API is in this module, so the rest of pulse deals in DataFrames and dicts.
The Feast objects themselves are declared in ``features/repo/`` (which Feast, and
``load_repo_objects`` here, load by path). Other modules only hold what this one returns: the
service and the ``features`` stage open the store with ``get_store`` and hand it to
``OnlineBehaviour``; ``models/train.py`` reads the training set through ``historical_user_behaviour``.

The online store is the repo's ``feature_store.yaml`` (SQLite, embedded, one machine) unless
``PULSE_ONLINE_STORE`` names another: ``redis://[:password@]host:port[/db]`` (``rediss://`` for TLS)
puts it on a Redis server that every worker and replica of the service shares, for the pipeline's
``feast apply`` and materialization as for the service (``online_store_override``).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import logging
import sys
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import pandas as pd

from features.rows import ServiceRows

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
# what /recommend shows beside each recommended item (serving/profiles.py); the feature list is the service's
ITEM_SERVICE = "item_profile_v1"


ONLINE_STORE_ENV = "PULSE_ONLINE_STORE"
FS_YAML = "feature_store.yaml"
# the repo's feature_store.yaml with the online store of PULSE_ONLINE_STORE, for `feast -f ... apply`
# (in data/, which .feastignore and .gitignore leave out: it may hold the Redis password)
OVERRIDE_YAML = "data/feature_store.online.yaml"
REDIS_LOCK_KEY = "pulse:online-write-lock"


def online_store_override(url: str | None = None) -> dict | None:
    """The Feast ``online_store`` config that ``url`` (default: ``$PULSE_ONLINE_STORE``) names, or
    None for the repo's own (SQLite): empty or ``sqlite`` keep it; ``redis://[user:password@]host[:port][/db]``
    and ``rediss://`` (TLS) give Feast's Redis store.

    ``skip_dedup``: Feast's Redis write skips a row whose event timestamp is not newer than the
    stored one; pulse's rows carry the user's newest event time, so a late event (older than the
    newest) or a second event in the same second would be dropped. pulse's writers read, merge
    and write a whole row under a lock (``OnlineBehaviour.write_lock``), so the row they write is
    always the newest state: every write must land.
    """
    url = (os.environ.get(ONLINE_STORE_ENV, "") if url is None else url).strip()
    if not url or url.lower() == "sqlite":
        return None
    u = urlsplit(url)
    if u.scheme not in ("redis", "rediss") or not u.hostname:
        raise ValueError(f"{ONLINE_STORE_ENV}={url!r}: expected redis://host:port[/db] (or rediss://, or sqlite / empty for the repo's SQLite store)")
    parts = [f"{u.hostname}:{u.port or 6379}"]
    db = u.path.strip("/")
    if db:
        if not db.isdigit():
            raise ValueError(f"{ONLINE_STORE_ENV}: the database must be a number (redis://host:port/0), not {db!r}")
        parts.append(f"db={int(db)}")
    for key, value in (("username", u.username), ("password", u.password)):
        if value:
            value = unquote(value)
            if "," in value or "=" in value:
                raise ValueError(f"{ONLINE_STORE_ENV}: Feast's Redis connection string cannot carry a {key} with ',' or '='")
            parts.append(f"{key}={value}")
    if u.scheme == "rediss":
        parts.append("ssl=true")
    return {"type": "redis", "connection_string": ",".join(parts), "skip_dedup": True}


def _repo_yaml(repo_dir: Path, online: dict | None) -> dict:
    import yaml

    raw = yaml.safe_load((Path(repo_dir) / FS_YAML).read_text())
    if online is not None:
        raw["online_store"] = online
    return raw


def repo_config(repo_dir: Path, url: str | None = None):
    """Feast's RepoConfig of the repo, with the online store of ``url`` / ``$PULSE_ONLINE_STORE``."""
    from feast.repo_config import RepoConfig

    config = RepoConfig(**_repo_yaml(repo_dir, online_store_override(url)))
    config.repo_path = Path(repo_dir)
    return config


def get_store(repo_dir: Path, url: str | None = None):
    """The repo's FeatureStore; its online store is the repo's SQLite one unless ``url`` or
    ``$PULSE_ONLINE_STORE`` says otherwise (``online_store_override``)."""
    from feast import FeatureStore

    if online_store_override(url) is None:
        return FeatureStore(repo_path=str(repo_dir))
    return FeatureStore(repo_path=str(repo_dir), config=repo_config(repo_dir, url))


def online_store_kind(store) -> str:
    """``sqlite``, ``redis``, ...: the type of the store's online store."""
    return str(getattr(store.config.online_store, "type", "sqlite"))


def apply_repo(repo_dir: Path) -> list[str]:
    """``feast apply`` on the repo: Feast's own CLI, so the stage does exactly what an operator
    does by hand in ``features/repo`` (it imports the repo's files, registers every object,
    removes the ones deleted from the files, and creates the online tables). Returns the names of
    the registered objects. With ``$PULSE_ONLINE_STORE`` it applies with that online store
    (``feast -f data/feature_store.online.yaml apply``), so Feast prepares the store the service reads."""
    import yaml

    feast = Path(sys.executable).with_name("feast")
    cmd = [str(feast) if feast.exists() else "feast", "apply"]
    online = online_store_override()
    if online is not None:
        path = Path(repo_dir) / OVERRIDE_YAML
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(_repo_yaml(repo_dir, online), sort_keys=False))
        path.chmod(0o600)
        cmd[1:1] = ["-f", str(path.resolve())]
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
    """Load the latest feature rows in [start, end] into the online store (SQLite, or ``$PULSE_ONLINE_STORE``)."""
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
    feature service (None values for unknown users), as ``get_online_features`` answers it
    (``features/rows.py``). A long-lived reader holds the resolved ``ServiceRows`` instead
    (``OnlineBehaviour``): resolving costs more than the read itself."""
    return [row for row, _ in ServiceRows(store, service or user_service(store)).read(user_ids)]


def item_service(store):
    """The registered ``item_profile_v1`` feature service (from the registry cache, as ``user_service``)."""
    return store.get_feature_service(ITEM_SERVICE, allow_cache=True)


def online_item_profiles(store, item_ids: list[str], rows: ServiceRows | None = None) -> list[dict]:
    """Each item's profile from the online store, through ``item_profile_v1``: its features by name
    and ``as_of``, the unix seconds of the snapshot they describe (popularity counts events up to
    it). An item the store lacks (posted after the last materialization) gets None for each. One
    batched read, whatever the number of items; a long-lived reader passes the ``rows`` it resolved once."""
    if not item_ids:
        return []
    rows = rows or ServiceRows(store, item_service(store))
    out = []
    for row, ts in rows.read(item_ids):
        profile = {k: v for k, v in row.items() if k != rows.join_key}
        profile["as_of"] = ts if any(v is not None for v in profile.values()) else None
        out.append(profile)
    return out


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


def sqlite_wal(store) -> None:
    """Put a SQLite online store in write-ahead-log mode, with every commit still fsync'd
    (``synchronous=FULL``); a Redis store is left alone, and a database that cannot switch (one
    another writer holds locked past SQLite's busy timeout, a read-only file) stays as it is, logged.

    Why: an event's online write is one small transaction on the path of "the next recommendation
    follows", and in SQLite's default rollback-journal mode its commit syncs the journal and the
    database several times. In WAL mode the commit appends to the ``-wal`` file and syncs it once
    (one user row on the 2-core machine, rollback journal against WAL: 20 against 4.6 ms p50 while
    other processes kept the disk busy; 1.7 against 1.0 p50 and 23 against 15 ms p99, write by
    write interleaved, on a quieter disk). As durable: a committed transaction is in the synced log, which
    SQLite replays on the next open (so the ``-wal`` file beside the database is part of it until
    the last connection closes: copy or delete them together). The mode is recorded in the database
    file, so the pipeline's writers and readers use it too."""
    if online_store_kind(store) != "sqlite":
        return
    conn = store._get_provider().online_store._get_conn(store.config)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous=FULL")  # per connection: every commit reaches the disk before it returns
    except Exception as e:  # sqlite3.OperationalError: database is locked, or read-only
        mode = f"{type(e).__name__}: {e}"
    if str(mode).lower() != "wal":
        log.warning("the SQLite online store stays out of WAL mode (%s): each online write syncs more than once", mode)


class OnlineBehaviour:
    """The online rows of ``user_behaviour``, with the feature service and view resolved once.

    What a long-lived reader and writer (the service) holds: resolving them from the registry
    costs more than a read (~1.5 ms of ~2) or a write (~2 ms of ~5) itself. A SQLite store is
    switched to WAL mode (``sqlite_wal``) for commits that sync once.
    """

    def __init__(self, store) -> None:
        self.store = store
        self.rows = ServiceRows(store, user_service(store))
        self.view = store.get_feature_view("user_behaviour", allow_registry_cache=True)
        sqlite_wal(store)

    def read(self, user_ids: list[str]) -> list[dict]:
        """Each user's row, as ``online_user_behaviour``."""
        return [row for row, _ in self.rows.read(user_ids)]

    def write(self, rows: list[dict]) -> None:
        write_online_rows(self.store, self.view, rows)

    @property
    def shared(self) -> bool:
        """The online store is a server other processes write too (Redis), not this machine's SQLite file."""
        return online_store_kind(self.store) == "redis"

    def redis(self):
        """The redis-py client of a Redis online store (Feast's own connection), else None."""
        if not self.shared:
            return None
        return self.store._get_provider().online_store._get_client(self.store.config.online_store)

    @contextlib.contextmanager
    def write_lock(self, timeout_s: float = 30.0) -> Iterator[None]:
        """Serialise read-modify-writes of user rows across every process that shares the store.

        The event log's file lock covers the processes of one machine and one log; replicas on a
        shared Redis each keep their own log, so on Redis a Redis lock (``SET NX`` with an expiry,
        redis-py's ``Lock``) is taken as well. On SQLite this is a no-op.
        """
        client = self.redis()
        if client is None:
            yield
            return
        lock = client.lock(REDIS_LOCK_KEY, timeout=timeout_s, blocking_timeout=timeout_s)
        if not lock.acquire():
            raise TimeoutError(f"could not take the Redis lock {REDIS_LOCK_KEY} in {timeout_s:.0f} s")
        try:
            yield
        finally:
            try:
                lock.release()
            except Exception:  # expired meanwhile (a write over timeout_s): another writer may hold it now
                log.warning("the Redis lock %s expired before its release", REDIS_LOCK_KEY)
