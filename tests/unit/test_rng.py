"""The Philox key of every stream is exactly (seed, identity): no precision lost on the way."""

from __future__ import annotations

import itertools

import numpy as np

from twin.model.rng import _MASK64, _mix64, _philox, block_rng


def _key(gen: np.random.Generator) -> list[int]:
    return [int(k) for k in gen.bit_generator.state["state"]["key"]]


def _identity_with_high_bit_and_low_bits() -> tuple[int, int, int]:
    """A (block, tick, purpose) whose 64-bit identity is 2**63 or more with its low 11 bits set:
    the identities numpy would round when it made the key a float64 list."""
    for block, tick in itertools.product(range(64), range(64)):
        mix = _mix64(block, tick, 1)
        if mix >= 1 << 63 and mix & 0x7FF:
            return block, tick, 1
    raise AssertionError("no such identity in the first 4,096")


def test_a_small_seed_and_a_high_identity_keep_every_bit():
    block, tick, purpose = _identity_with_high_bit_and_low_bits()
    mix = _mix64(block, tick, purpose)
    assert _key(block_rng(9, block, tick, purpose)) == [9, mix]


def test_a_seed_of_2_63_or_more_keeps_every_bit():
    seed = (1 << 63) + 12_345
    assert _key(_philox(seed, 3, 4)) == [seed, _mix64(3, 4)]
    assert _key(_philox(-1, 3, 4)) == [_MASK64, _mix64(3, 4)]  # a negative seed is its two's complement

