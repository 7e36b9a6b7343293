"""Counter-based randomness keyed by what it is for, never by who draws it.

Three keys make a run independent of how the fleet is split into shards:
- `block_rng(seed, block, tick, purpose)`: a Philox stream per hub block (fleet generation);
- `fleet_rng(seed, tick, purpose)`: one stream for the whole fleet, drawn identically by every shard
  (rare events: how many, then which hub ids), so its cost grows with the events, not the fleet;
- `hash_uniform(seed, purpose, hub_ids, step)`: a stateless per-hub uniform for decisions taken
  while a hub is visited anyway (its daily read slot).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

_GEN_TICK = (1 << 64) - 1  # "tick" of generation draws (never a real tick)
_FLEET_BLOCK = (1 << 64) - 2  # "block" of fleet-wide draws (never a real block)
_MASK64 = (1 << 64) - 1


class Purpose(IntEnum):
    GENERATE = 1
    POWER_OUTAGE = 2
    HUB_FAULT = 3
    HARDWARE_FAILURE = 4
    BACKGROUND_TRAFFIC = 5
    ALERT_BACKOFF = 6
    BATTERY_REPLACEMENT = 7
    PREPAY_BEHAVIOUR = 8  # static: which top-up habit a prepayment customer has
    PREPAY_TOPUP = 9
    PREPAY_ENABLE = 10
    # Operator events (scenario effects) use 100+.
    EVENT = 100


def _mix64(*words: int) -> int:
    """splitmix64 chain over the words: a 64-bit stream identity.

    Philox's counter is a position in one stream, so two draws must differ in their key, not their
    counter: counters (t, ...) and (t + 1, ...) of one key are overlapping stretches of a stream."""
    h = 0x243F6A8885A308D3
    for w in words:
        h = (h ^ (w & _MASK64)) + 0x9E3779B97F4A7C15 & _MASK64
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _MASK64
        h ^= h >> 31
    return h


_COUNTER0 = np.zeros(4, np.uint64)


def _philox(seed: int, *identity: int) -> np.random.Generator:
    # Built as uint64 outright: a list of a small seed and an identity of 2**63 or more becomes
    # float64 in numpy, which drops the identity's low 11 bits (and rounds the top 1,024 values to
    # 2**64, an overflow), so streams whose identities differ there would be one stream. Given as
    # arrays, key and counter skip Philox's own conversion, half the cost of a generator.
    key = np.array([seed & _MASK64, _mix64(*identity)], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key, counter=_COUNTER0))


def block_rng(seed: int, block: int, tick: int | None, purpose: int) -> np.random.Generator:
    """Generator for one hub block; `tick=None` selects the generation stream."""
    return _philox(seed, block, _GEN_TICK if tick is None else tick, purpose)


def fleet_rng(seed: int, tick: int, purpose: int, salt: int = 0) -> np.random.Generator:
    """Fleet-wide generator; every shard that asks gets the same stream."""
    return _philox(seed, _FLEET_BLOCK, tick, purpose, salt)


_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x ^= x >> _S30
    x *= _M2
    x ^= x >> _S27
    x *= _M3
    x ^= x >> _S31
    return x


def hash_uniform(seed: int, purpose: int, hub_ids: np.ndarray, step: int) -> np.ndarray:
    """Uniform [0, 1) per hub id, a pure function of (seed, purpose, hub id, step)."""
    salt = np.uint64(
        (seed * 0x2545F4914F6CDD1D + purpose * 0x5851F42D4C957F2D + step * 0x14057B7EF767814F)
        & 0xFFFFFFFFFFFFFFFF
    )
    with np.errstate(over="ignore"):
        x = hub_ids.astype(np.uint64) * _M1
        x += salt
        x = _splitmix(x)
        x += _M1
        x = _splitmix(x)
    return (x >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)
