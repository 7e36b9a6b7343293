"""`twin up`'s story lines (twin/launcher/story.py) from real commands, typed progress records and
tick summaries: what each change says, and that nothing is said when nothing a person follows
changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from twin.launcher.story import ESCALATION, Story, describe_command
from twin.model.catalog import N_CSP, AlertKind
from twin.model.config import FleetConfig
from twin.model.ops.commands import parse_command
from twin.model.ops.progress import (
    FirmwareRolloutProgress,
    OperationState,
    PowerOutageProgress,
    Progress,
    WaveProgress,
)
from twin.model.summary import TickSummary

CONFIG = FleetConfig(hubs=1000, seed=1, start=datetime(2026, 11, 1, tzinfo=UTC))


def view(name: str, event: dict[str, Any], state: OperationState, progress: Progress, *, at: int = 0,
         reason: str = "") -> dict[str, Any]:
    """An operation's view as the engine puts it on a tick summary (operation_view's shape)."""
    cmd = parse_command({**event, "at": at}, CONFIG, now_tick=0)
    return {"name": f"operations/{name}", "done": state.done,
            "metadata": {"kind": cmd.kind, "state": state, "reason": reason, "start_tick": cmd.at,
                         "command": cmd.to_dict(), "progress": progress,
                         "percent_done": 100.0 * progress.fraction(state)}}


def tick(t: int, *ops: dict[str, Any], alerts: dict[AlertKind, int] | None = None) -> TickSummary:
    s = TickSummary(tick=t)
    s.operations = list(ops)
    for kind, n in (alerts or {}).items():
        s.alerts[kind % N_CSP, kind] = n
    return s


def told(story: Story, *summaries: TickSummary) -> list[str]:
    for s in summaries:
        story.observe(s)
    return story.drain()


OUTAGE = {"type": "power_outage", "area": "London", "fraction": 0.5, "duration_min": 60}


def test_an_outage_is_told_as_it_starts_cuts_and_ends_and_not_between():
    story = Story(CONFIG)
    pending = view("power-outage-1", OUTAGE, OperationState.PENDING, PowerOutageProgress(), at=2)
    assert told(story, tick(0, pending)) == []  # starting within the ticks in flight: told once it starts
    cut = PowerOutageProgress(premises_in_area=1665, premises_cut=860, end_tick=4)
    running = view("power-outage-1", OUTAGE, OperationState.RUNNING, cut, at=2)
    assert told(story, tick(2, running)) == [
        "2026-11-01 01:30  operations/power-outage-1 power_outage started: London, 50% for 60 min",
        "2026-11-01 01:30  operations/power-outage-1 power_outage power cut at 860 of 1,665 premises in the area"]
    assert told(story, tick(3, running)) == []  # the same again: nothing new to tell
    assert story.following == 1
    done = view("power-outage-1", OUTAGE, OperationState.DONE, cut, at=2)
    assert told(story, tick(4, done)) == [
        "2026-11-01 02:30  operations/power-outage-1 power_outage DONE: power back at the 860 premises cut"]
    assert story.following == 0  # nothing kept of an ended operation


def test_an_event_for_later_is_told_when_accepted_with_its_start():
    story = Story(CONFIG)
    later = view("power-outage-2", OUTAGE, OperationState.PENDING, PowerOutageProgress(), at=48)
    assert told(story, tick(0, later)) == [
        "2026-11-01 00:30  operations/power-outage-2 power_outage accepted: London, 50% for 60 min; "
        "starts 2026-11-02 00:00"]
    cancelled = view("power-outage-2", OUTAGE, OperationState.CANCELLED, PowerOutageProgress(), at=48,
                     reason="cancelled before it started")
    assert told(story, tick(1, cancelled)) == [
        "2026-11-01 01:00  operations/power-outage-2 power_outage CANCELLED: cancelled before it started; "
        "power cut at 0 of 0 premises in the area"]


ROLLOUT = {"type": "firmware_rollout", "device": "ESME", "manufacturer": "Aclara", "model": "SGM1412",
           "target_version": "9.9"}


def rollout(activated: int, wave: int, failed: int = 0) -> FirmwareRolloutProgress:
    shares = (0.1, 0.5, 1.0)
    return FirmwareRolloutProgress(targeted=1000, activated=activated, failed=failed, current_wave=wave,
                                   waves=tuple(WaveProgress(i, s, int(1000 * s), 0, 0, 0) for i, s in enumerate(shares)))


def test_a_rollout_is_told_at_each_wave_and_quarter_and_its_halt_with_the_reason():
    event = ROLLOUT
    story = Story(CONFIG)

    def at(t: int, p: FirmwareRolloutProgress, state: OperationState = OperationState.RUNNING,
           reason: str = "") -> list[str]:
        return [x[18:] for x in told(story, tick(t, view("firmware-rollout-1", event, state, p, reason=reason)))]

    first = at(0, rollout(0, 0))
    assert first[0] == "operations/firmware-rollout-1 firmware_rollout started: Aclara SGM1412 ESME to 9.9"
    assert first[1:] == ["operations/firmware-rollout-1 firmware_rollout wave 1 of 3 started: up to 10% of "
                         "1,000 devices"]
    assert at(1, rollout(90, 0)) == []  # under a quarter
    assert at(2, rollout(260, 1)) == [
        "operations/firmware-rollout-1 firmware_rollout wave 2 of 3 started: up to 50% of 1,000 devices",
        "operations/firmware-rollout-1 firmware_rollout 25% done: 260 of 1,000 devices activated, 0 failed"]
    assert at(3, rollout(400, 1)) == []
    assert at(4, rollout(800, 1, failed=10)) == [  # a jump past two quarters says the one it reached
        "operations/firmware-rollout-1 firmware_rollout 75% done: 800 of 1,000 devices activated, 10 failed"]
    assert at(5, rollout(800, 1, failed=60), OperationState.HALTED, "wave 1 failure rate 6.9% passed the 5.0%") == [
        "operations/firmware-rollout-1 firmware_rollout HALTED: wave 1 failure rate 6.9% passed the 5.0%; "
        "800 of 1,000 devices activated, 60 failed"]
    assert story.following == 0


def test_an_alert_peak_is_told_once_by_kind_and_again_only_as_it_doubles():
    story = Story(CONFIG)
    quiet = [tick(t, alerts={AlertKind.LOW_BATTERY: 2}) for t in range(10)]
    assert told(story, *quiet) == []
    peak = told(story, tick(10, alerts={AlertKind.POWER_OUTAGE: 500, AlertKind.LOW_BATTERY: 3}))
    assert peak == ["2026-11-01 05:30  ALERT PEAK 503 device alerts in half an hour (power outage (AD1) 500, "
                    "gas meter low battery (8F1F) 3); 252x the recent level of 2.0 a half hour"]
    assert told(story, tick(11, alerts={AlertKind.POWER_OUTAGE: int(503 * ESCALATION) - 1})) == []
    grown = told(story, tick(12, alerts={AlertKind.POWER_OUTAGE: 1200}))
    assert len(grown) == 1 and "ALERT PEAK 1,200" in grown[0] and "x the recent level of 2.0" in grown[0]
    assert told(story, tick(13, alerts={AlertKind.LOW_BATTERY: 2})) == []  # the peak is over
    again = told(story, tick(14, alerts={AlertKind.POWER_RESTORED: 700}))
    assert len(again) == 1 and "(power restored (8F36) 700)" in again[0]
    # A small fleet's handful is no peak, however many times its usual none.
    assert told(Story(CONFIG), tick(0, alerts={AlertKind.POWER_OUTAGE: 12})) == []


def test_a_rewind_forgets_what_was_told():
    story = Story(CONFIG)
    running = view("power-outage-1", OUTAGE, OperationState.RUNNING, PowerOutageProgress(premises_cut=5), at=3)
    assert len(told(story, tick(5, running))) == 2
    assert len(told(story, tick(4, running))) == 2  # back before it: told afresh


def test_commands_are_described_by_name_not_code():
    cmd = parse_command({"type": "network_switch_off", "region": "South", "technology": "3G", "at": 0}, CONFIG,
                        now_tick=0)
    assert describe_command(cmd.to_dict()) == "3G off in South"
    cmd = parse_command({"type": "csp_incident", "region": "Central", "duration_min": 45, "at": 0}, CONFIG,
                        now_tick=0)
    assert describe_command(cmd.to_dict()) == "Central for 45 min"


def test_a_csp_incident_and_a_switch_off_say_their_figures_in_words():
    from twin.launcher.story import progress_text
    from twin.model.ops.progress import CspIncidentProgress, NetworkSwitchOffProgress

    assert progress_text(CspIncidentProgress().seeing({"hubs_cut_off": 12345})) == "12,345 hubs cut off from the network"
    assert progress_text(NetworkSwitchOffProgress().seeing({"hubs_on_network": 900})) == "900 hubs still on the network"
    assert progress_text(NetworkSwitchOffProgress().seeing({"hubs_on_network": 0, "hubs_cut_off": 870})) == \
        "870 hubs cut off"
