"""Rules written once: each fact of the model has one home, and every caller uses it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.model.catalog import N_AREA_CODES, AlertKind, Fault, Smets, WanTech
from twin.model.reach import reachable_now, wan_up
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


def test_the_reachability_rule_is_spelt_only_in_twin_model_reach():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "twin"
    spelt = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if "generated" not in p.parts and "SMETS1_NOT_ENROLLED" in p.read_text())
    assert spelt == ["model/catalog.py", "model/reach.py"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Smets)), st.integers(0, 255), st.integers(0, N_AREA_CODES - 1),
                          st.sampled_from(list(WanTech)), st.booleans()), min_size=1, max_size=40))
def test_reachable_is_on_the_dcc_without_faults_on_a_working_network(hubs):
    smets, fault, area, wan, net = (np.array(x) for x in zip(*hubs, strict=True))
    up_area = np.zeros((N_AREA_CODES, len(WanTech)), bool)
    up_area[area[net], wan[net]] = True
    up_area[area[~net], wan[~net]] = False  # a later "down" wins for a shared (area, wan)
    got = reachable_now(smets=smets.astype(np.uint8), fault=fault.astype(np.uint8), area=area,
                        wan=wan.astype(np.uint8), up_area=up_area)
    for i, (sm, f, a, w, _) in enumerate(hubs):
        want = sm != Smets.SMETS1_NOT_ENROLLED and f == 0 and bool(up_area[a, w])
        assert bool(got[i]) == want
    # An outage alert still leaves an unpowered hub, and nothing else.
    sent = wan_up(fault.astype(np.uint8), area, wan.astype(np.uint8), up_area, ignore=Fault.POWER)
    assert sent.tolist() == [((f & ~Fault.POWER) == 0) and bool(up_area[a, w]) for _, f, a, w, _ in hubs]
