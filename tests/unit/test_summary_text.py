"""The `twin run` summary as a person reads it: every figure labelled in words with its unit,
every alert kind named, no raw key or dict, the state hash whole on a line of its own."""

from __future__ import annotations

import re

from rich.console import Console

from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.reporting.summary import ALERT_LABELS, print_summary, run_summary


def test_the_run_summary_reads_in_words_with_units():
    config = FleetConfig(hubs=5_000, seed=3)
    fleet = LocalFleet(config)
    fleet.submit({"type": "power_outage", "area": "London", "fraction": 0.5, "duration_min": 60, "at": 1})
    summaries = [fleet.step() for _ in range(6)]
    r = run_summary(config=config.to_dict(), summaries=summaries, shards=1, state_bytes=250_000, build_s=0.5,
                    run_s=2.0, state_hash=fleet.state_hash())
    console = Console(record=True, width=100)
    print_summary(r, console)
    text = console.export_text()
    print(text)
    assert r["alerts"]["POWER_OUTAGE"] > 0  # the outage's alerts are in the figures printed
    for label in ALERT_LABELS.values():
        assert f"  {label} " in text
    assert re.search(r"power outage \(AD1\) +│ +" + f"{r['alerts']['POWER_OUTAGE']:,}" + " │", text)
    for words in ("run time (wall clock)", "2.00 s", "half-hourly reads at risk (end)", " periods │",
                  "50.0 bytes", "6 half hours (0.1 days)", "  cause: no WAN coverage", "  in South"):
        assert words in text, words
    assert f"\nstate hash (SHA-256): {r['state_hash']}\n" in text
    assert not re.search(r"[a-z]+_[a-z_]+", text), re.findall(r"[a-z]+_[a-z_]+", text)  # no raw keys
    assert "{" not in text and "'" not in text  # no dict printed raw
