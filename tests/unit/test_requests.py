"""Request ids: retries answered once, DUIS counters strictly increasing, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.engine.requests import RequestIdError, RequestKey, RequestLedger, parse_request_id

ORIG = "90-B3-D5-1F-30-01-00-00"
TARGET = "00-DB-12-34-56-78-9A-BC"


def duis(counter: int, orig: str = ORIG) -> str:
    return f"{orig}:{TARGET}:{counter}"


def kind_of(fn, *args) -> str:
    with pytest.raises(RequestIdError) as e:
        fn(*args)
    return e.value.kind


def test_duis_and_opaque_ids_are_told_apart():
    assert parse_request_id(duis(7)).counter == 7
    assert parse_request_id(duis(7).lower()).originator == ORIG  # EUIs compare upper-case
    assert parse_request_id("3f2c9a5e-7d7b-4c1e-9d0e-1a2b3c4d5e6f") is None
    for bad in ["a:b:c", f"{ORIG}:{TARGET}", f"{ORIG}:{TARGET}:-1", f"{ORIG}:{TARGET}:1:2",
                f"{ORIG}:{TARGET}:{2**64}", f"{ORIG}:{TARGET}:\u0661\u0662", f"{ORIG}:{TARGET}:1\n"]:
        assert kind_of(parse_request_id, bad) == "invalid", bad


def test_a_retry_gets_the_first_answer_and_a_reused_id_is_refused():
    led = RequestLedger()
    assert led.claim("alice", "r1", "d1") is None
    assert kind_of(led.claim, "alice", "r1", "d1") == "in_progress"
    led.finish("alice", "r1", operation="service-request-4", answer=b"first")
    seen = led.claim("alice", "r1", "d1")
    assert (seen.state, seen.operation, seen.answer) == ("done", "service-request-4", b"first")
    assert kind_of(led.claim, "alice", "r1", "other request") == "reused"
    assert led.claim("bob", "r1", "d1") is None  # ids are per caller


def test_duis_counter_must_increase_per_caller_and_originator():
    led = RequestLedger()
    assert led.claim("alice", duis(5), "d") is None
    led.finish("alice", duis(5))
    assert kind_of(led.claim, "alice", duis(4), "d") == "stale"
    assert kind_of(led.claim, "alice", f"{ORIG}:{ORIG}:5", "d") == "stale"  # same counter, other target
    assert led.claim("alice", duis(6), "d") is None
    assert led.claim("alice", duis(1, orig="90-B3-D5-1F-30-01-00-01"), "d") is None  # another originator
    assert led.claim("bob", duis(1), "d") is None  # another caller


def test_a_refused_request_may_be_retried_but_its_counter_stays_used():
    led = RequestLedger()
    assert led.claim("alice", duis(9), "d") is None
    led.fail("alice", duis(9))
    assert led.claim("alice", duis(9), "d2") is None  # nothing applied: the id is free again
    led.fail("alice", duis(9))
    assert kind_of(led.claim, "alice", duis(8), "d") == "stale"


def test_a_held_request_is_answered_as_held_until_released_or_deleted():
    led = RequestLedger()
    led.claim("alice", "q1", "d")
    led.hold("alice", "q1", "q-000003")
    with pytest.raises(RequestIdError) as e:
        led.claim("alice", "q1", "d")
    assert (e.value.kind, e.value.held) == ("held", "q-000003")
    led.fail("alice", "q1")  # the call that was quarantined ends: the request stays held
    assert kind_of(led.claim, "alice", "q1", "d") == "held"
    led.release("alice", "q1")
    led.finish("alice", "q1", answer=b"a")
    assert led.claim("alice", "q1", "d").answer == b"a"
    led.claim("alice", "q2", "d")
    led.hold("alice", "q2", "q-000004")
    led.fail("alice", "q2", held=True)  # deleted from quarantine: the id is free again
    assert led.claim("alice", "q2", "d") is None


def test_memory_is_bounded_and_forgotten_duis_ids_are_still_refused():
    led = RequestLedger(max_ids=3)
    for c in range(1, 11):
        assert led.claim("alice", duis(c), "d") is None
        led.finish("alice", duis(c))
    assert len(led) == 3
    assert led.get("alice", duis(1)) is None
    assert kind_of(led.claim, "alice", duis(1), "d") == "stale"


def test_answers_kept_are_bounded_in_bytes():
    led = RequestLedger(max_answer_bytes=1000)
    for i in range(10):
        led.claim("alice", f"r{i}", "d")
        led.finish("alice", f"r{i}", answer=b"x" * 300)
    assert len(led) == 3 and led.get("alice", "r9").answer == b"x" * 300 and led.get("alice", "r6") is None


def test_rebuilt_from_journal_records():
    key = RequestKey("alice", duis(3), "d")
    recs = [{"seq": 1, "command": {}}, {"seq": 2, "command": {}, "request": key.journal_entry("service-request-2")}]
    led = RequestLedger()
    led.load(recs)
    assert led.claim("alice", duis(3), "d").operation == "service-request-2"
    assert kind_of(led.claim, "alice", duis(2), "d") == "stale"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alice", "bob"]), st.integers(0, 12), st.booleans()), max_size=60),
       st.booleans())
def test_any_sequence_with_repeats_applies_each_distinct_id_exactly_once(sends, use_duis):
    """Submissions (caller, id, whether processing fails) in any order with repeats: an id is
    applied once at most; an opaque id once exactly (unless every attempt failed); DUIS ids are
    applied in strictly increasing counter order per caller."""
    led = RequestLedger()
    applied: dict[tuple[str, str], int] = {}
    order: dict[str, list[int]] = {}
    for user, n, fails in sends:
        rid = duis(n) if use_duis else f"id-{n}"
        try:
            seen = led.claim(user, rid, "d")
        except RequestIdError as e:
            assert use_duis and e.kind == "stale"
            continue
        if seen is not None:
            assert applied.get((user, rid)) == 1
            continue
        if fails:
            led.fail(user, rid)
            continue
        applied[(user, rid)] = applied.get((user, rid), 0) + 1
        order.setdefault(user, []).append(n)
        led.finish(user, rid)
    assert all(v == 1 for v in applied.values())
    if use_duis:
        assert all(ns == sorted(set(ns)) for ns in order.values())
    else:
        wanted = {(u, f"id-{n}") for u, n, _ in sends}
        never_ok = {(u, f"id-{n}") for u, n, _ in sends} - {(u, f"id-{n}") for u, n, f in sends if not f}
        assert set(applied) == wanted - never_ok
