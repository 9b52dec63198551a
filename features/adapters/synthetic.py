"""Deterministic synthetic catalogue and users whose interests drift.

Why synthetic by default: it runs offline, it is small, and it carries ground truth. Every
event records the user's true interest at that moment, and half the users switch their main
interest (one to ``max_switches`` times), so drift monitoring and the interest-shift benchmark
have something to find, and a model has more than one switch per user to learn following from.

Item text is built from a per-category vocabulary, so a text encoder can tell categories
apart; consumption follows "series" inside a category (item -> its sequel), so sequence
models have order to learn.

Two options keep a benchmark from being tuned to this one generator:

- ``switch_in_training: false`` keeps every history on one main interest (plus exploration noise)
  and generates each switching user's switch episode *after* their history, as held-out rows of
  ``ground_truth`` (``held_out``) that never reach the interactions. A model trained on such data
  has never seen a switch; the shift benchmark replays the held-out episodes one event at a time.
- ``vocabulary: shop`` is a second generator: product words instead of media words, and other
  dynamics (each item has a fixed complement bought after it instead of a sequel, sharper
  popularity, more multi-category items).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.params import Params, SyntheticParams

CATEGORY_WORDS: dict[str, list[str]] = {
    "thriller": ["murder", "detective", "suspect", "chase", "alibi", "conspiracy", "killer", "heist"],
    "romance": ["love", "wedding", "heart", "kiss", "couple", "affair", "romantic", "passion"],
    "science": ["physics", "quantum", "experiment", "laboratory", "theory", "molecule", "scientist", "research"],
    "cooking": ["recipe", "kitchen", "bake", "chef", "flavour", "dinner", "spice", "pastry"],
    "sports": ["football", "match", "goal", "team", "league", "coach", "stadium", "champion"],
    "travel": ["journey", "island", "mountain", "beach", "passport", "hotel", "adventure", "voyage"],
    "finance": ["market", "stock", "investor", "bank", "budget", "portfolio", "inflation", "dividend"],
    "music": ["guitar", "concert", "album", "melody", "band", "singer", "rhythm", "orchestra"],
    "history": ["empire", "ancient", "war", "king", "revolution", "medieval", "dynasty", "archive"],
    "technology": ["software", "robot", "computer", "startup", "algorithm", "network", "gadget", "code"],
    "health": ["fitness", "diet", "doctor", "sleep", "yoga", "wellness", "vitamin", "therapy"],
    "fantasy": ["dragon", "wizard", "magic", "sword", "elf", "kingdom", "quest", "spell"],
    "comedy": ["joke", "laugh", "sitcom", "prank", "satire", "funny", "clown", "parody"],
    "nature": ["forest", "wildlife", "river", "ocean", "bird", "climate", "garden", "species"],
    "art": ["painting", "museum", "sculpture", "gallery", "artist", "canvas", "portrait", "design"],
    "politics": ["election", "senate", "policy", "campaign", "vote", "parliament", "debate", "minister"],
}
FILLER = ["story", "guide", "tale", "notes", "chronicle", "diary", "review", "episode"]

SHOP_WORDS: dict[str, list[str]] = {
    "garden": ["hose", "shovel", "seeds", "planter", "compost", "trowel", "sprinkler", "pruner"],
    "kitchenware": ["skillet", "whisk", "blender", "kettle", "spatula", "grater", "saucepan", "colander"],
    "electronics": ["charger", "headphones", "adapter", "battery", "speaker", "cable", "monitor", "router"],
    "toys": ["puzzle", "doll", "blocks", "kite", "marbles", "yo-yo", "figurine", "plush"],
    "pets": ["leash", "kibble", "collar", "litter", "aquarium", "birdcage", "chew", "harness"],
    "office": ["stapler", "binder", "envelope", "notebook", "highlighter", "folder", "printer", "desk"],
    "beauty": ["lipstick", "shampoo", "serum", "mascara", "lotion", "perfume", "nail", "conditioner"],
    "automotive": ["tyre", "wiper", "antifreeze", "spark", "brake", "headlight", "jack", "dashcam"],
    "outdoor": ["tent", "backpack", "lantern", "compass", "sleeping-bag", "canteen", "hammock", "stove"],
    "baby": ["diaper", "stroller", "pacifier", "bottle", "crib", "bib", "rattle", "onesie"],
    "tools": ["drill", "wrench", "hammer", "screwdriver", "sander", "clamp", "chisel", "level"],
    "grocery": ["coffee", "tea", "cereal", "olive-oil", "pasta", "honey", "granola", "spices"],
    "fitness": ["dumbbell", "treadmill", "mat", "kettlebell", "resistance-band", "jump-rope", "bench", "rower"],
    "crafts": ["yarn", "glue", "beads", "easel", "stencil", "fabric", "needle", "scissors"],
    "lighting": ["lamp", "bulb", "chandelier", "sconce", "dimmer", "lantern-light", "spotlight", "strip-light"],
    "bedding": ["pillow", "duvet", "sheet", "blanket", "mattress", "quilt", "comforter", "pillowcase"],
}
BRANDS = ["Acme", "Norder", "Velto", "Kiraku", "Brumm", "Osprey Lane", "Tallis", "Quorra"]
EVENT_TYPES = ["view", "click", "purchase"]


VOCABULARIES = {"media": CATEGORY_WORDS, "shop": SHOP_WORDS}


def _catalogue(p: SyntheticParams, rng: np.random.Generator) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    if p.vocabulary not in VOCABULARIES:
        raise ValueError(f"synthetic.vocabulary {p.vocabulary!r}: expected one of {sorted(VOCABULARIES)}")
    words_of = VOCABULARIES[p.vocabulary]
    if p.n_categories > len(words_of):
        raise ValueError(f"synthetic.n_categories must be <= {len(words_of)}")
    if p.vocabulary == "shop":
        return _shop_catalogue(p, rng)
    cats = list(CATEGORY_WORDS)[: p.n_categories]
    primary = np.arange(p.n_items) % p.n_categories  # balanced categories
    rows = []
    for i in range(p.n_items):
        c = cats[primary[i]]
        words = rng.choice(CATEGORY_WORDS[c], size=6, replace=True).tolist()
        second = cats[rng.integers(p.n_categories)] if rng.random() < 0.25 else None
        if second and second != c:
            words += rng.choice(CATEGORY_WORDS[second], size=2).tolist()
        item_cats = [c] + ([second] if second and second != c else [])
        title = f"{words[0].title()} {rng.choice(FILLER)} {i}"
        text = f"{title}. A {c} {rng.choice(FILLER)} about " + ", ".join(words[1:]) + "."
        rows.append({"item_id": f"i{i:05d}", "title": title, "text": text, "categories": item_cats})
    return pd.DataFrame(rows), cats, primary


def _shop_catalogue(p: SyntheticParams, rng: np.random.Generator) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """Product listings: brand, product words and a category path, 40% of items in two categories."""
    cats = list(SHOP_WORDS)[: p.n_categories]
    primary = rng.permutation(np.arange(p.n_items) % p.n_categories)  # balanced, not in index order
    rows = []
    for i in range(p.n_items):
        c = cats[primary[i]]
        words = rng.choice(SHOP_WORDS[c], size=3, replace=False).tolist()
        second = cats[rng.integers(p.n_categories)] if rng.random() < 0.4 else None
        item_cats = [c] + ([second] if second and second != c else [])
        extra = f" with {rng.choice(SHOP_WORDS[second])}" if second and second != c else ""
        brand = BRANDS[int(rng.integers(len(BRANDS)))]
        title = f"{brand} {words[0]} {words[1]} #{i}"
        text = f"{title}{extra} | Home > {c.title()} > {words[2]} | brand: {brand}"
        rows.append({"item_id": f"i{i:05d}", "title": title, "text": text, "categories": item_cats})
    return pd.DataFrame(rows), cats, primary


MIN_EPISODE = 6  # events per interest episode after the first switch: enough to see a model follow it


def _later_switches(rng: np.random.Generator, p: SyntheticParams, n: int, switch_at: int, current: int) -> list[tuple[int, int]]:
    """(event index, new category) of the switches after the first one: 0 to max_switches - 1 of
    them, splitting the rest of the sequence into equal episodes of at least MIN_EPISODE events."""
    s = int(rng.integers(1, p.max_switches + 1))
    while s > 1 and (n - switch_at) // s < MIN_EPISODE:
        s -= 1
    out = []
    for j in range(1, s):
        current = int(rng.choice([c for c in range(p.n_categories) if c != current]))
        out.append((switch_at + j * (n - switch_at) // s, current))
    return out


def _next_item(rng: np.random.Generator, p: SyntheticParams, interest: int, last_item: int, primary: np.ndarray,
               by_cat: list[np.ndarray], pop: np.ndarray, follow: np.ndarray | None) -> int:
    """One consumption: the item that follows the last one (media: its sequel; shop: its fixed
    complement) when it was in the current interest, else a popular item of the interest, else
    (15%) exploration anywhere in the catalogue."""
    r = rng.random()
    if last_item >= 0 and r < 0.3 and primary[last_item] == interest:
        if follow is not None:
            return int(follow[last_item])
        pool = by_cat[interest]
        return int(pool[(np.searchsorted(pool, last_item) + 1) % len(pool)])  # the sequel
    if r < 0.85:
        pool = by_cat[interest]
        return int(rng.choice(pool, p=pop[pool] / pop[pool].sum()))
    return int(rng.choice(p.n_items, p=pop / pop.sum()))  # exploration outside the current interest


@dataclass
class _World:
    """The catalogue's state every user draws from."""
    cats: list[str]          # category names, by category index
    primary: np.ndarray      # each item's main category index
    by_cat: list[np.ndarray]  # item indices of each category
    pop: np.ndarray          # each item's popularity weight
    follow: np.ndarray | None  # shop: each item's fixed complement; media: None (the sequel)
    t0: int                  # unix seconds of the first day


def generate(p: SyntheticParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(interactions, items, ground_truth): same params, byte-identical output."""
    rng = np.random.default_rng(p.seed)
    items, cats, primary = _catalogue(p, rng)
    by_cat = [np.flatnonzero(primary == c) for c in range(p.n_categories)]
    shop = p.vocabulary == "shop"
    # Zipf-like popularity inside each category: a few hits, a long tail (sharper in the shop)
    pop = 1.0 / (1.0 + rng.permutation(p.n_items)) ** (1.1 if shop else 0.8)
    follow = None
    if shop:  # each item's complement: a fixed other item of its category
        follow = np.array([int(rng.choice(by_cat[primary[i]])) for i in range(p.n_items)])
    world = _World(cats, primary, by_cat, pop, follow, pd.Timestamp("2026-01-01", tz="UTC").value // 10**9)
    ev_rows: list[tuple] = []
    gt_rows: list[tuple] = []
    for u in range(p.n_users):
        _user_rows(rng, p, world, u, ev_rows, gt_rows)
    interactions = pd.DataFrame(ev_rows, columns=["user_id", "item_id", "ts", "event", "value"])
    truth = pd.DataFrame(
        gt_rows,
        columns=["user_id", "item_id", "ts", "true_interest", "interest_before", "interest_after", "shifts", "after_switch", "episode",
                 "held_out"],
    )
    truth["ts"] = pd.to_datetime(truth["ts"], unit="s", utc=True)
    return interactions, items, truth


def _user_times(rng: np.random.Generator, p: SyntheticParams, n: int, held: int) -> np.ndarray:
    """Seconds since the first day of a user's ``n`` events inside ``days``, then ``held`` more."""
    span = p.days * 86400
    start = rng.uniform(0, span * 0.5)
    gaps = rng.exponential((span - start) / (n + 1), size=n)
    times = start + np.cumsum(gaps)
    if times[-1] > span:  # the random walk can overshoot: squeeze it back inside `days`
        times = start + (times - start) * ((span - start) / (times[-1] - start))
    if held:  # the held-out episode continues the user's clock at their own pace, past `days` if need be
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(max(float(np.mean(np.diff(times))) if n > 1 else 86400.0, 600.0), size=held))])
    return times


def _user_rows(rng: np.random.Generator, p: SyntheticParams, world: _World, u: int, ev_rows: list[tuple],
               gt_rows: list[tuple]) -> None:
    """One user's interactions and ground truth rows, appended (the draws in a fixed order)."""
    cats = world.cats
    n = max(5, int(rng.poisson(p.events_per_user)))
    first, second = rng.choice(p.n_categories, size=2, replace=False)
    shifts = rng.random() < p.shift_fraction
    switch_at = int(n * rng.uniform(0.4, 0.7)) if shifts else n
    if not p.switch_in_training:
        switch_at = n  # the history stays on `first`; the switch comes after it, held out
    later = _later_switches(rng, p, n, switch_at, int(second)) if shifts and p.max_switches > 1 and p.switch_in_training else []
    held = p.held_out_events if shifts and not p.switch_in_training else 0
    times = _user_times(rng, p, n, held)
    last_item = -1
    for k in range(n + held):
        interest = first if k < switch_at else second
        for at, category in later:
            if k >= at:
                interest = category
        episode = 0 if k < switch_at else 1 + sum(k >= at for at, _ in later)
        last_item = _next_item(rng, p, interest, last_item, world.primary, world.by_cat, world.pop, world.follow)
        ts = int(world.t0 + times[k])
        event = EVENT_TYPES[int(rng.integers(3))]
        if k < n:
            ev_rows.append((f"u{u:05d}", f"i{last_item:05d}", ts, event, None))
        gt_rows.append((f"u{u:05d}", f"i{last_item:05d}", ts, cats[interest], cats[first], cats[second] if shifts else cats[first],
                        bool(shifts), k >= switch_at, episode, k >= n))


def load(params: Params) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    interactions, items, truth = generate(params.ingest.synthetic)
    return interactions, items, {"ground_truth": truth}
