"""Feature services: what each consumer reads, by name, versioned (``_v1``) and visible in ``feast ui``.

* ``user_online_v1``: what the models read per request and per training window, a user's
  behaviour (``features/store.py`` retrieves through it online and offline). User entity rows only.
* ``item_profile_v1``: an item's profile (categories, popularity, recent popularity as materialized):
  what ``/recommend`` shows beside each recommended item, one online read for the k items it returns
  (``serving/profiles.py``). Item entity rows only: a lookup keyed by ``item_id`` cannot go through a
  service that also holds the user view.
* ``recommender_v1``: everything the recommender's features describe, user behaviour and item
  profiles, for analysis and batch jobs that join both entities.
"""
from feast import FeatureService
from feature_views import item_profile, user_behaviour

user_online_v1 = FeatureService(
    name="user_online_v1", features=[user_behaviour],
    description="a user's recent behaviour: what the models read at request time and in training windows",
)
item_profile_v1 = FeatureService(
    name="item_profile_v1", features=[item_profile],
    description="an item's categories and popularity as of the last materialization: shown with each recommended item",
)
recommender_v1 = FeatureService(
    name="recommender_v1", features=[user_behaviour, item_profile],
    description="user behaviour and item profiles, for analysis and batch joins over both entities",
)
