"""Asynchronous DUIS delivery: device responses and alerts POSTed to each DCC User's receive URL.

DUIS facts this follows (/work/shared/domain/DUIS.md):
- [C] the DCC POSTs device responses and alerts, signed DUIS XML with `Content-Type: application/xml`,
  to the User's own receive address (the DCC tools' default path is `/smartdcc/duis`); the User
  answers 204, or 400 when schema or signature validation fails.
- [C] the DCC retries for up to 300 s; a message undelivered after 300 s goes to a failed-delivery
  queue and is held 2 days for re-delivery on request (SEC glossary, "Device Alert").
- [C] the DCC's client tools time out after 3 s; used here as the whole-attempt timeout.
- [D] per User, messages go strictly in order (head-of-line: later messages wait while the head
  retries); any 2xx counts as delivered; 4xx other than 408/429 (and 1xx/3xx: redirects are never
  followed) is a rejection, not retried; 5xx, 408, 429, timeouts and connection errors are retried.
- [D] a message whose window passed while it waited behind the head still gets one attempt before
  it fails, so every message is offered to the receiver at least once.
- [U] the DCC's real backoff schedule; the default (0.5, 1, 2, 5, 10, 30) s is this twin's choice.

The module moves opaque bytes: it neither parses nor signs XML. Everything runs on one asyncio event
loop with one `httpx.AsyncClient` (HTTP/1.1, keep-alive, proxies from the environment ignored);
`enqueue` may also be called from other threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import ssl
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

__all__ = ["DEFAULT_RECEIVE_PATH", "Delivery", "FailedMessage", "Message", "QueueFull", "Receivers"]

log = logging.getLogger(__name__)

DEFAULT_RECEIVE_PATH = "/smartdcc/duis"  # [C] the DCC tools' default receive path

_MAX_URL_LEN = 2048
_MAX_ID_LEN = 256
_MAX_RESPONSE_READ = 64 * 1024  # a receiver's answer body is read this far, then the connection dropped
_MAX_ERRORS_KEPT = 100
# Printable ASCII without space: a receive URL with anything else (controls, Unicode) is refused
# rather than guessed at (an IDN host is given in its punycode form).
_URL_CHARS = re.compile(r"[!-~]+")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ID_BAD = re.compile(r"[\x00-\x1f\x7f]")


class QueueFull(RuntimeError):
    """A User's delivery queue already holds `max_queued_per_user` messages; nothing was added."""


@dataclass(frozen=True)
class Message:
    """One DUIS message for one User.

    user_id: the DCC User it goes to; message_id: the DUIS ResponseID or alert id, unique per User
    (the receiver dedupes on it); xml: the signed DUIS XML, sent as is; enqueued_at: the sender's
    clock time, carried for the record (the retry window is timed by `Delivery`'s own clock, so a
    caller on another clock cannot shorten or stretch it)."""

    user_id: str
    message_id: str
    xml: bytes
    enqueued_at: float


@dataclass(frozen=True)
class FailedMessage:
    """A message that was not delivered: rejected by the receiver, or its retry window ran out.

    failed_at: `Delivery`'s clock; attempts: POSTs tried; last_error: e.g. "HTTP 503",
    "connection refused", "timeout after 3 s"."""

    message: Message
    failed_at: float
    attempts: int
    last_error: str


def _check_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID_LEN or _ID_BAD.search(value):
        raise ValueError(f"{kind} must be a non-empty string of at most {_MAX_ID_LEN} characters without "
                         f"control characters, got {value!r:.80}")
    return value


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


class Receivers:
    """Each DCC User's receive URL, validated.

    allowed_hosts: the non-loopback host names (or IP addresses) a receive URL may name; such a URL
    must be https. Loopback hosts (127.0.0.0/8, ::1, localhost) may be http or https. Thread-safe
    for single reads and writes."""

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        if isinstance(allowed_hosts, str):
            raise TypeError("allowed_hosts is a collection of host names, not one string")
        hosts = set()
        for h in allowed_hosts:
            if not isinstance(h, str) or not _URL_CHARS.fullmatch(h) or not _valid_host(h.strip("[]")):
                raise ValueError(f"allowed host {h!r:.80} is not a host name or IP address")
            hosts.add(h.strip("[]").lower())
        self._allowed = frozenset(hosts)
        self._urls: dict[str, str] = {}

    def validate(self, url: str) -> str:
        """The URL if it is an acceptable receive URL; ValueError (saying why) if not."""
        if not isinstance(url, str):
            raise ValueError(f"a receive URL is a string, got {type(url).__name__}")
        if len(url) > _MAX_URL_LEN:
            raise ValueError(f"receive URL longer than {_MAX_URL_LEN} characters")
        if not _URL_CHARS.fullmatch(url):
            raise ValueError(f"receive URL {url!r:.120} has spaces, control or non-ASCII characters")
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in ("http", "https"):
            raise ValueError(f"receive URL {url!r:.120}: the scheme must be http or https")
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if "@" in authority:
            raise ValueError(f"receive URL {url!r:.120}: credentials in the URL are not accepted")
        if "#" in rest:
            raise ValueError(f"receive URL {url!r:.120}: a fragment has no meaning in a receive URL")
        try:
            parsed = httpx.URL(url)
            port = parsed.port
        except (httpx.InvalidURL, ValueError) as exc:
            raise ValueError(f"receive URL {url!r:.120} does not parse: {exc}") from None
        host = parsed.host
        if not host or not _valid_host(host):
            raise ValueError(f"receive URL {url!r:.120}: {host!r} is not a host name or IP address")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"receive URL {url!r:.120}: port {port} out of range")
        if _is_loopback(host):
            return url
        if scheme != "https":
            raise ValueError(f"receive URL {url!r:.120}: plain http only to a loopback host; use https")
        if host.lower() not in self._allowed:
            raise ValueError(f"receive URL {url!r:.120}: host {host!r} is not in the allowed hosts")
        return url

    def set(self, user_id: str, url: str) -> None:
        """Set (or replace) a User's receive URL. ValueError if the id or the URL is not acceptable."""
        self._urls[_check_id("user_id", user_id)] = self.validate(url)

    def get(self, user_id: str) -> str | None:
        """The User's receive URL, or None if it has none."""
        return self._urls.get(user_id)

    def remove(self, user_id: str) -> None:
        """Forget a User's receive URL (its queued messages then retry until it has one again)."""
        self._urls.pop(user_id, None)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._urls


@dataclass
class _Entry:
    message: Message
    deadline: float  # Delivery's clock: retry until then (enqueue or redelivery time + retry_for_s)
    attempts: int = 0
    last_error: str = ""


_OK, _REJECT, _RETRY = "ok", "reject", "retry"


def _connect_error(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed: {cause.verify_message}"
        cause = cause.__cause__ or cause.__context__
    return f"connection failed: {exc or type(exc).__name__}"


@dataclass
class _Counts:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    worker_crashes: int = 0


class Delivery:
    """Delivers each User's messages in order to its receive URL, retrying, with a failed queue.

    retry_for_s: how long a message is retried, from enqueue (or redelivery), in `clock` seconds;
    keep_failed_s: how long a failed message is held for `redeliver`; backoff_s: waits between
    attempts, its last value repeating (real `asyncio.sleep` seconds, cut short at the window's end);
    timeout_s: one attempt's whole time (connect, send, answer); verify: TLS verification as httpx
    takes it (a str is a CA bundle path); clock: the time source for windows, `failed_at` and
    pruning; max_queued_per_user: the queue bound that makes `enqueue` raise QueueFull.

    Raises ValueError on nonsensical settings."""

    def __init__(self, receivers: Receivers, *, retry_for_s: float = 300.0, keep_failed_s: float = 2 * 86_400.0,
                 backoff_s: Sequence[float] = (0.5, 1, 2, 5, 10, 30), timeout_s: float = 3.0,
                 verify: ssl.SSLContext | str | bool = True, clock: Callable[[], float] = time.monotonic,
                 max_queued_per_user: int = 100_000) -> None:
        if not isinstance(receivers, Receivers):
            raise TypeError("receivers must be a Receivers")
        backoff = tuple(float(b) for b in backoff_s)
        if not backoff or any(not b >= 0 for b in backoff):  # `not >=` also refuses NaN
            raise ValueError("backoff_s must be a non-empty sequence of non-negative seconds")
        for name, value in (("retry_for_s", retry_for_s), ("keep_failed_s", keep_failed_s), ("timeout_s", timeout_s)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if isinstance(max_queued_per_user, bool) or not isinstance(max_queued_per_user, int) or max_queued_per_user < 1:
            raise ValueError(f"max_queued_per_user must be a positive integer, got {max_queued_per_user!r}")
        if isinstance(verify, str):
            # httpx 0.28 deprecates a CA path for `verify`; build the context it asks for instead.
            verify = ssl.create_default_context(cafile=verify)
        self._receivers = receivers
        self._retry_for_s = float(retry_for_s)
        self._keep_failed_s = float(keep_failed_s)
        self._backoff = backoff
        self._timeout_s = float(timeout_s)
        self._verify = verify
        self._clock = clock
        self._max_queued = max_queued_per_user

        # Queues and the failed store are touched from the loop and (enqueue) from other threads.
        self._lock = threading.Lock()
        self._queues: dict[str, deque[_Entry]] = {}
        self._failed: dict[str, deque[FailedMessage]] = {}
        self._counts = _Counts()
        self._errors: deque[str] = deque(maxlen=_MAX_ERRORS_KEPT)

        # Loop-thread only.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._running = False

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP client and start a worker for every User with queued messages. Idempotent."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._client = httpx.AsyncClient(
            http1=True, http2=False, verify=self._verify, trust_env=False, follow_redirects=False,
            timeout=httpx.Timeout(self._timeout_s),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=30.0))
        self._running = True
        with self._lock:
            users = [u for u, q in self._queues.items() if q]
        for user_id in users:
            self._ensure_worker(user_id)

    async def stop(self) -> None:
        """Stop the workers (an attempt in flight is abandoned; its message stays at the head of its
        queue) and close the HTTP client. Queued and failed messages are kept for a later `start`."""
        self._running = False
        tasks = list(self._workers.values())
        self._workers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the public operations -------------------------------------------------------------------

    def enqueue(self, message: Message) -> None:
        """Queue a message at the end of its User's queue. Never blocks; callable from any thread.

        ValueError: not a well-formed Message, or the User has no receive URL. QueueFull: the User
        already has `max_queued_per_user` messages queued (the message is not added)."""
        if not isinstance(message, Message):
            raise ValueError(f"enqueue takes a Message, got {type(message).__name__}")
        _check_id("user_id", message.user_id)
        _check_id("message_id", message.message_id)
        if not isinstance(message.xml, bytes) or not message.xml:
            raise ValueError(f"message {message.message_id!r}: xml must be non-empty bytes")
        if message.user_id not in self._receivers:
            raise ValueError(f"user {message.user_id!r} has no receive URL")
        with self._lock:
            queue = self._queues.setdefault(message.user_id, deque())
            if len(queue) >= self._max_queued:
                raise QueueFull(f"user {message.user_id!r} already has {len(queue)} messages queued "
                                f"(max_queued_per_user={self._max_queued}); message {message.message_id!r} not queued")
            queue.append(_Entry(message, deadline=self._clock() + self._retry_for_s))
        self._kick(message.user_id)

    def failed(self, user_id: str) -> list[FailedMessage]:
        """The User's failed messages, oldest first, those held `keep_failed_s` or longer pruned."""
        with self._lock:
            self._prune(user_id)
            return list(self._failed.get(user_id, ()))

    async def redeliver(self, user_id: str, message_ids: Iterable[str] | None = None) -> int:
        """Move the User's failed messages (all, or those named) back to the end of its queue, in
        their original order, each with a fresh retry window. Ids not held (never failed, or pruned)
        are skipped. Returns how many were moved. QueueFull (nothing moved) if they do not fit."""
        if isinstance(message_ids, str | bytes):
            raise TypeError("message_ids is a collection of ids, not one string")
        wanted = None if message_ids is None else set(message_ids)
        with self._lock:
            self._prune(user_id)
            held = self._failed.get(user_id, deque())
            chosen = [f for f in held if wanted is None or f.message.message_id in wanted]
            if not chosen:
                return 0
            queue = self._queues.setdefault(user_id, deque())
            if len(queue) + len(chosen) > self._max_queued:
                raise QueueFull(f"user {user_id!r}: {len(chosen)} messages to redeliver do not fit beside the "
                                f"{len(queue)} queued (max_queued_per_user={self._max_queued}); none moved")
            ids = {id(f) for f in chosen}
            self._failed[user_id] = deque(f for f in held if id(f) not in ids)
            deadline = self._clock() + self._retry_for_s
            queue.extend(_Entry(f.message, deadline=deadline) for f in chosen)
        self._kick(user_id)
        return len(chosen)

    def stats(self) -> dict[str, int]:
        """Counters: delivered, retried (attempts after a message's first), failed (moved to the failed
        queue, ever), queued (now), failed_held (now, after pruning), workers (running now),
        worker_crashes (ever)."""
        with self._lock:
            for user_id in list(self._failed):
                self._prune(user_id)
            return {
                "delivered": self._counts.delivered,
                "retried": self._counts.retried,
                "failed": self._counts.failed,
                "queued": sum(len(q) for q in self._queues.values()),
                "failed_held": sum(len(f) for f in self._failed.values()),
                "workers": sum(1 for t in self._workers.values() if not t.done()),
                "worker_crashes": self._counts.worker_crashes,
            }

    @property
    def errors(self) -> list[str]:
        """Worker crashes, oldest first (the last 100): the user and the formatted traceback."""
        return list(self._errors)

    def _prune(self, user_id: str) -> None:
        # Under self._lock. Failed messages are held while younger than keep_failed_s.
        held = self._failed.get(user_id)
        if held is None:
            return
        cutoff = self._clock() - self._keep_failed_s
        while held and held[0].failed_at <= cutoff:
            held.popleft()
        if not held:
            del self._failed[user_id]

    # -- workers -------------------------------------------------------------------------------

    def _kick(self, user_id: str) -> None:
        loop = self._loop
        if loop is None or not self._running:
            return  # queued; start() launches the worker
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._ensure_worker(user_id)
            return
        # A closed loop refuses the call: the message stays queued for the next start().
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._ensure_worker, user_id)

    def _ensure_worker(self, user_id: str) -> None:
        if not self._running or user_id in self._workers:
            return
        task = asyncio.get_running_loop().create_task(self._worker(user_id), name=f"duis-delivery:{user_id}")
        self._workers[user_id] = task
        task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        user_id = task.get_name().removeprefix("duis-delivery:")
        if self._workers.get(user_id) is task:
            del self._workers[user_id]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        text = "".join(traceback.format_exception(exc))
        log.error("DUIS delivery worker for user %r crashed; restarting it\n%s", user_id, text)
        with self._lock:
            self._counts.worker_crashes += 1
            self._errors.append(f"user {user_id!r}: {text}")
        if self._running and self._loop is not None:
            # After a pause, so a worker that crashes at once every time cannot spin the loop; the
            # head message's window still runs, so it ends in the failed queue, not in a crash loop.
            self._loop.call_later(self._backoff[0], self._ensure_worker, user_id)

    async def _worker(self, user_id: str) -> None:
        while True:
            with self._lock:
                queue = self._queues.get(user_id)
                if not queue:
                    # No await between this check and the task ending, so an enqueue on the loop
                    # either sees this worker registered or starts a new one after it.
                    if self._workers.get(user_id) is asyncio.current_task():
                        del self._workers[user_id]
                    return
                entry = queue[0]
            outcome = await self._deliver(entry)
            with self._lock:
                # Only this worker removes a head; enqueue and redeliver only append.
                queue.popleft()
                if outcome == _OK:
                    self._counts.delivered += 1
                else:
                    self._counts.failed += 1
                    self._failed.setdefault(user_id, deque()).append(
                        FailedMessage(entry.message, failed_at=self._clock(), attempts=entry.attempts,
                                      last_error=entry.last_error))
            if outcome != _OK:
                log.warning("DUIS message %r for user %r failed after %d attempts: %s", entry.message.message_id,
                            user_id, entry.attempts, entry.last_error)

    async def _deliver(self, entry: _Entry) -> str:
        """Attempt the entry until delivered (_OK), rejected or out of time (_REJECT)."""
        while True:
            if entry.attempts and self._clock() >= entry.deadline:
                return _REJECT
            entry.attempts += 1
            if entry.attempts > 1:
                with self._lock:
                    self._counts.retried += 1
            try:
                kind, detail = await self._attempt(entry.message)
            except Exception as exc:
                # A bug, not the receiver's doing: the worker crashes (reported, restarted) and the
                # head keeps its window, so a crash that repeats ends in the failed queue, saying so.
                entry.last_error = f"internal error: {type(exc).__name__}: {exc}"
                raise
            if kind == _OK:
                return _OK
            entry.last_error = detail
            if kind == _REJECT:
                return _REJECT
            remaining = entry.deadline - self._clock()
            if remaining <= 0:
                return _REJECT
            await asyncio.sleep(min(self._backoff[min(entry.attempts, len(self._backoff)) - 1], remaining))

    async def _attempt(self, message: Message) -> tuple[str, str]:
        """One POST: (_OK, ""), (_REJECT, why) or (_RETRY, why)."""
        url = self._receivers.get(message.user_id)
        if url is None:
            return _RETRY, "no receive URL"
        client = self._client
        if client is None:
            raise RuntimeError("Delivery is not started")
        try:
            async with asyncio.timeout(self._timeout_s), client.stream(
                    "POST", url, content=message.xml, headers={"Content-Type": "application/xml"}) as response:
                status = response.status_code
                read = 0
                async for chunk in response.aiter_raw():
                    # Read a short answer so the connection can be reused; a long one is cut off
                    # (closing the connection) rather than held in memory.
                    read += len(chunk)
                    if read > _MAX_RESPONSE_READ:
                        break
        except TimeoutError:
            return _RETRY, f"timeout after {self._timeout_s:g} s"
        except httpx.TimeoutException:
            return _RETRY, f"timeout after {self._timeout_s:g} s"
        except httpx.ConnectError as exc:
            return _RETRY, _connect_error(exc)
        except httpx.TransportError as exc:
            return _RETRY, f"{type(exc).__name__}: {exc or 'connection lost'}"
        if 200 <= status < 300:
            return _OK, ""
        if status in (408, 429) or status >= 500:
            return _RETRY, f"HTTP {status}"
        return _REJECT, f"HTTP {status}"
