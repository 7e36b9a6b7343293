"""Server streams never lose a message without the subscriber knowing: a GB-wide power cut read
by continuous, stalled and resuming subscribers of StreamAlerts; WatchFleet every-tick and latest
modes; StreamResponses; and alerts resumed from the run directory after a restart."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import grpc
import pytest

from tests.integration.conftest import run_dir
from twin.client import TwinClient, error_info
from twin.engine.alert_log import position, split
from twin.engine.supervisor import FleetSupervisor
from twin.generated.dcc.v1 import dcc_pb2
from twin.generated.fleet.v1 import fleet_pb2
from twin.model.catalog import AREA_BY_ID, PREPAYMENT_ALERTS, supplier_code
from twin.model.config import FleetConfig
from twin.services.anomaly import AnomalyDetector
from twin.services.errors import bad_request_fields
from twin.services.identity import UserStore
from twin.services.server import ApiServer
from twin.services.streams import StreamLimits

pytestmark = pytest.mark.usefixtures("ray_session")
HUBS = 8_192  # four blocks: two a shard
# A client that reads nothing holds at most this much in flight (HTTP/2 flow control), so a
# stalled reader stalls the server's stream after a few dozen messages instead of a few MB.
SMALL_WINDOW = [("grpc.http2.lookahead_bytes", 16_384), ("grpc.http2.bdp_probe", 0)]


class Streams:
    """A fleet with two API servers: one with the default stream limits, one whose delivery
    windows are a fraction of a second (for subscribers that stall). Not the session's shared stack:
    a GB-wide power cut leaves every premises with alerts and a changed state."""

    def __init__(self, tmp: Path):
        self.sup = FleetSupervisor(FleetConfig(hubs=HUBS, seed=17, block_size=2048), shards=2, run_dir=run_dir("streams"),
                                   checkpoint_every=4, cpus_per_shard=0.5)
        self.sup.step(1)
        self.users = UserStore()
        self.tokens: dict[str, str] = {}
        area = min(AREA_BY_ID)
        for user_id, role, party in (("operator", "OPERATOR", 0), ("ed", "ED", area), ("is", "IS", 1)):
            _, self.tokens[user_id], _ = self.users.issue_user(user_id, role, party, keys_dir=tmp / "keys")
        self.area = area
        self.server = ApiServer(self.sup, self.users, port=0, anomaly=AnomalyDetector(default_threshold=100_000))
        self.server.start()
        self.tight = ApiServer(self.sup, self.users, port=0, anomaly=AnomalyDetector(default_threshold=100_000),
                               streams=StreamLimits(alert_delivery_s=0.3, response_delivery_s=0.3,
                                                    watch_delivery_s=0.3))
        self.tight.start()

    def client(self, user: str, *, tight: bool = False, **kw) -> TwinClient:
        addr = (self.tight if tight else self.server).address
        return TwinClient(addr, token=self.tokens[user], user_id=user, **kw)

    def close(self) -> None:
        self.server.stop(1.0)
        self.tight.stop(1.0)
        self.sup.shutdown()


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    s = Streams(tmp_path_factory.mktemp("streams"))
    yield s
    s.close()


def collect(stream, into: list, done: threading.Event | None = None) -> threading.Thread:
    """Read a stream into `into` on a thread; the status that ends it goes in as the last item."""
    def run() -> None:
        try:
            for m in stream:
                into.append(m)
        except grpc.RpcError as e:
            into.append(e)
        if done is not None:
            done.set()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_for(cond, timeout_s: float = 120.0, what=lambda: "") -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out {what()}")
        time.sleep(0.05)


def test_a_gb_wide_power_cut_reaches_every_subscriber_exactly_and_a_stalled_one_resumes(streams):
    sup = streams.sup
    start = position(sup.tick, 0)  # before the next tick: no race with the first tick
    op, ed = streams.client("operator"), streams.client("ed")
    got_op: list = []
    got_ed: list = []
    collect(op.alerts(start_after_position=start), got_op)
    collect(ed.alerts(start_after_position=start), got_ed)
    # The stalled subscriber (every alert, like an operator) opens its stream and reads nothing.
    stalled_client = streams.client("operator", tight=True, channel_options=SMALL_WINDOW)
    wait_for(lambda: streams.tight.dcc.alert_streams == 0)
    stalled = stalled_client.alerts(start_after_position=start)
    wait_for(lambda: streams.tight.dcc.alert_streams == 1)  # it has begun: what follows is live
    for area in sorted(AREA_BY_ID):  # every area of GB
        sup.submit({"type": "power_outage", "area": str(area), "duration_min": 45})
    summaries = sup.step(4)  # outage alerts, then the restorations
    counted = sum(int(s.alerts.sum()) for s in summaries)
    assert counted > HUBS  # most premises sent an outage alert and a restoration
    wait_for(lambda: len(got_op) >= counted, what=lambda: f"operator {len(got_op)} of {counted}")
    # The network operator's share: its area's alerts but the prepayment ones, which are the
    # import supplier's business (policy.NO_PREPAYMENT_ALERTS). Which those are depends on the
    # fleet's state when the cut comes, so they are counted from what the operator received.
    prepayment = {k.name for k in PREPAYMENT_ALERTS}
    counted_ed = sum(1 for a in got_op if a.area_id == streams.area and a.kind not in prepayment)
    wait_for(lambda: len(got_ed) >= counted_ed, what=lambda: f"network operator {len(got_ed)} of {counted_ed}")
    time.sleep(0.5)  # anything extra would have arrived by now
    # Exactly the alerts the tick summaries counted, for each scope; positions strictly
    # increasing and, for the operator, every position of every tick (no gap).
    assert len(got_op) == counted and len(got_ed) == counted_ed
    assert all(isinstance(a, dcc_pb2.DeviceAlert) for a in got_op + got_ed)
    assert all(a.area_id == streams.area and a.kind not in prepayment for a in got_ed)
    pos_op = [a.position for a in got_op]
    assert pos_op == [position(s.tick, i + 1) for s in summaries for i in range(int(s.alerts.sum()))]
    pos_ed = [a.position for a in got_ed]
    assert pos_ed == sorted(pos_ed) and set(pos_ed) <= set(pos_op)
    kinds = {a.kind for a in got_op}
    assert {"POWER_OUTAGE", "POWER_RESTORED"} <= kinds

    # The stalled subscriber's window has long passed: what was in flight arrives, then the
    # status with the position to resume after, which is the last alert it received.
    time.sleep(0.5)
    part: list = []
    with pytest.raises(grpc.RpcError) as cut:
        for a in stalled:
            part.append(a)
    assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    reason, md = error_info(cut.value)
    assert reason == "STREAM_BEHIND" and int(md["resume_after_position"]) == part[-1].position
    assert str(part[-1].position) in cut.value.details()
    assert 0 < len(part) < counted
    # It resumes from there (from the log, replayed) and gets the rest: no gap, no duplicate.
    rest: list = []
    for a in stalled_client.alerts(start_after_position=part[-1].position):
        rest.append(a)
        if len(part) + len(rest) == counted:
            break
    assert [a.position for a in part + rest] == pos_op
    assert [a.hub for a in part + rest] == [a.hub for a in got_op]
    stalled_client.channel.close()
    op.channel.close()
    ed.channel.close()


def test_follow_alerts_resumes_by_itself_and_bad_positions_say_so(streams):
    sup = streams.sup
    start = position(sup.tick, 0)
    sup.submit({"type": "power_outage", "area": str(max(AREA_BY_ID)), "duration_min": 40})
    resumes: list[int] = []
    got: list[int] = []
    with streams.client("operator", tight=True, channel_options=SMALL_WINDOW) as c:
        wait_for(lambda: streams.tight.dcc.alert_streams == 0)
        it = c.follow_alerts(start_after_position=start, resumes=resumes)
        # The first alert is read on a thread (that opens the stream), then nothing for a while.
        opener = threading.Thread(target=lambda: got.append(next(it).position), daemon=True)
        opener.start()
        wait_for(lambda: streams.tight.dcc.alert_streams == 1)
        summaries = sup.step(3)
        counted = sum(int(s.alerts.sum()) for s in summaries)
        opener.join(60)
        time.sleep(0.5)  # past the tight server's delivery window: the stream is ended...
        for a in it:  # ...and follow_alerts resumes it after the last alert received
            got.append(a.position)
            if len(got) == counted:
                break
        assert got == [position(s.tick, i + 1) for s in summaries for i in range(int(s.alerts.sum()))]
        assert resumes and set(resumes) <= set(got)
        # A negative position.
        with pytest.raises(grpc.RpcError) as e:
            next(c.alerts(start_after_position=-1))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_request_fields(e.value) == [
            "start_after_position"]
    # A position older than the retained alerts.
    old = sup.alert_log
    saved = old.first_tick
    old.first_tick = sup.tick - 1  # as if everything before had been pruned
    try:
        with streams.client("operator") as c, pytest.raises(grpc.RpcError) as e:
            next(c.alerts(start_after_position=start))
        assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
        reason, md = error_info(e.value)
        assert reason == "POSITION_EXPIRED" and int(md["oldest_start_after_position"]) == position(sup.tick - 1, 0)
        assert bad_request_fields(e.value) == ["start_after_position"]
    finally:
        old.first_tick = saved


def test_watch_fleet_every_tick_in_order_or_ended_with_the_tick_to_resume_after(streams):
    sup = streams.sup
    start = sup.tick - 1
    # A reader that keeps up gets every tick in order.
    with streams.client("operator") as c:
        got: list = []
        collect(c.watch_fleet(start_after_tick=start), got)
        sup.step(5)
        wait_for(lambda: len(got) >= 5)
        assert [s.tick for s in got] == list(range(start + 1, start + 6))
        assert all(s.skipped_ticks == 0 for s in got)
    # A stalled reader on the tight server is ended with the tick to resume after.
    with streams.client("operator", tight=True, channel_options=SMALL_WINDOW) as c:
        wait_for(lambda: streams.tight.fleet.watch_streams == 0)
        begin = sup.tick - 1
        stream = c.watch_fleet(start_after_tick=begin)
        wait_for(lambda: streams.tight.fleet.watch_streams == 1)
        sup.step(40)  # a few summaries fill the small window; the rest wait past 0.3 s
        time.sleep(0.5)
        part: list = []
        with pytest.raises(grpc.RpcError) as cut:
            for s in stream:
                part.append(s)
        assert cut.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reason, md = error_info(cut.value)
        assert reason == "STREAM_BEHIND" and int(md["resume_after_tick"]) == part[-1].tick
        ticks = [s.tick for s in part]
        assert ticks == list(range(begin + 1, begin + 1 + len(ticks))) and 0 < len(ticks) < 40
        # Resumed from there: the rest, in order, no gap, no duplicate.
        rest = []
        for s in c.watch_fleet(start_after_tick=part[-1].tick):
            rest.append(s.tick)
            if s.tick == sup.tick - 1:
                break
        assert ticks + rest == list(range(begin + 1, sup.tick))


def test_watch_fleet_latest_mode_says_how_many_ticks_it_skipped(streams):
    sup = streams.sup
    with streams.client("operator", channel_options=SMALL_WINDOW) as c:
        wait_for(lambda: streams.server.fleet.watch_streams == 0)
        before = sup.tick - 1
        stream = c.watch_fleet(start_after_tick=before, latest=True)
        wait_for(lambda: streams.server.fleet.watch_streams == 1)
        sup.step(30)  # the reader reads nothing meanwhile
        got = []
        for s in stream:
            got.append(s)
            if s.tick == sup.tick - 1:
                break
        stream.cancel()
    # In order, ending with the newest; each says how many ticks it skipped, which is the gap
    # since the previous one on the stream; together they account for every tick.
    ticks = [s.tick for s in got]
    assert ticks == sorted(set(ticks)) and ticks[-1] == before + 30
    assert [s.skipped_ticks for s in got] == [t - p - 1 for p, t in zip([before, *ticks], ticks, strict=False)]
    assert len(got) + sum(s.skipped_ticks for s in got) == 30
    assert len(got) < 30  # the small window holds a few: the rest were skipped, and said so
    with streams.client("operator") as c:
        for req, field in ((fleet_pb2.WatchFleetRequest(mode=7), "mode"),
                           (fleet_pb2.WatchFleetRequest(start_after_tick=-5), "start_after_tick")):
            with pytest.raises(grpc.RpcError) as e:
                next(c.fleet.WatchFleet(req, metadata=c.metadata))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_request_fields(e.value) == [field]


def test_watch_fleet_ends_aborted_when_the_run_is_rewound_behind_it(streams):
    sup = streams.sup
    with streams.client("operator") as c:
        # Far enough ahead that the rewind target (three behind the head) is a real tick,
        # whichever tests ran on this stack before.
        sup.step(max(2, 6 - sup.tick))
        head = sup.tick - 1
        stream = c.watch_fleet(start_after_tick=head - 1)
        assert next(stream).tick == head
        back = head - 3
        sup.rewind(back)
        with pytest.raises(grpc.RpcError) as e:
            next(stream)
        assert e.value.code() == grpc.StatusCode.ABORTED
        reason, md = error_info(e.value)
        resume = int(md["resume_after_tick"])
        # The stream ends where the rewound run stood when it noticed (the rewind replays ticks
        # from a checkpoint up to `back`): behind what it had delivered.
        assert reason == "RUN_REWOUND" and resume < head and f"start_after_tick={resume}" in e.value.details()
        # Resumed there, the ticks follow in order from the rewound run.
        it = c.follow_fleet(start_after_tick=resume)
        sup.step(1)
        ticks = [next(it).tick for _ in range(back - resume)]
        assert ticks == list(range(resume + 1, back + 1))
        sup.run_until(head + 1)


@pytest.mark.timeout(120)
def test_a_rewind_that_replays_nothing_still_ends_the_streams_ahead_of_it(streams):
    # Rewound to just after a checkpoint, the run restores it and replays no tick: no summary is
    # recorded, yet a stream ahead of the run must still end (it used to wait for a tick forever).
    sup = streams.sup
    with streams.client("operator") as c:
        sup.step(max(1, 9 - sup.tick))
        mark = max(t for t in sup.checkpoints.marked_ticks() if t + 1 < sup.tick - 1)
        head = sup.tick - 1
        stream = c.watch_fleet(start_after_tick=head - 1)
        assert next(stream).tick == head
        sup.rewind(mark + 1)
        with pytest.raises(grpc.RpcError) as e:
            next(stream)
        assert e.value.code() == grpc.StatusCode.ABORTED
        reason, md = error_info(e.value)
        assert reason == "RUN_REWOUND" and int(md["resume_after_tick"]) == mark
        sup.run_until(head + 1)


def test_stream_responses_resume_after_falling_behind(streams, tmp_path):
    sup = streams.sup
    recs, _ = sup.list_hubs({"reachable": True, "area": streams.area}, 0, 200)
    hub = recs[0]
    user = "reader"
    _, streams.tokens[user], _ = streams.users.issue_user(user, "IS", supplier_code(hub["supplier"]),
                                                         keys_dir=tmp_path / "keys")
    target = f"hubs/{hub['device_id']}"
    sup.submit({"type": "power_outage", "area": str(streams.area), "duration_min": 40})
    sup.step(1)
    assert not sup.hub(hub["hub"])["reachable"]
    n = 400  # well beyond what the small window holds in flight
    with streams.client(user, tight=True, channel_options=SMALL_WINDOW) as c:
        stream = c.responses(start_after_position=0)  # also a known position: nothing kept yet
        wait_for(lambda: streams.tight.dcc.response_streams == 1)
        acks = [c.submit("4.1.1", target).response for _ in range(n)]
        assert {a.status for a in acks} == {dcc_pb2.RESPONSE_STATUS_ACKNOWLEDGED}
        for _ in range(4):  # the power comes back; every read is answered on the stream
            sup.step(1)
        wait_for(lambda: streams.tight.dcc.core.responses.of(user).last == n)
        time.sleep(0.5)  # the stalled stream's window (0.3 s) passes
        part: list = []
        done = threading.Event()
        collect(stream, part, done)
        assert done.wait(60), f"the stalled stream was not ended ({len(part)} responses read)"
        cut = part.pop()
        assert isinstance(cut, grpc.RpcError) and cut.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reason, md = error_info(cut)
        assert reason == "STREAM_BEHIND" and int(md["resume_after_position"]) == part[-1].position
        assert 0 < len(part) < n
        rest = []
        for r in c.responses(start_after_position=part[-1].position):
            rest.append(r)
            if len(part) + len(rest) == n:
                break
        got = part + rest
        assert [r.position for r in got] == list(range(1, n + 1))
        assert sorted(r.request_id for r in got) == sorted(a.request_id for a in acks)
        assert {r.status for r in got} == {dcc_pb2.RESPONSE_STATUS_COMPLETED}
        with pytest.raises(grpc.RpcError) as e:
            next(c.responses(start_after_position=n + 5))
        assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE and bad_request_fields(e.value) == [
            "start_after_position"]


def test_alerts_resume_from_the_run_directory_after_a_restart(tmp_path):
    config = FleetConfig(hubs=20_000, seed=5, block_size=1024)
    rd = run_dir("streams-restart")
    # Half a CPU per shard: the module's fleet holds the other half of the session's two.
    sup = FleetSupervisor(config, shards=2, run_dir=rd, checkpoint_every=3, cpus_per_shard=0.5)
    users = UserStore()
    _, token, _ = users.issue_user("operator", "OPERATOR", 0, keys_dir=tmp_path / "keys")
    try:
        summaries = sup.step(1)  # tick 0's background alerts are in the log too
        sup.submit({"type": "power_outage", "area": "12", "duration_min": 40})
        summaries += sup.step(5)  # checkpoint at the end of tick 5
        expected = [position(s.tick, i + 1) for s in summaries for i in range(int(s.alerts.sum()))]
        assert expected
    finally:
        sup.shutdown()
    sup = FleetSupervisor(config, shards=2, run_dir=rd, checkpoint_every=3, cpus_per_shard=0.5, resume=True)
    server = ApiServer(sup, users, port=0)
    server.start()
    try:
        assert sup.tick == 6 and sup.alert_log.cached(3) is None  # nothing in memory: from the files
        got = []
        with TwinClient(server.address, token=token) as c:
            for a in c.alerts(start_after_position=0):
                got.append(a)
                if len(got) == len(expected):
                    break
            assert [a.position for a in got] == expected
            assert {split(p)[0] for p in expected} <= {s.tick for s in summaries}
            # Resumed mid-tick: exactly the rest.
            mid = expected[len(expected) // 2]
            rest = []
            for a in c.alerts(start_after_position=mid):
                rest.append(a.position)
                if rest[-1] == expected[-1]:
                    break
            assert rest == expected[len(expected) // 2 + 1:]
    finally:
        server.stop(1.0)
        with contextlib.suppress(Exception):
            sup.shutdown()


def test_the_dashboard_feed_resumes_and_follows_a_rewind_without_a_gap(streams):
    from dashboard.feed import FleetFeed

    sup = streams.sup
    feed = FleetFeed(streams.server.address, token=streams.tokens["operator"], backlog=5).start()
    try:
        wait_for(lambda: feed.last_tick() == sup.tick - 1)
        first = feed.ticks_since(-1, limit=1000)[0]["tick"]
        sup.step(3)
        wait_for(lambda: feed.last_tick() == sup.tick - 1)
        head = sup.tick
        sup.rewind(head - 2)  # the feed's stream ends ABORTED; it resumes where the run now is
        sup.step(4)
        wait_for(lambda: feed.last_tick() == sup.tick - 1)
        ticks = [r["tick"] for r in feed.ticks_since(-1, limit=1000)]
        assert ticks == list(range(first, sup.tick))  # in order, no gap, none twice
        assert feed.status.reconnects == 0 and feed.status.ticks_missed == 0 and feed.status.last_error == ""
    finally:
        feed.stop()


def test_alert_positions_are_the_same_for_any_shard_count():
    config = FleetConfig(hubs=20_000, seed=23, block_size=1024)
    logs = []
    for shards in (1, 3):
        sup = FleetSupervisor(config, shards=shards, run_dir=run_dir(f"streams-shards{shards}"), cpus_per_shard=0.3)
        try:
            sup.submit({"type": "power_outage", "area": "14", "fraction": 0.5, "duration_min": 40})
            sup.step(3)
            logs.append({t: sup.alert_log.get(t).cols for t in range(3)})
        finally:
            sup.shutdown()
    assert sum(c["hub"].size for c in logs[0].values()) > 1000
    for t in range(3):
        for k, col in logs[0][t].items():
            assert (col == logs[1][t][k]).all() and col.size == logs[1][t][k].size, (t, k)
