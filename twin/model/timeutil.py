"""Times at the boundary: every time a user gives (CLI `--start`, scenario `fleet.start` and event
`at`, API `at`, dashboard forms, a run's manifest and journal on replay) is an instant. It is
parsed here once, refused without a zone, and normalised to UTC, so nothing downstream can depend
on the offset it was typed with: `2026-06-01T00:00+01:00` and `2026-05-31T23:00Z` are one instant
and give one run.

The model keeps time in UTC throughout: ticks are UTC half-hours from the fleet's start, and the
time-of-day profiles (consumption shapes, the DCC's daily read schedule) are indexed by UTC
half-hour. GB clocks are on BST in summer; the model does not shift its profiles by the clock
change (documented in docs/events.md), so a profile's local-time peak sits an hour later on the wall
in summer. Times are printed with their zone, always UTC (`format_instant`, in the layer-free `twin.util.instants`)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from twin.model.errors import TwinInputError
from twin.util.instants import format_instant  # shown the same way by every layer

EXAMPLE = "2026-11-01T00:00+00:00"


def parse_instant(value: Any, field: str) -> datetime:
    """An ISO 8601 time with a zone (text, or an aware datetime as YAML gives) -> aware datetime in UTC.

    Accepts `Z` or a numeric offset (`+01:00`, `+0100`); refuses a time without a zone (naive), a
    bare date, anything else, and digits outside ASCII, raising TwinInputError naming `field`."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        raise TwinInputError(field, f"a date alone is not an instant; give a time with a zone, e.g. {EXAMPLE}")
    elif isinstance(value, str):
        text = value.strip(" \t")
        if not text.isascii():
            raise TwinInputError(field, f"expected an ISO 8601 time with a zone, e.g. {EXAMPLE}, got {value!r}")
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise TwinInputError(
                field, f"expected an ISO 8601 time with a zone, e.g. {EXAMPLE}, got {value!r}") from None
    else:
        raise TwinInputError(field, f"expected an ISO 8601 time with a zone, e.g. {EXAMPLE}, got {value!r}")
    return as_utc(when, field)


def as_utc(when: datetime, field: str) -> datetime:
    """An aware datetime -> the same instant in UTC; a naive one is refused naming `field`
    (a wall time without a zone is not an instant)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise TwinInputError(field, f"{when.isoformat()} has no time zone; give one, e.g. {EXAMPLE}")
    return when.astimezone(UTC)


__all__ = ["EXAMPLE", "as_utc", "format_instant", "parse_instant"]
