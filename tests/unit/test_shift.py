"""models.shift: the interest-shift figures as formulas, episodes from ground truth or the category
mix, the spliced validation switches and the reference rows; switch augmentation of training windows."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from features.adapters import synthetic
from core.params import SyntheticParams
from models.data import UserSequence, pad_left, splice_windows
from models.shift import (Episode, RecentMajority, StaticProfile, detect_episodes, episodes_from_truth, primary_categories, replay,
                          spliced_switch_set, summarize)

# items 1..30: category A, 31..40: category B
PRIMARY = {i: "A" if i <= 30 else "B" for i in range(1, 41)}
CODE = torch.tensor([-1] + [0 if i <= 30 else 1 for i in range(1, 41)])
POP = torch.arange(41, 0, -1).float()  # lower index, more popular


def _episode(n_hist: int = 12, new: tuple[int, ...] = (31, 32, 33, 34, 35)) -> Episode:
    hist = np.array([1 + k % 30 for k in range(n_hist)])
    return Episode("u", hist, np.arange(n_hist) * 100, np.array(new), 10_000 + np.arange(len(new)) * 100, "B")


def test_summarize_counts_never_as_cap_plus_one_and_reads_the_share_curve():
    shares = [[0.0, 0.6, 1.0], [0.0, 0.0, 0.0]]
    s = summarize(shares, hits=[1.0, 0.0, 0.0, 1.0], cap=3)
    assert s["median_events_to_half"] == 3.0  # 2 and never (= cap + 1 = 4)
    assert s["never_share"] == 0.5
    assert s["new_interest_share_after"]["1"] == 0.0 and s["new_interest_share_after"]["3"] == 0.5
    assert s["new_interest_share_after"]["10"] == 0.5  # an episode shorter than 10 counts its last step
    assert s["next_event_hr@10"] == 0.5


def test_the_last3_heuristic_turns_after_two_events_and_the_static_profile_never():
    eps = [_episode()]
    heuristic = replay(RecentMajority(CODE, POP), eps, PRIMARY, max_len=32)
    assert heuristic["median_events_to_half"] == 2.0  # after 1 event the majority of the last 3 is still A
    assert heuristic["new_interest_share_after"]["1"] == 0.0
    assert heuristic["new_interest_share_after"]["3"] == 0.7  # every unseen B item (10 - 3) leads the top-10
    text = torch.cat([torch.zeros(1, 2), torch.tensor([[1.0, 0.0]] * 30 + [[0.0, 1.0]] * 10)])
    static = replay(StaticProfile(text), eps, PRIMARY, max_len=32)
    assert static["never_share"] == 1.0


def test_replay_hr_counts_each_next_event_once():
    # after 31 the last three are still mostly A (32 missed); after 32 the B items lead (33 hit)
    r = replay(RecentMajority(CODE, POP), [_episode(new=(31, 32, 33))], PRIMARY, max_len=32)
    assert r["steps"] == 2  # after event 1 predict event 2, after event 2 predict event 3
    assert r["next_event_hr@10"] == 0.5  # step 1: the majority is still A, so 12 is not in the top 10


def test_episodes_from_truth_split_at_the_first_switch():
    truth = pd.DataFrame({"user_id": ["u"] * 6 + ["v"] * 3, "item_id": ["i1", "i2", "i3", "i4", "i5", "i6", "i1", "i2", "i3"],
                          "ts": pd.to_datetime(np.arange(9) * 60, unit="s", utc=True), "true_interest": ["A"] * 3 + ["B"] * 3 + ["A"] * 3,
                          "shifts": [True] * 6 + [False] * 3, "episode": [0, 0, 0, 1, 1, 2, 0, 0, 0]})
    eps = episodes_from_truth(truth, {f"i{k}": k for k in range(1, 7)}, max_events=10)
    assert len(eps) == 1 and eps[0].hist.tolist() == [1, 2, 3] and eps[0].new.tolist() == [4, 5] and eps[0].interest == "B"


def test_detect_episodes_finds_a_switch_in_the_category_mix():
    items = np.array([1 + k % 30 for k in range(15)] + [31, 32, 33, 2, 34, 35])
    seqs = {"u": UserSequence(items, np.arange(len(items))), "steady": UserSequence(np.array([1 + k % 30 for k in range(30)]), np.arange(30))}
    eps = detect_episodes(seqs, PRIMARY, max_events=20)
    assert [e.user for e in eps] == ["u"]
    assert len(eps[0].hist) == 15 and eps[0].interest == "B" and eps[0].new[0] == 31


def test_spliced_switch_set_feeds_1_to_n_donor_events_and_excludes_what_was_fed():
    rng = np.random.default_rng(0)
    seqs = {f"a{k}": UserSequence(rng.integers(1, 31, 15), np.arange(15) * 60) for k in range(5)}
    seqs |= {f"b{k}": UserSequence(rng.integers(31, 41, 15), np.arange(15) * 60) for k in range(5)}
    text = torch.cat([torch.zeros(1, 2), torch.tensor([[1.0, 0.0]] * 30 + [[0.0, 1.0]] * 10)])
    data = spliced_switch_set(seqs, text, max_len=32, n_fed=3, max_users=4, seed=1)
    assert len(data.targets) == 4 * 3
    for u, seq, target, ex in zip(data.users, data.seq, data.targets, data.exclude):
        recipient, donor = u.split("<")[0], u.split("<")[1].split(":")[0]
        assert recipient[0] != donor[0]  # the least similar candidate: the other category
        fed = int(u.split(":")[1])
        hist = seqs[recipient].items[:-2]
        assert seq[seq > 0][: len(hist)].tolist() == hist.tolist() and (seq > 0).sum() == len(hist) + fed
        assert set(np.unique(seq[seq > 0])) == set(ex.tolist())
        assert (target > 30) == (donor[0] == "b")
    assert all((np.diff(t[s > 0]) >= 0).all() and tt >= t[-1] for s, t, tt in zip(data.seq, data.ts, data.target_ts))  # re-timed in order


def test_splice_windows_adds_spliced_rows_whose_labels_are_their_inputs_shifted():
    L = 6
    seq = np.array([pad_left([1, 2, 3], L), pad_left([4, 5, 6, 7], L)])
    lab = np.array([pad_left([2, 3, 8], L), pad_left([5, 6, 7, 9], L)])
    w = splice_windows((seq, seq * 10, lab, lab * 10), 1.5, seed=0)
    assert len(w[0]) == 2 + 3
    for s, t, lb, lt in zip(*(a[2:] for a in w)):
        full = np.append(s[s > 0], lb[-1])
        assert lb[s > 0].tolist() == full[1:].tolist()  # next-item labels of the spliced sequence
        assert (np.diff(np.append(t[s > 0], lt[-1])) > 0).all()  # time runs forward across the splice
    assert splice_windows((seq, seq, lab, lab), 0.0, 0)[0] is seq


def test_stationary_generator_keeps_switches_out_of_the_interactions():
    p = SyntheticParams(n_users=30, n_items=60, n_categories=6, events_per_user=20, switch_in_training=False, held_out_events=7)
    inter, items, truth = synthetic.generate(p)
    seen = truth[~truth["held_out"]]
    assert len(seen) == len(inter) and (seen["episode"] == 0).all()  # no switch inside any history
    held = truth[truth["held_out"]]
    switching = truth.loc[truth["shifts"], "user_id"].unique()
    assert len(held) == 7 * len(switching) and (held["episode"] == 1).all()
    last_seen = seen.groupby("user_id")["ts"].max()
    assert (held.groupby("user_id")["ts"].min() > last_seen[held["user_id"].unique()]).all()  # after the history


def test_shop_generator_has_its_own_vocabulary():
    media = synthetic.generate(SyntheticParams(n_users=5, n_items=40, n_categories=6, events_per_user=10))[1]
    shop = synthetic.generate(dataclasses.replace(SyntheticParams(n_users=5, n_items=40, n_categories=6, events_per_user=10), vocabulary="shop"))[1]
    words = lambda df: {w.strip(".,|>#").lower() for t in df["text"] for w in t.split() if w.strip(".,|>#").isalpha()}  # noqa: E731
    assert not set(primary_categories(shop["categories"]).values()) & set(primary_categories(media["categories"]).values())
    assert len(words(shop) & words(media)) < 0.1 * len(words(shop))


def test_pool_merges_the_runs_of_earlier_reports_without_running_anything(tmp_path, monkeypatch):
    import json
    import sys

    from benchmarks import shift as bench

    def run(seed: int, hr: float, users: int) -> dict:
        row = {"users": users, "median_events_to_half": 2, "p90_events_to_half": 3, "never_share": 0.0, "next_event_hr@10": hr,
               "new_interest_share_after": {"1": 0.1, "3": 0.8, "5": 0.9, "10": 0.9}}
        return {"generator": "media", "seed": seed, "switching_users": users, "episodes_from": "held-out ground truth", "rows": {"m": row}}

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"mode": "stationary", "command": "cmd a", "runs": [run(7, 0.5, 100)]}))
    b.write_text(json.dumps({"mode": "stationary", "command": "cmd b", "runs": [run(11, 0.8, 300)]}))
    out = tmp_path / "pooled.json"
    monkeypatch.setattr(sys, "argv", ["shift", "--pool", f"{a},{b}", "--out", str(out)])
    bench.main()
    report = json.loads(out.read_text())
    assert report["pooled_from"] == ["cmd a", "cmd b"] and [r["seed"] for r in report["runs"]] == [7, 11]
    assert report["pooled"]["m"]["users"] == 400 and abs(report["pooled"]["m"]["next_event_hr@10"] - 0.725) < 1e-9
    assert "Pooled from: `cmd b`" in out.with_suffix(".md").read_text()
