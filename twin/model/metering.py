"""Consumption as functions of time, shared by every meter and scaled per premises.

A register reading is never stepped tick by tick: it is `register_at_tick_0 + annual_kWh x
cumulative_profile(t)`, evaluated when someone asks. That keeps the tick kernel independent of
metering and makes a register read exact at any tick."""

from __future__ import annotations

import math

import numpy as np

from twin.model.params import HALF_HOURS_PER_DAY, TICKS_PER_YEAR

# Domestic half-hourly load shape (Elexon profile class 1-like, mean 1.0) [U]: night trough,
# morning shoulder, evening peak.
_ELEC = np.array(
    [0.62, 0.56, 0.52, 0.49, 0.47, 0.46, 0.46, 0.46, 0.47, 0.49, 0.52, 0.58,
     0.72, 0.90, 1.05, 1.12, 1.12, 1.08, 1.04, 1.01, 0.99, 0.98, 0.98, 0.99,
     1.02, 1.01, 0.98, 0.96, 0.96, 0.99, 1.06, 1.20, 1.45, 1.70, 1.86, 1.90,
     1.84, 1.72, 1.58, 1.46, 1.36, 1.28, 1.20, 1.10, 0.98, 0.88, 0.78, 0.70]
)  # fmt: skip
# Gas: heating in the morning and evening [U].
_GAS = np.array(
    [0.30, 0.25, 0.22, 0.22, 0.22, 0.25, 0.35, 0.55, 0.95, 1.80, 2.40, 2.30,
     1.90, 1.50, 1.20, 1.00, 0.90, 0.85, 0.80, 0.80, 0.80, 0.80, 0.80, 0.85,
     0.90, 0.95, 1.00, 1.05, 1.15, 1.30, 1.60, 1.90, 2.10, 2.10, 1.95, 1.75,
     1.55, 1.40, 1.30, 1.20, 1.10, 1.00, 0.90, 0.75, 0.60, 0.48, 0.40, 0.35]
)  # fmt: skip
SHAPES = {"elec": _ELEC / _ELEC.mean(), "gas": _GAS / _GAS.mean()}
# The shape summed from midnight to each half-hour boundary: [0, s0, s0+s1, ..., total].
_CUM_SHAPES = {fuel: np.concatenate([[0.0], np.cumsum(shape)]) for fuel, shape in SHAPES.items()}
# Seasonal swing (amplitude of a yearly cosine peaking mid-January) [U].
SEASONAL_AMPLITUDE = {"elec": 0.20, "gas": 0.65}
_PEAK_DAY_OF_YEAR = 15


def _season(fuel: str, day_of_year: np.ndarray | float) -> np.ndarray:
    amp = SEASONAL_AMPLITUDE[fuel]
    return 1.0 + amp * np.cos(2 * np.pi * (np.asarray(day_of_year, dtype=np.float64) - _PEAK_DAY_OF_YEAR) / 365.25)


def half_hour_factor(fuel: str, day_of_year: int, tick_of_day: int) -> float:
    """This half-hour's consumption as a multiple of the annual mean half-hour."""
    return float(SHAPES[fuel][tick_of_day] * _season(fuel, day_of_year))


def cumulative_factor(fuel: str, first_day_of_year: int, start_tick_of_day: int, ticks: int) -> float:
    """Sum of half_hour_factor over `ticks` half-hours from the run's start (closed form per day)."""
    if ticks <= 0:
        return 0.0
    cum_shape = _CUM_SHAPES[fuel]
    abs_end = start_tick_of_day + ticks
    full_days, end_tod = divmod(abs_end, HALF_HOURS_PER_DAY)
    # Whole days d = 0 .. full_days-1 contribute 48 * season(d); the partial last day, its prefix.
    amp = SEASONAL_AMPLITUDE[fuel]
    w = 2 * math.pi / 365.25
    phase = first_day_of_year - _PEAK_DAY_OF_YEAR
    if full_days > 0:
        # sum_{d=0}^{D-1} cos(w (d + phase)) = sin(D w / 2) / sin(w / 2) * cos(w (phase + (D - 1) / 2))
        cos_sum = math.sin(full_days * w / 2) / math.sin(w / 2) * math.cos(w * (phase + (full_days - 1) / 2))
        total = HALF_HOURS_PER_DAY * (full_days + amp * cos_sum)
    else:
        total = 0.0
    total += cum_shape[end_tod] * float(_season(fuel, first_day_of_year + full_days))
    # Subtract the part of day 0 before the start.
    total -= cum_shape[start_tick_of_day] * float(_season(fuel, first_day_of_year))
    return total


def kwh_between(annual_kwh: np.ndarray | float, fuel: str, first_day_of_year: int, start_tick_of_day: int,
                ticks: int) -> np.ndarray | float:
    """Energy used by meters with the given annual consumption over the first `ticks` of the run."""
    return np.asarray(annual_kwh, dtype=np.float64) * (
        cumulative_factor(fuel, first_day_of_year, start_tick_of_day, ticks) / TICKS_PER_YEAR
    )


REGISTER_MODULUS = 1 << 32  # the u4 register base column wraps (see register_kwh)


def register_kwh(reg0_dkwh: np.ndarray | float, used_kwh: np.ndarray | float) -> np.ndarray | float:
    """A register reading, kWh, from its stored base (0.1 kWh units) and the energy the shared profile
    says was used since tick 0. Energy not taken while supply was disabled is subtracted from the
    base as it happens, so a young meter's base can pass below zero: it is kept modulo 2^32 and the
    sum is taken back into range here."""
    return np.mod(np.asarray(reg0_dkwh, dtype=np.float64) + 10 * np.asarray(used_kwh), REGISTER_MODULUS) / 10
