"""The run directory's record of what a run report reads of every tick (twin.studies.report_ticks):
read back, it gives the report the summaries themselves give; a resume cuts it back to its
checkpoint, torn last row included; a damaged or short record is an error naming the tick."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from twin.model.config import FleetConfig
from twin.model.fleet import LocalFleet
from twin.model.params import CapacityParams, ModelParams
from twin.model.summary import TickSummary
from twin.reporting.summary import run_summary
from twin.studies.report_ticks import FILE, ReportTicks, ReportTicksError
from twin.studies.scenario import RECORDED_FIELDS, for_report, series

TICKS = 8


def summaries(config: FleetConfig) -> list[TickSummary]:
    f = LocalFleet(config)
    f.submit({"at": 2, "type": "power_outage", "area": "Southern England", "fraction": 0.5, "duration_min": 60})
    return f.run(TICKS)


def report_of(config: FleetConfig, ss: list[TickSummary]) -> str:
    """What the report makes of the summaries (timings fixed), as the JSON it writes."""
    summary = run_summary(config=config.to_dict(), summaries=ss, shards=2, state_bytes=1, build_s=1.0, run_s=1.0,
                          state_hash="h")
    return json.dumps({"summary": summary, "series": series(config, ss)})


def record(tmp_path, ss: list[TickSummary]) -> ReportTicks:
    r = ReportTicks.create(tmp_path, RECORDED_FIELDS)
    for s in ss:
        r.append(s, run_s=0.5 * (s.tick + 1), sync=s.tick == 3)
    r.close()
    return r


@pytest.mark.parametrize("capacity", [True, False])
def test_read_back_it_gives_the_report_the_summaries_give(tmp_path, capacity):
    config = FleetConfig(hubs=3000, seed=4, block_size=1024,
                         params=ModelParams(capacity=replace(CapacityParams(), enabled=capacity)))
    ss = summaries(config)
    assert (ss[0].capacity is not None) == capacity
    record(tmp_path, ss)
    r, back, run_s = ReportTicks.resume(tmp_path, RECORDED_FIELDS, upto=TICKS - 1, trim=for_report)
    r.close()
    assert len(back) == TICKS and run_s == 0.5 * TICKS
    # As the run holds them: the earlier ticks cut to the report's fields, the last whole.
    held = [for_report(s) for s in ss[:-1]] + ss[-1:]
    assert report_of(config, back) == report_of(config, held)
    assert not hasattr(back[0], "area_alerts")  # what the report never reads is not kept
    assert not hasattr(back[0], "dark_age") and back[-1].dark_age.tolist() == ss[-1].dark_age.tolist()


def test_a_resume_cuts_the_record_back_to_its_checkpoint_torn_row_and_all(tmp_path):
    config = FleetConfig(hubs=3000, seed=4, block_size=1024)
    ss = summaries(config)
    record(tmp_path, ss)
    path = tmp_path / FILE
    whole = path.stat().st_size
    row = (whole - len(path.read_bytes().split(b"\n", 1)[0]) - 1) // TICKS
    with open(path, "ab") as fh:
        fh.write(b"\x01" * (row // 2))  # a kill in the middle of writing a row
    r, back, run_s = ReportTicks.resume(tmp_path, RECORDED_FIELDS, upto=3)
    assert [s.tick for s in back] == [0, 1, 2, 3] and run_s == 2.0
    assert path.stat().st_size == whole - (TICKS - 4) * row
    for s in ss[4:]:  # the run goes on from the checkpoint, as the resumed run does
        r.append(s, run_s=9.0)
    r.close()
    assert path.stat().st_size == whole
    r, back, run_s = ReportTicks.resume(tmp_path, RECORDED_FIELDS, upto=TICKS - 1)
    r.close()
    assert np.array_equal(back[5].messages, ss[5].messages) and run_s == 9.0


def test_a_damaged_or_short_record_is_an_error_naming_the_tick(tmp_path):
    config = FleetConfig(hubs=3000, seed=4, block_size=1024)
    record(tmp_path, summaries(config)[:4])
    with pytest.raises(ReportTicksError, match=r"holds ticks 0-3 only; the checkpoint the run resumes from is at tick 5"):
        ReportTicks.resume(tmp_path, RECORDED_FIELDS, upto=5)
    path = tmp_path / FILE
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # a flipped bit in the last row
    path.write_bytes(bytes(data))
    with pytest.raises(ReportTicksError, match=r"the row of tick 3 is damaged"):
        ReportTicks.resume(tmp_path, RECORDED_FIELDS, upto=3)
    path.unlink()
    with pytest.raises(ReportTicksError, match=r"is missing"):
        ReportTicks.resume(tmp_path, RECORDED_FIELDS, upto=0)


def test_ticks_go_in_order(tmp_path):
    ss = summaries(FleetConfig(hubs=3000, seed=4, block_size=1024))
    r = ReportTicks.create(tmp_path, RECORDED_FIELDS)
    r.append(ss[0], run_s=0.1)
    with pytest.raises(ReportTicksError, match="tick 2 recorded after tick 0"):
        r.append(ss[2], run_s=0.2)
    r.close()
