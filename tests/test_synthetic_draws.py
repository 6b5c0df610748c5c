"""The synthetic world's faster draws (issue 18) make the same worlds bit for bit: the sha256 of
the sequences below were computed with the former rng.choice(len(pool), p=w / w.sum()) loop."""

import hashlib

import pytest

from fame_core.synthetic import make_facet_world

PINNED = [
    (dict(seed=3, n_users=150, n_items=60, genre=4, actor=6, min_len=4, max_len=12),
     "a07b2b5f50fb61d95898abb2ac9bc8ee54567dc07cda7297cf4e4cb0525df497"),
    (dict(seed=2, n_users=300, n_items=777, p_noise=0.5, popularity=2.0),
     "836c08251400658e6560e38de23955a0b34819a912fca0cb27f5c48103f48c87"),
]


@pytest.mark.parametrize("params,digest", PINNED)
def test_worlds_are_the_ones_the_rng_choice_loop_made(params, digest):
    world = make_facet_world(**params)
    got = hashlib.sha256(b"".join(s.astype("<i8").tobytes() + b"|" for s in world.sequences)).hexdigest()
    assert got == digest
