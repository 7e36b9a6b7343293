"""Rules written once: each fact of the model has one home, and every caller uses it."""

from __future__ import annotations

from twin.model.catalog import AlertKind
from twin.reporting.summary import ALERT_ROWS, alert_rows


def test_the_run_summary_labels_exactly_the_alert_kinds_it_prints():
    kinds = [kind for row in ALERT_ROWS for kind, _ in row]
    assert sorted(kinds) == list(AlertKind)  # every kind printed, once
    counts = {k.name: 1000 + int(k) for k in AlertKind}
    rows = alert_rows(counts)
    assert rows[0] == ("alerts (outage / restored / low battery)", "1,000 / 1,001 / 1,002")
    assert rows[2] == ("alerts (emergency credit / disabled / armed)", "1,006 / 1,007 / 1,008")
    for label, figures in rows:
        assert label.count(" / ") == figures.count(" / ")
