"""serving.profiles: the recommended items' profiles from a real (local) Feast online store.

What a ``/recommend`` item carries: its ``item_profile`` row as materialized, read through the
``item_profile_v1`` feature service in one batched read; null features for an item posted after
the materialization, and ``profile: null`` (never an error) when the store cannot be read.
"""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from feast.value_type import ValueType

from features import store, transforms
from models import artifacts
from models.inference import Engine
from models.interest import InterestConfig, InterestModel
from serving import schemas
from serving.profiles import ItemProfiles
from tests.unit.helpers import build_feast_repo
from tests.unit.test_feast_store import HISTORY_LEN, ITEMS, S, _interactions

DIM = 8
RECENT_DAYS = 0.5


@pytest.fixture(scope="module")
def feast_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("feast-items") / "repo"
    inter = _interactions()
    _, timeline = build_feast_repo(repo, inter, ITEMS, HISTORY_LEN, 1.0, 30.0, recent_days=RECENT_DAYS)
    store.materialize(repo, timeline["event_timestamp"].min() - S, inter["ts"].max() + S)
    return repo, inter


@pytest.fixture()
def engine(tmp_path) -> Engine:
    """A packaged interest model over the repo's items, plus one posted after materialization."""
    torch.manual_seed(0)
    ids = ITEMS["item_id"].tolist()
    text = torch.randn(len(ids) + 1, DIM)
    text[0] = 0
    cfg = InterestConfig(n_items=len(ids), text_dim=DIM, dim=16, max_len=6, n_layers=1, n_heads=2, dropout=0.0)
    artifacts.save(tmp_path / "model", ids, text, {"interest": InterestModel(cfg, text)}, {"dataset": "t"}, ids)
    eng = Engine(tmp_path / "model", "interest")
    eng.upsert_items(["posted"], ["Posted after the snapshot"], torch.randn(1, DIM))
    return eng


def test_recommended_items_carry_their_materialized_profile_and_nulls_when_unmaterialized(feast_repo, engine):
    repo, inter = feast_repo
    fs = store.get_store(repo)
    reads = []
    provider = fs._get_provider()  # what every online read goes through (features/rows.py)
    real = provider.online_read
    provider.online_read = lambda config, table, keys, *rest: reads.append(keys) or real(config, table, keys, *rest)
    items = engine.recommend(["i1"], [1_700_000_000], k=7, exclude_seen=False).items
    assert {i["item_id"] for i in items} == {*ITEMS["item_id"], "posted"}  # every item, the posted one too
    got = {i["item_id"]: i for i in ItemProfiles(fs).attach([items])[0]}
    assert len(reads) == 1 and len(reads[0]) == 7  # one batched read of the returned items, nothing more
    first, second = ItemProfiles(fs).attach([items[:4], items[2:]])  # a batch of two answers sharing two items
    assert len(reads) == 2 and len(reads[1]) == 7  # one read of the distinct items of the batch
    assert first == [got[i["item_id"]] for i in items[:4]] and second == [got[i["item_id"]] for i in items[2:]]
    now = inter["ts"].max()
    expected = transforms.item_profile(inter, ITEMS, now, RECENT_DAYS).set_index("item_id")
    for item_id, row in expected.iterrows():
        profile = got[item_id]["profile"]
        assert profile == {"categories": list(row["categories"]), "popularity": int(row["popularity"]),
                           "recent_popularity": int(row["recent_popularity"]), "as_of": int(now.timestamp())}, item_id
        assert got[item_id]["score"] == next(i["score"] for i in items if i["item_id"] == item_id)  # the item, unchanged
    assert got["i6"]["profile"]["popularity"] == 3 and got["i6"]["profile"]["recent_popularity"] == 1
    assert got["posted"]["profile"] == {"categories": None, "popularity": None, "recent_popularity": None, "as_of": None}
    body = schemas.RecommendResponse.model_validate({  # the response keeps the nulls (the features exist, unknown here)
        "user_id": "u", "model": "interest", "model_tag": "m:1", "cold_start": False, "items": list(got.values()),
        "because": [], "interest": {"in_switch": None, "recent_categories": []}}).model_dump(mode="json")
    assert next(i for i in body["items"] if i["item_id"] == "posted")["profile"]["popularity"] is None


def test_the_profile_is_the_registered_services_feature_list(feast_repo):
    """What a profile holds is what ``item_profile_v1`` declares in the registry (no list in
    code), and the response model documents each of those features."""
    repo, _ = feast_repo
    fs = store.get_store(repo)
    service = fs.get_feature_service(store.ITEM_SERVICE)
    declared = {f.name for p in service.feature_view_projections for f in p.features}
    assert declared <= set(schemas.ItemProfile.model_fields)
    assert set(store.online_item_profiles(fs, ["i1"])[0]) == declared | {"as_of"}
    from feast import FeatureService

    narrowed = FeatureService(name=store.ITEM_SERVICE, features=[fs.get_feature_view("item_profile")[["popularity"]]])
    fs.apply([narrowed])
    try:
        assert ItemProfiles(store.get_store(repo)).read(["i6"]) == [{"popularity": 3, "as_of": int(_interactions()["ts"].max().timestamp())}]
    finally:
        fs.apply([service])
    assert store.online_item_profiles(fs, []) == []


class _BrokenStore:
    """A store whose registry lacks the service, or whose online read fails."""

    def __init__(self, registered: bool) -> None:
        self.registered, self.config = registered, None

    def get_feature_service(self, name, allow_cache=True):  # noqa: ANN201
        if not self.registered:
            raise KeyError(f"feature service {name} not found")
        return SimpleNamespace(name=name, feature_view_projections=[SimpleNamespace(name="item_profile", features=[])])

    def get_feature_view(self, name, allow_registry_cache=True):  # noqa: ANN201
        key = SimpleNamespace(name="item_id", dtype=SimpleNamespace(to_value_type=lambda: ValueType.STRING))
        return SimpleNamespace(name=name, entity_columns=[key])

    def _get_provider(self):  # noqa: ANN202
        def online_read(*args):  # noqa: ANN202
            raise ConnectionError("online store unreachable")
        return SimpleNamespace(online_read=online_read)


@pytest.mark.parametrize("registered", [False, True])
def test_profiles_that_cannot_be_read_are_null_never_an_error(registered, caplog):
    items = [{"item_id": "i1", "title": "t", "score": 1.0}, {"item_id": "i2", "title": "u", "score": 0.5}]
    with caplog.at_level(logging.WARNING, logger="serving.profiles"):
        got = ItemProfiles(_BrokenStore(registered)).attach([items])
    assert got == [[{**i, "profile": None} for i in items]]
    assert ("online store" if registered else store.ITEM_SERVICE) in caplog.text
    assert ItemProfiles(_BrokenStore(registered)).attach([]) == [] and ItemProfiles(_BrokenStore(registered)).attach([[]]) == [[]]


def test_profiles_read_within_the_ttl_are_kept_and_read_again_after_it(feast_repo):
    """A worker keeps the profiles it read for ``ttl_s`` (they change only at materialization): a
    second answer within it reads only the items it has not seen, one after it reads again."""
    repo, _ = feast_repo
    fs = store.get_store(repo)
    reads = []
    provider = fs._get_provider()
    real = provider.online_read
    provider.online_read = lambda config, table, keys, *rest: reads.append(len(keys)) or real(config, table, keys, *rest)
    now = [0.0]
    profiles = ItemProfiles(fs, ttl_s=30.0, clock=lambda: now[0])
    first = profiles.read(["i1", "i2"])
    assert reads == [2] and first[0] is not None and first[0]["as_of"] is not None
    assert profiles.read(["i2", "i3", "i2"]) == [first[1], profiles.read(["i3"])[0], first[1]]
    assert reads == [2, 1]  # only i3 was read; the repeat of i2 and the later i3 came from what was kept
    now[0] = 31.0
    assert profiles.read(["i1"]) == [first[0]] and reads == [2, 1, 1]  # past the TTL: read again
    plain = ItemProfiles(fs)  # ttl 0: every read goes to the store
    plain.read(["i1"]), plain.read(["i1"])
    assert reads == [2, 1, 1, 1, 1]


def test_the_profile_ttl_comes_from_the_environment_and_rejects_nonsense(monkeypatch):
    from serving.profiles import TTL_ENV, profile_ttl_from_env

    monkeypatch.delenv(TTL_ENV, raising=False)
    assert profile_ttl_from_env() == 30.0
    monkeypatch.setenv(TTL_ENV, "0")
    assert profile_ttl_from_env() == 0.0
    for bad in ("-1", "soon", "nan", "inf"):
        monkeypatch.setenv(TTL_ENV, bad)
        with pytest.raises(ValueError, match=TTL_ENV):
            profile_ttl_from_env()
