"""Feature services: one per model version, naming exactly what that model reads."""
from feast import FeatureService
from feature_views import item_profile, user_behaviour

recommender_v1 = FeatureService(name="recommender_v1", features=[user_behaviour, item_profile])
