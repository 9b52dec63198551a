"""Feature services: what each consumer reads, by name, versioned (``_v1``) and visible in ``feast ui``.

* ``user_online_v1``: what the models read per request and per training window, a user's
  behaviour (``features/store.py`` retrieves through it online and offline). User entity rows only.
* ``recommender_v1``: everything the recommender's features describe, user behaviour and item
  profiles, for analysis and batch jobs that join both entities (an item_profile lookup needs
  ``item_id`` entity rows, which a per-user request does not have).
"""
from feast import FeatureService
from feature_views import item_profile, user_behaviour

user_online_v1 = FeatureService(
    name="user_online_v1", features=[user_behaviour],
    description="a user's recent behaviour: what the models read at request time and in training windows",
)
recommender_v1 = FeatureService(
    name="recommender_v1", features=[user_behaviour, item_profile],
    description="user behaviour and item profiles, for analysis and batch joins over both entities",
)
