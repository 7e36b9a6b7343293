"""DUIS delivery (twin.services.duis_gateway.delivery) against real HTTP receivers on loopback sockets.

Each receiver is a real HTTP/1.1 server (http.server in a thread) that records the bodies it accepted
and can be switched between up (204), answering 503, dropping the connection unanswered, and stopped
(its port closed: connection refused). Retry windows are a second or two, or a fake clock moves past
the real 300 s, so the same logic runs in seconds. Waits poll for an outcome with a generous limit;
nothing asserts how long anything took."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import ipaddress
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from twin.services.duis_gateway.delivery import Delivery, FailedMessage, Message, QueueFull, Receivers

FAST = (0.02, 0.05, 0.1)  # backoff for tests: real seconds between attempts


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up mid-request (the delivery stopping) is expected here


class Receiver:
    """A User's receive endpoint on 127.0.0.1. mode: "up" (204), "503", "drop" (close the connection
    unanswered), "hang" (never answer) or "stopped" (the listening socket closed). When up, a body in `answers` is answered
    with the next status of its list (204 once the list is spent) and counts as accepted on a 2xx."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.mode = "up"
        self.accepted: list[bytes] = []
        self.requests: list[tuple[bytes, str]] = []  # every request seen: (body, content type)
        self.answers: dict[bytes, list[int]] = {}
        self.connections: set[tuple[str, int]] = set()
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.tls = tls
        self.port = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/smartdcc/duis"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        rx = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the DCC's client uses it

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with rx.lock:
                    rx.connections.add(self.client_address[:2])
                    rx.requests.append((body, self.headers.get("Content-Type", "")))
                    mode = rx.mode
                    planned = rx.answers.get(body)
                    code = 503 if mode == "503" else planned.pop(0) if planned else 204
                    if mode == "up" and 200 <= code < 300:
                        rx.accepted.append(body)
                if mode == "hang":
                    rx.released.wait()  # never answer until the test ends
                if mode in ("drop", "stopped", "hang"):
                    self.close_connection = True
                    return
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def start(self) -> None:
        server = _QuietServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def set(self, mode: str) -> None:
        if mode == "stopped" and self._server is not None:
            self.close()
        elif mode != "stopped" and self._server is None:
            self.start()  # the same port again (SO_REUSEADDR), so the receive URL stays valid
        with self.lock:
            self.mode = mode

    def close(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = None

    def bodies(self) -> list[bytes]:
        with self.lock:
            return list(self.accepted)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.close()


@pytest.fixture
def receiver2() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.close()


def msg(user: str, n: int) -> Message:
    return Message(user_id=user, message_id=f"{user}:{n}", xml=f"<sr:Response id='{user}:{n}'/>".encode(),
                   enqueued_at=time.monotonic())


async def until(cond: Callable[[], bool], what: str, limit_s: float = 20.0) -> None:
    """Poll until cond() holds; fail (saying what was awaited) after a generous limit."""
    for _ in range(int(limit_s / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def delivery(receivers: Receivers, **kw: object) -> Delivery:
    kw.setdefault("backoff_s", FAST)
    kw.setdefault("timeout_s", 2.0)
    return Delivery(receivers, **kw)  # type: ignore[arg-type]


# -- (1) down for a while, then up: everything exactly once, in order -------------------------------

@pytest.mark.parametrize("down", ["503", "drop", "stopped"])
def test_receiver_down_then_up_gets_everything_once_in_order(receiver: Receiver, down: str) -> None:
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers, retry_for_s=60.0)
    sent = [msg("u1", i) for i in range(8)]

    async def scenario() -> None:
        receiver.set(down)
        await d.start()
        try:
            for m in sent:
                d.enqueue(m)
            await until(lambda: d.stats()["retried"] >= 3, "three retries while the receiver is down")
            assert receiver.bodies() == []
            receiver.set("up")
            await until(lambda: d.stats()["delivered"] == len(sent), "all delivered")
        finally:
            await d.stop()

    run(scenario)
    assert receiver.bodies() == [m.xml for m in sent]
    stats = d.stats()
    assert (stats["delivered"], stats["failed"], stats["queued"], stats["failed_held"]) == (8, 0, 0, 0)
    assert d.errors == []


def test_delivery_posts_application_xml_over_one_keep_alive_connection(receiver: Receiver) -> None:
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers)
    sent = [msg("u1", i) for i in range(20)]

    async def scenario() -> None:
        await d.start()
        try:
            for m in sent:
                d.enqueue(m)
            await until(lambda: d.stats()["delivered"] == 20, "all delivered")
        finally:
            await d.stop()

    run(scenario)
    assert receiver.bodies() == [m.xml for m in sent]
    assert {ct for _, ct in receiver.requests} == {"application/xml"}
    assert len(receiver.connections) == 1


# -- (2) down past the retry window: the failed queue, then redelivery -------------------------------

def test_messages_past_the_window_fail_in_order_and_redeliver_once(receiver: Receiver) -> None:
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers, retry_for_s=0.5)
    sent = [msg("u1", i) for i in range(4)]
    held: list[FailedMessage] = []

    async def scenario() -> None:
        receiver.set("503")
        await d.start()
        try:
            for m in sent:
                d.enqueue(m)
            await until(lambda: d.stats()["failed"] == 4, "all four in the failed queue")
            held.extend(d.failed("u1"))
            receiver.set("up")
            assert await d.redeliver("u1") == 4
            await until(lambda: d.stats()["delivered"] == 4, "all four redelivered")
        finally:
            await d.stop()

    run(scenario)
    assert [f.message for f in held] == sent
    assert all(f.last_error == "HTTP 503" for f in held)
    assert held[0].attempts >= 2  # the head retried through its window
    assert all(f.attempts >= 1 for f in held)  # each was offered at least once
    assert [f.failed_at for f in held] == sorted(f.failed_at for f in held)
    assert receiver.bodies() == [m.xml for m in sent]
    assert d.failed("u1") == []
    assert d.stats()["failed_held"] == 0


def test_connection_refused_is_named_and_redeliver_picks_by_id(receiver: Receiver) -> None:
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers, retry_for_s=0.3)
    sent = [msg("u1", i) for i in range(3)]

    async def scenario() -> None:
        receiver.set("stopped")
        await d.start()
        try:
            for m in sent:
                d.enqueue(m)
            await until(lambda: d.stats()["failed"] == 3, "all three failed")
            assert {f.last_error for f in d.failed("u1")} == {"connection refused"}
            receiver.set("up")
            # Named out of order and with an unknown id: moved in original order, the unknown skipped.
            assert await d.redeliver("u1", ["u1:2", "nope", "u1:0"]) == 2
            await until(lambda: d.stats()["delivered"] == 2, "two redelivered")
            assert [f.message for f in d.failed("u1")] == [sent[1]]
            with pytest.raises(TypeError):
                await d.redeliver("u1", "u1:1")
        finally:
            await d.stop()

    run(scenario)
    assert receiver.bodies() == [sent[0].xml, sent[2].xml]


# -- (3) a 400 is a rejection: straight to failed, no retry ------------------------------------------

@pytest.mark.parametrize("status", [400, 403, 404, 413, 301, 307])
def test_a_rejection_goes_straight_to_failed_without_retry(receiver: Receiver, status: int) -> None:
    # A 4xx other than 408/429 says the receiver found the message invalid; a redirect is never
    # followed (the receive URL is the one validated), so retrying would not change either.
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers, retry_for_s=60.0)
    sent = [msg("u1", i) for i in range(3)]
    receiver.answers[sent[1].xml] = [status]

    async def scenario() -> None:
        await d.start()
        try:
            for m in sent:
                d.enqueue(m)
            await until(lambda: d.stats()["delivered"] == 2, "the two valid ones delivered")
        finally:
            await d.stop()

    run(scenario)
    [failed] = d.failed("u1")
    assert (failed.message, failed.attempts, failed.last_error) == (sent[1], 1, f"HTTP {status}")
    assert [body for body, _ in receiver.requests] == [m.xml for m in sent]  # the 400 was not retried
    assert receiver.bodies() == [sent[0].xml, sent[2].xml]
    assert d.stats()["retried"] == 0


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_a_transient_status_is_retried_and_then_delivered_once(receiver: Receiver, status: int) -> None:
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers, retry_for_s=60.0)
    sent = [msg("u1", i) for i in range(3)]
    receiver.answers[sent[0].xml] = [status, status]

    async def scenario() -> None:
        await d.start()
        try:
            for m in sent:
                d.enqueue(m)
            await until(lambda: d.stats()["delivered"] == 3, "all delivered")
        finally:
            await d.stop()

    run(scenario)
    assert [body for body, _ in receiver.requests] == [sent[0].xml] * 3 + [m.xml for m in sent[1:]]
    assert receiver.bodies() == [m.xml for m in sent]
    assert (d.stats()["retried"], d.failed("u1")) == (2, [])


def test_a_receiver_that_never_answers_times_out_and_fails(receiver: Receiver) -> None:
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers, retry_for_s=0.5, timeout_s=0.2)

    async def scenario() -> None:
        receiver.set("hang")
        await d.start()
        try:
            d.enqueue(msg("u1", 0))
            await until(lambda: d.stats()["failed"] == 1, "failed after timeouts")
        finally:
            await d.stop()

    run(scenario)
    [failed] = d.failed("u1")
    assert failed.last_error == "timeout after 0.2 s" and failed.attempts >= 1


# -- (4) one User's receiver down does not delay another's --------------------------------------------

def test_one_user_down_does_not_delay_another(receiver: Receiver, receiver2: Receiver) -> None:
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    receivers.set("u2", receiver2.url)
    d = delivery(receivers, retry_for_s=600.0)
    u1 = [msg("u1", i) for i in range(5)]
    u2 = [msg("u2", i) for i in range(5)]

    async def scenario() -> None:
        receiver.set("503")
        await d.start()
        try:
            for m in u1:
                d.enqueue(m)
            for m in u2:
                d.enqueue(m)
            await until(lambda: d.stats()["delivered"] == 5, "u2's messages delivered")
            assert receiver2.bodies() == [m.xml for m in u2]
            # u2 got everything while u1's head is still retrying inside its 600 s window.
            assert d.stats()["queued"] == 5
            assert d.failed("u1") == []
        finally:
            await d.stop()

    run(scenario)
    assert receiver.bodies() == []
    assert d.stats()["queued"] == 5  # stop() keeps them for the next start()


# -- (5) receive URLs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://recv.example.com/smartdcc/duis",  # http to a non-loopback host, even an allowed one
    "http://10.0.0.1/smartdcc/duis",
    "https://elsewhere.example.com/smartdcc/duis",  # not in allowed_hosts
    "https://user:secret@recv.example.com/smartdcc/duis",  # credentials
    "http://user@127.0.0.1:8080/smartdcc/duis",
    "ftp://127.0.0.1/smartdcc/duis",  # not http(s)
    "file:///etc/passwd",
    "javascript:alert(1)",
    "127.0.0.1:8080/smartdcc/duis",  # no scheme
    "http://127.0.0.1:99999/smartdcc/duis",  # port out of range
    "http:///smartdcc/duis",  # no host
    "http://\u2113ocalhost/smartdcc/duis",  # SCRIPT SMALL L  # Unicode look-alike
    "http://127.0.0.1/smart\u202edcc",  # bidi override
    "http://127.0.0.1/\udcff",  # lone surrogate
    "http://127.0.0.1/\x00",
    "http://127.0.0.1/ sp",
    "https://recv.example.com\u3002evil/",  # ideographic full stop
    "http://[::ffff:7f00:1/",  # broken IPv6 literal
    "",
    "http://" + "a" * 3000,
])
def test_receivers_refuse_bad_urls(url: str) -> None:
    receivers = Receivers(allowed_hosts=["recv.example.com"])
    with pytest.raises(ValueError):
        receivers.set("u1", url)
    assert receivers.get("u1") is None


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/smartdcc/duis",
    "http://127.9.9.9/smartdcc/duis",
    "http://localhost:8080/smartdcc/duis",
    "http://[::1]:8080/smartdcc/duis",
    "https://localhost/smartdcc/duis",
    "https://recv.example.com/smartdcc/duis",
    "https://RECV.example.com:8443/smartdcc/duis?x=1",
])
def test_receivers_accept_loopback_and_allowed_https(url: str) -> None:
    receivers = Receivers(allowed_hosts=["recv.example.com"])
    receivers.set("u1", url)
    assert receivers.get("u1") == url


def test_receivers_refuse_bad_user_ids_and_non_strings() -> None:
    receivers = Receivers()
    for user in ("", "a\x00b", "x" * 300):
        with pytest.raises(ValueError):
            receivers.set(user, "http://127.0.0.1/smartdcc/duis")
    with pytest.raises(ValueError):
        receivers.set("u1", b"http://127.0.0.1/" )  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Receivers(allowed_hosts="recv.example.com")
    with pytest.raises(ValueError):
        Receivers(allowed_hosts=["bad host"])


def test_enqueue_refuses_a_user_without_receive_url_and_malformed_messages() -> None:
    receivers = Receivers()
    receivers.set("u1", "http://127.0.0.1:9/smartdcc/duis")
    d = delivery(receivers)
    with pytest.raises(ValueError, match="no receive URL"):
        d.enqueue(msg("u2", 0))
    for bad in (Message("u1", "", b"<x/>", 0.0), Message("u1", "m\n1", b"<x/>", 0.0),
                Message("u1", "m1", b"", 0.0), Message("u1", "m1", "<x/>", 0.0)):  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            d.enqueue(bad)
    assert d.stats()["queued"] == 0


# -- (6) failed messages are held keep_failed_s, then pruned --------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_failed_messages_older_than_keep_failed_s_are_pruned(receiver: Receiver) -> None:
    clock = FakeClock()
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers, clock=clock)  # the defaults: 300 s retry, 2 days held
    sent = [msg("u1", i) for i in range(2)]
    receiver.answers.update({m.xml: [400] for m in sent})

    async def scenario() -> None:
        await d.start()
        try:
            d.enqueue(sent[0])
            await until(lambda: len(d.failed("u1")) == 1, "the first rejected")
            clock.now += 86_400.0
            d.enqueue(sent[1])
            await until(lambda: len(d.failed("u1")) == 2, "the second rejected")
        finally:
            await d.stop()

    run(scenario)
    assert [f.failed_at for f in d.failed("u1")] == [1_000.0, 87_400.0]
    clock.now = 1_000.0 + 2 * 86_400.0 - 1
    assert [f.message for f in d.failed("u1")] == sent
    clock.now = 1_000.0 + 2 * 86_400.0
    assert [f.message for f in d.failed("u1")] == [sent[1]]
    assert d.stats()["failed_held"] == 1
    clock.now = 87_400.0 + 2 * 86_400.0 + 1
    assert d.failed("u1") == []
    assert d.stats()["failed_held"] == 0
    assert d.stats()["failed"] == 2

    async def redeliver() -> int:
        return await d.redeliver("u1")

    assert asyncio.run(redeliver()) == 0  # nothing held any more


def test_the_real_300_s_window_runs_on_the_injected_clock(receiver: Receiver) -> None:
    clock = FakeClock()
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers, clock=clock)  # retry_for_s defaults to 300
    m = msg("u1", 0)

    async def scenario() -> None:
        receiver.set("503")
        await d.start()
        try:
            d.enqueue(m)
            await until(lambda: d.stats()["retried"] >= 3, "retries inside the window")
            clock.now += 299.0
            retried = d.stats()["retried"]
            await until(lambda: d.stats()["retried"] >= retried + 2, "still retrying at 299 s")
            assert d.failed("u1") == []
            clock.now += 1.0
            await until(lambda: len(d.failed("u1")) == 1, "failed at 300 s")
        finally:
            await d.stop()

    run(scenario)
    [failed] = d.failed("u1")
    assert failed.failed_at == 1_300.0 and failed.last_error == "HTTP 503" and failed.attempts >= 5


# -- (7) a full queue says so -------------------------------------------------------------------------

def test_a_full_queue_raises_queue_full_and_keeps_what_it_has() -> None:
    receivers = Receivers()
    receivers.set("u1", "http://127.0.0.1:9/smartdcc/duis")
    receivers.set("u2", "http://127.0.0.1:9/smartdcc/duis")
    d = delivery(receivers, max_queued_per_user=3)  # not started: nothing drains
    for i in range(3):
        d.enqueue(msg("u1", i))
    with pytest.raises(QueueFull, match="u1"):
        d.enqueue(msg("u1", 3))
    d.enqueue(msg("u2", 0))  # another User's queue is its own
    assert d.stats()["queued"] == 4


# -- health: a crashing worker is reported and restarted ----------------------------------------------

def test_a_crashed_worker_is_reported_and_restarted(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers)
    real_attempt = Delivery._attempt
    crashes: list[str] = []

    async def crash_once(self: Delivery, message: Message) -> tuple[str, str]:
        if not crashes:
            crashes.append(message.message_id)
            raise RuntimeError("injected fault")
        return await real_attempt(self, message)

    # Fault injection: a bug inside the worker, which no real input is meant to cause.
    monkeypatch.setattr(Delivery, "_attempt", crash_once)
    sent = [msg("u1", i) for i in range(3)]

    async def scenario() -> None:
        await d.start()
        try:
            for m in sent:
                d.enqueue(m)
            await until(lambda: d.stats()["delivered"] == 3, "all delivered after the restart")
        finally:
            await d.stop()

    run(scenario)
    assert receiver.bodies() == [m.xml for m in sent]
    assert d.stats()["worker_crashes"] == 1
    [error] = d.errors
    assert "'u1'" in error and "RuntimeError: injected fault" in error and "Traceback" in error


# -- enqueue from another thread, and https with a CA path ----------------------------------------------

def _tls_pair(tmp: Path) -> tuple[ssl.SSLContext, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receiver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    return server, str(cert_path)


def test_https_receiver_verified_by_ca_path_and_enqueue_from_another_thread(tmp_path: Path) -> None:
    server_ctx, ca_path = _tls_pair(tmp_path)
    rx = Receiver(tls=server_ctx)
    try:
        receivers = Receivers()
        receivers.set("u1", rx.url)
        d = delivery(receivers, verify=ca_path)
        sent = [msg("u1", i) for i in range(5)]

        async def scenario() -> None:
            await d.start()
            try:
                def produce() -> None:
                    for m in sent:
                        d.enqueue(m)

                producer = threading.Thread(target=produce)
                producer.start()
                await asyncio.to_thread(producer.join)
                await until(lambda: d.stats()["delivered"] == 5, "all delivered over TLS")
            finally:
                await d.stop()

        run(scenario)
        assert rx.bodies() == [m.xml for m in sent]
    finally:
        rx.close()


def test_an_unverifiable_https_receiver_is_retried_then_failed_with_the_reason(tmp_path: Path) -> None:
    server_ctx, _ = _tls_pair(tmp_path)
    rx = Receiver(tls=server_ctx)
    try:
        receivers = Receivers()
        receivers.set("u1", rx.url)
        d = delivery(receivers, retry_for_s=0.3)  # verify=True: the system CAs do not know this one

        async def scenario() -> None:
            await d.start()
            try:
                d.enqueue(msg("u1", 0))
                await until(lambda: d.stats()["failed"] == 1, "failed")
            finally:
                await d.stop()

        run(scenario)
        [failed] = d.failed("u1")
        assert failed.last_error.startswith("TLS certificate verification failed")
        assert rx.bodies() == []
    finally:
        rx.close()


def test_a_worker_that_always_crashes_still_ends_its_head_in_the_failed_queue(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receivers = Receivers()
    receivers.set("u1", receiver.url)
    d = delivery(receivers, retry_for_s=0.3)

    async def always_crash(self: Delivery, message: Message) -> tuple[str, str]:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(Delivery, "_attempt", always_crash)  # fault injection, as above
    sent = [msg("u1", 0), msg("u1", 1)]

    async def scenario() -> None:
        await d.start()
        try:
            for m in sent:
                d.enqueue(m)
            await until(lambda: d.stats()["failed"] == 2, "both failed despite the crashes")
        finally:
            await d.stop()

    run(scenario)
    assert [f.message for f in d.failed("u1")] == sent
    assert {f.last_error for f in d.failed("u1")} == {"internal error: RuntimeError: injected fault"}
    assert d.stats()["worker_crashes"] >= 2 and len(d.errors) == d.stats()["worker_crashes"]
