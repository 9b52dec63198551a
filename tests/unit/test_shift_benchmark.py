"""serving.shift_benchmark: the counting rules of the interest-shift benchmark."""
from __future__ import annotations

import numpy as np

import pandas as pd

from serving.shift_benchmark import events_to_shift, first_switch, share_curve, static_profile_top, summarize

PRIMARY = {f"a{k}": "A" for k in range(10)} | {f"b{k}": "B" for k in range(10)}


def _top(n_b: int) -> list[str]:
    return [f"b{k}" for k in range(n_b)] + [f"a{k}" for k in range(10 - n_b)]


def test_events_to_shift_counts_until_half_of_the_top_k_is_new():
    tops = [_top(2), _top(4), _top(5), _top(3)]
    assert events_to_shift(tops, PRIMARY, "B") == 3  # the first list with >= 5 of 10, 1-based
    assert events_to_shift([_top(4)] * 5, PRIMARY, "B") is None
    assert events_to_shift([_top(10)], PRIMARY, "B") == 1


def test_share_curve_averages_over_users_that_have_that_many_events():
    curve = share_curve([[_top(2), _top(6)], [_top(4)]], PRIMARY, ["B", "B"], n=3)
    assert curve[:2] == [0.3, 0.6] and np.isnan(curve[2])


def test_summarize_counts_never_as_cap_plus_one():
    s = summarize([1, 3, None, 5], cap=20)
    assert s["median"] == 4.0 and s["never_within_cap"] == 1 and s["users"] == 4
    assert s["p90"] > 5  # the never-shifted user weighs in as 21


def test_static_profile_ignores_order_and_excludes_history():
    text = np.eye(5)
    text[0] = 0
    pos = {f"i{k}": k for k in range(1, 5)}
    ids = [f"i{k}" for k in range(1, 5)]
    text[3] = [0, 1, 0, 0, 0]  # i3 looks like i1
    a = static_profile_top(text, pos, ids, ["i1", "i2"], 2)
    b = static_profile_top(text, pos, ids, ["i2", "i1"], 2)
    assert a == b and a[0] == "i3" and not {"i1", "i2"} & set(a)


def test_first_switch_replays_only_the_episode_after_the_first_switch():
    g = pd.DataFrame({"item_id": [f"x{k}" for k in range(9)], "episode": [0, 0, 0, 1, 1, 1, 1, 2, 2]})
    before, after = first_switch(g, max_events=20)
    assert before["item_id"].tolist() == ["x0", "x1", "x2"]
    assert after["item_id"].tolist() == ["x3", "x4", "x5", "x6"]  # stops at the second switch
    assert first_switch(g, max_events=2)[1]["item_id"].tolist() == ["x3", "x4"]
