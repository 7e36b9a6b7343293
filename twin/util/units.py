"""How the network's figures are written for people, shared by the dashboard, the terminal and
the report (layer-free: the dashboard may import only twin.util, twin.client and twin.generated)."""

from __future__ import annotations

# How a link's WAN technology is written for people (the API's LinkCapacity.technology is the name).
TECH_LABEL = {"LRR": "LRR", "G2": "2G", "G3": "3G", "G4": "4G", "VWAN": "VWAN"}
# The outcomes of device alerts under load, as NetworkCapacity.AlertService and CapacityReport name them.
ALERT_OUTCOMES = ("delayed", "throttled", "failed", "redelivered", "expired")


def link_label(csp: str, technology: str) -> str:
    """A link as people read it: ("SOUTH" or "South", "G3") -> "South 3G"."""
    return f"{csp.title()} {TECH_LABEL.get(technology, technology)}"


def format_seconds(s: float) -> str:
    """A latency or an age for people: "0.12 s", "3.2 s", "41 s", "12.5 min", "3.1 h", "2.0 d"."""
    if s < 1:
        return f"{s:.2f} s"
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7_200:
        return f"{s / 60:.1f} min"
    if s < 172_800:
        return f"{s / 3_600:.1f} h"
    return f"{s / 86_400:.1f} d"
