"""Feature views: a user's recent behaviour and an item's profile.

`user_behaviour` has one row per event in the offline store (the state right after that
event), so a point-in-time join at time T returns the state after the last event before T.
"""
from datetime import timedelta

from data_sources import item_profile_source, user_behaviour_push
from entities import item, user
from feast import FeatureView, Field
from feast.types import Array, Float32, Int64, String

user_behaviour = FeatureView(
    name="user_behaviour",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="hist_item_ids", dtype=Array(String), description="last N item ids, oldest first"),
        Field(name="hist_ts", dtype=Array(Int64), description="their unix timestamps (seconds)"),
        Field(name="event_count", dtype=Int64, description="events so far"),
        Field(name="last_event_ts", dtype=Int64, description="unix time of the latest event"),
        Field(name="cat_share_short", dtype=Array(Float32), description="category shares, short half-life (order: categories.json)"),
        Field(name="cat_share_long", dtype=Array(Float32), description="category shares, long half-life (order: categories.json)"),
        Field(name="cat_share_recent", dtype=Array(Float32),
              description="category mix of the newest events, decayed per event: the training-free short-term interest (order: categories.json)"),
    ],
    source=user_behaviour_push,
    online=True,
)

item_profile = FeatureView(
    name="item_profile",
    entities=[item],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="categories", dtype=Array(String)),
        Field(name="popularity", dtype=Int64, description="events up to the snapshot time"),
        Field(name="recent_popularity", dtype=Int64, description="events in the recent window before the snapshot"),
    ],
    source=item_profile_source,
    online=True,
)
