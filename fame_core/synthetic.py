"""The synthetic facet world: a data set whose facets are known, so claims can be checked.

Items carry independent categorical facets (by default a genre out of 10 and a lead actor out
of 30, the paper's Figure 1). Each user is driven by one dominant facet and, inside it, by a
few preferred values that the user switches between: a "genre" user watches Action, then
Musical, then Action again, whoever plays; an "actor" user follows two actors across genres.
Everything is drawn from one seed, and the ground truth (every user's dominant facet,
preferred values and the value active at every step) is kept in `dataset.truth`.
"""

from __future__ import annotations

import numpy as np

from .dataset import SequenceDataset

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Animation",
          "Documentary", "Musical", "Western", "Crime", "Fantasy", "Mystery", "War", "Family"]


def _values(facet: str, count: int) -> list[str]:
    if facet == "genre" and count <= len(GENRES):
        return GENRES[:count]
    return [f"{facet.capitalize()} {i + 1:02d}" for i in range(count)]


def make_facet_world(seed: int = 0, n_users: int = 2000, n_items: int = 600, genre: int = 10,
                     actor: int = 30, min_len: int = 8, max_len: int = 30, min_preferred: int = 2,
                     max_preferred: int = 3, p_switch: float = 0.3, p_noise: float = 0.05,
                     popularity: float = 1.0) -> SequenceDataset:
    """Generate the world. Same arguments, same data set (bit for bit).

    genre, actor: number of values of each facet. p_switch: chance per step of moving to
    another preferred value; p_noise: chance per step of a random item (popularity-weighted);
    popularity: spread of the log-normal item popularity (0 = uniform).
    """
    rng = np.random.default_rng(seed)
    facet_sizes = {"genre": int(genre), "actor": int(actor)}
    names = {f: _values(f, n) for f, n in facet_sizes.items()}
    if n_items < max(facet_sizes.values()):
        raise ValueError(f"n_items={n_items} is smaller than a facet's number of values")
    # every value gets n_items / count items; the facets are shuffled independently, so
    # knowing an item's genre says nothing about its actor
    item_value = {f: np.concatenate([[0], rng.permutation(np.arange(n_items) % n)]) for f, n in facet_sizes.items()}
    weight = np.exp(popularity * rng.standard_normal(n_items + 1))
    weight[0] = 0.0
    members = {f: [np.flatnonzero((item_value[f] == v) & (np.arange(n_items + 1) > 0))
                   for v in range(n)] for f, n in facet_sizes.items()}
    # issue 18: draws as rng.choice(len(pool), p=w / w.sum()) makes them (one uniform, searched in
    # the normalised cumulative sum), with each pool's cumulative sum computed once: bit for bit
    # the same world, O(log pool) per draw instead of O(pool), so 10^6-item worlds can be made
    cdfs = {}

    def draw(key, pool_size, w):
        cdf = cdfs.get(key)
        if cdf is None:
            cdf = (w / w.sum()).cumsum()
            cdf /= cdf[-1]
            cdfs[key] = cdf
        return int(cdf.searchsorted(rng.random(), side="right"))

    facet_list = list(facet_sizes)
    sequences, dominant, preferred, active = [], [], [], []
    for _ in range(n_users):
        facet = facet_list[rng.integers(len(facet_list))]
        k = int(rng.integers(min_preferred, max_preferred + 1))
        prefs = rng.choice(facet_sizes[facet], size=min(k, facet_sizes[facet]), replace=False)
        length = int(rng.integers(min_len, max_len + 1))
        current = int(rng.integers(len(prefs)))
        items, values = np.empty(length, dtype=np.int64), np.empty(length, dtype=np.int64)
        for t in range(length):
            if t and len(prefs) > 1 and rng.random() < p_switch:
                current = int(rng.choice([i for i in range(len(prefs)) if i != current]))
            value = int(prefs[current])
            if rng.random() < p_noise:
                items[t] = draw("all", n_items + 1, weight)
            else:
                pool = members[facet][value]
                items[t] = pool[draw((facet, value), len(pool), weight[pool])]
            values[t] = value
        sequences.append(items)
        dominant.append(facet)
        preferred.append([names[facet][v] for v in prefs])
        active.append(np.array([names[facet][v] for v in values]))

    facets = {f: [()] + [(names[f][v],) for v in item_value[f][1:]] for f in facet_sizes}
    params = dict(seed=seed, n_users=n_users, n_items=n_items, genre=genre, actor=actor,
                  min_len=min_len, max_len=max_len, min_preferred=min_preferred,
                  max_preferred=max_preferred, p_switch=p_switch, p_noise=p_noise,
                  popularity=popularity)
    spec = "synthetic:" + ",".join(f"{k}={v}" for k, v in params.items())
    truth = {"facets": facet_list, "dominant_facet": dominant, "preferred_values": preferred,
             "active_value": active}
    return SequenceDataset(name=f"synthetic-{seed}", sequences=sequences, n_items=n_items,
                           user_ids=[str(u + 1) for u in range(n_users)], facets=facets,
                           source={"reader": "synthetic", "spec": spec, "paths": [], "sha256": {},
                                   "options": params},
                           truth=truth)
