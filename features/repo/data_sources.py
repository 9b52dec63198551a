"""Offline sources: Parquet files written by the `features` stage (paths relative to this repo)."""
from feast import FileSource, PushSource

user_behaviour_source = FileSource(
    name="user_behaviour_source",
    path="data/offline/user_behaviour.parquet",
    timestamp_field="event_timestamp",
)

# The service pushes fresh behaviour here when an event arrives (online updates without retraining).
user_behaviour_push = PushSource(name="user_behaviour_push", batch_source=user_behaviour_source)

item_profile_source = FileSource(
    name="item_profile_source",
    path="data/offline/item_profile.parquet",
    timestamp_field="event_timestamp",
)
