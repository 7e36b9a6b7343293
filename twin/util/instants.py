"""How an instant is shown to people, everywhere (CLI, reports, the dashboard): minutes, always UTC,
with the zone written out. Parsing times from users stays in `twin.model.timeutil`, which raises the
model's input errors."""

from __future__ import annotations

from datetime import UTC, datetime


def format_instant(when: datetime) -> str:
    """'2026-05-31 23:00 UTC' for an aware datetime (any zone; shown in UTC). A naive datetime is
    not an instant: ValueError (the model's TwinInputError is one too, for callers that catch it)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"time: {when.isoformat()} has no time zone; give one, e.g. 2026-11-01T00:00+00:00")
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
