"""Entities: who and what the features describe."""
from feast import Entity
from feast.value_type import ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="a user id (string)")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="an item id (string)")
