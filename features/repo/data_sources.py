"""Offline sources: Parquet files written by the `features` stage (paths relative to this repo)."""
from feast import FileSource, PushSource

user_behaviour_source = FileSource(
    name="user_behaviour_source",
    path="data/offline/user_behaviour.parquet",
    timestamp_field="event_timestamp",
)

# user_behaviour's source. Feast's push API (store.push) is not used: an event rewrites the user's
# whole behaviour row (merged in time order, deduplicated; features/online.py), which pulse writes
# with write_online_rows (features/store.py) under the event log's file lock (core/eventlog.py).
# The PushSource keeps the view push-capable and points the offline side at the Parquet file the
# `features` stage writes.
user_behaviour_push = PushSource(name="user_behaviour_push", batch_source=user_behaviour_source)

item_profile_source = FileSource(
    name="item_profile_source",
    path="data/offline/item_profile.parquet",
    timestamp_field="event_timestamp",
)
