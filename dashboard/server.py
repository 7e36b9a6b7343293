"""Serving the dashboard: FastAPI with health and metrics beside the Dash app, operator sign-in when
listening beyond localhost (TLS required there too), and the uvicorn server.

    python -m dashboard --api 127.0.0.1:50051          # token from $TWIN_TOKEN or .twin/tokens.json
"""

from __future__ import annotations

import hashlib
import html as html_lib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from a2wsgi import WSGIMiddleware
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from dashboard.app import create_dash
from dashboard.feed import FleetFeed
from twin.client import TwinClient
from twin.generated.fleet.v1 import fleet_pb2
from twin.util.netaddr import is_loopback

log = logging.getLogger("twin.dashboard")
COOKIE = "twin_session"
SESSION_TTL_S = 12 * 3600
OPEN_PATHS = ("/healthz", "/login")


class Sessions:
    """Browser sign-in: an operator pastes their API token once; the cookie names a server-side
    session, so the token itself never sits in the browser. A token is checked by asking the API
    (an operator-only call), so the dashboard keeps no user list of its own."""

    def __init__(self, verify: Callable[[str], bool]):
        self.verify = verify
        self._sessions: dict[str, tuple[str, float]] = {}
        self._verified: dict[str, float] = {}  # sha256(token) -> when the API last accepted it
        self._lock = threading.Lock()

    def check_token(self, token: str) -> bool:
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            if time.monotonic() - self._verified.get(key, -1e9) < 60:
                return True
        ok = bool(token) and self.verify(token)
        if ok:
            with self._lock:
                self._verified[key] = time.monotonic()
        return ok

    def login(self, token: str) -> str | None:
        if not self.check_token(token):
            return None
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[sid] = (token, time.monotonic() + SESSION_TTL_S)
        return sid

    def token(self, sid: str | None) -> str | None:
        if not sid:
            return None
        with self._lock:
            item = self._sessions.get(sid)
            if item is None or item[1] < time.monotonic():
                self._sessions.pop(sid, None)
                return None
            return item[0]

    def logout(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


class Actions:
    """Operator actions go to the API with the signed-in operator's own token (on localhost, where
    there is no sign-in, the dashboard's). One channel per token, reused."""

    def __init__(self, address: str, token: str, sessions: Sessions | None, ca_cert: Path | None = None):
        self.address, self.token, self.sessions, self.ca_cert = address, token, sessions, ca_cert
        self._clients: dict[str, TwinClient] = {}
        self._lock = threading.Lock()

    def _request_token(self) -> str:
        import flask

        if self.sessions is None or not flask.has_request_context():
            return self.token
        auth = flask.request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        return self.sessions.token(flask.request.cookies.get(COOKIE)) or self.token

    def client(self) -> TwinClient:
        token = self._request_token()
        with self._lock:
            c = self._clients.get(token)
            if c is None:
                c = self._clients[token] = TwinClient(self.address, token=token, ca_cert=self.ca_cert, timeout_s=30.0)
            return c

    def close(self) -> None:
        for c in self._clients.values():
            c.channel.close()


class Metrics:
    """Prometheus figures about the dashboard itself: the feed, and the size of live updates."""

    def __init__(self, feed: FleetFeed):
        self.registry = CollectorRegistry()
        r = self.registry
        self.update_bytes = Histogram("twin_dashboard_update_bytes", "Size of live-update responses sent to browsers",
                                      buckets=(256, 1024, 4096, 16384, 65536, 102400, 262144), registry=r)
        self.requests = Counter("twin_dashboard_requests_total", "HTTP requests by kind", ["kind"], registry=r)
        Gauge("twin_dashboard_last_tick", "Newest tick received from the fleet", registry=r).set_function(feed.last_tick)
        Gauge("twin_dashboard_feed_connected", "1 while the WatchFleet stream is up", registry=r).set_function(
            lambda: 1.0 if feed.status.connected else 0.0)
        Gauge("twin_dashboard_ticks_received", "Tick summaries received", registry=r).set_function(
            lambda: feed.status.ticks_received)
        Gauge("twin_dashboard_feed_reconnects", "WatchFleet reconnects", registry=r).set_function(
            lambda: feed.status.reconnects)
        Gauge("twin_dashboard_ticks_missed", "Ticks the API no longer held when the feed resumed",
              registry=r).set_function(lambda: feed.status.ticks_missed)
        Gauge("twin_dashboard_tick_age_seconds", "Seconds since the newest tick arrived", registry=r).set_function(
            lambda: time.time() - feed.status.last_tick_wall if feed.status.last_tick_wall else -1.0)


def create_app(feed: FleetFeed, *, api_address: str, token: str, require_login: bool,
               ca_cert: Path | None = None) -> FastAPI:
    def verify(candidate: str) -> bool:
        c = TwinClient(api_address, token=candidate, ca_cert=ca_cert, timeout_s=5.0)
        try:
            c.fleet.GetClock(fleet_pb2.GetClockRequest(), **c._kw())  # operators only
            return True
        except grpc.RpcError:
            return False
        finally:
            c.channel.close()

    sessions = Sessions(verify) if require_login else None
    actions = Actions(api_address, token, sessions, ca_cert)
    dash_app = create_dash(feed, actions=actions)
    metrics = Metrics(feed)
    api = FastAPI(title="twin dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    api.state.feed, api.state.sessions, api.state.actions = feed, sessions, actions

    @api.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        kind = "update" if path == "/_dash-update-component" else ("page" if "." not in path.rsplit("/", 1)[-1]
                                                                  else "asset")
        metrics.requests.labels(kind).inc()
        if sessions is not None and not path.startswith(OPEN_PATHS):
            auth = request.headers.get("authorization", "")
            sid_ok = sessions.token(request.cookies.get(COOKIE)) is not None
            bearer_ok = auth.startswith("Bearer ") and sessions.check_token(auth[7:].strip())
            if not (sid_ok or bearer_ok):
                if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                    return RedirectResponse("/login", status_code=303)
                return JSONResponse({"error": "sign in with an operator token"}, status_code=401)
        response = await call_next(request)
        if kind == "update":
            size = response.headers.get("content-length")
            if size is not None:
                metrics.update_bytes.observe(int(size))
        # The dashboard is not to be framed by other sites, and sends no referrer anywhere.
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @api.get("/healthz")
    def healthz() -> JSONResponse:
        st = feed.status
        age = time.time() - st.last_tick_wall if st.last_tick_wall else None
        clock = feed.clock()
        # Fed, by live threads, from a clock that has not failed: otherwise the page shows a
        # stopped run, and a load balancer should know.
        ok = st.connected and feed.threads_alive() and clock.get("state") != "failed"
        body: dict[str, Any] = {"status": "ok" if ok else "degraded", "api": api_address,
                                "feed_connected": st.connected, "feed_threads_alive": feed.threads_alive(),
                                "clock_state": clock.get("state", ""), "last_tick": feed.last_tick(),
                                "tick_age_s": None if age is None else round(age, 3),
                                "ticks_received": st.ticks_received, "reconnects": st.reconnects,
                                "thread_failures": st.thread_failures, "thread_error": st.thread_error,
                                "clock_error": clock.get("error", ""),
                                "last_error": st.last_error}
        if sessions is not None:
            # Open to anyone who can reach it (for load balancers), so beyond localhost it says
            # only whether the dashboard is fed, not where the API is or what went wrong.
            body = {k: body[k] for k in ("status", "feed_connected", "feed_threads_alive", "clock_state", "last_tick",
                                         "tick_age_s")}
        return JSONResponse(body, status_code=200 if ok else 503)

    @api.get("/metrics")
    def prom() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/login", response_class=HTMLResponse)
    def login_page(error: str = "") -> HTMLResponse:
        return HTMLResponse(LOGIN_HTML.format(error=html_lib.escape(error)))

    @api.post("/login")
    def login(request: Request, token: str = Form(...)) -> Response:
        if sessions is None:
            return RedirectResponse("/", status_code=303)
        sid = sessions.login(token.strip())
        if sid is None:
            return HTMLResponse(LOGIN_HTML.format(error="That token is not an operator's."), status_code=401)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, sid, httponly=True, secure=request.url.scheme == "https", samesite="strict",
                        max_age=SESSION_TTL_S)
        return resp

    @api.get("/logout")
    def logout(request: Request) -> Response:
        if sessions is not None:
            sessions.logout(request.cookies.get(COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    # a2wsgi types the ASGI interface with its own TypedDicts; it is the same protocol Starlette mounts.
    api.mount("/", WSGIMiddleware(dash_app.server))  # type: ignore[arg-type]
    return api


LOGIN_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>twin · sign in</title>
<style>body{{font-family:system-ui,sans-serif;background:#f4f6f8;display:flex;justify-content:center;padding-top:10vh}}
form{{background:#fff;padding:2em;border-radius:8px;box-shadow:0 1px 4px #0002;width:28em}}
input{{width:100%;padding:.5em;margin:.5em 0 1em;font-family:monospace}}.error{{color:#b00020}}</style></head>
<body><form method="post" action="/login"><h2>twin dashboard</h2>
<p>Sign in with an operator's API token (see <code>twin users</code>).</p><p class="error">{error}</p>
<label for="token">Operator token</label><input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Sign in</button></form></body></html>"""


class DashboardServer:
    """The dashboard on uvicorn in a background thread (or the foreground with run())."""

    def __init__(self, *, api_address: str, token: str, host: str = "127.0.0.1", port: int = 8050,
                 tls: tuple[Path, Path] | None = None, ca_cert: Path | None = None):
        if not is_loopback(host) and tls is None:
            raise ValueError(f"the dashboard listens beyond localhost ({host}) only with TLS: give --tls-cert and "
                             "--tls-key (to python -m dashboard or twin up; twin certs makes development ones)")
        import uvicorn

        self.feed = FleetFeed(api_address, token=token, ca_cert=ca_cert).start()
        self.app = create_app(self.feed, api_address=api_address, token=token, require_login=not is_loopback(host),
                              ca_cert=ca_cert)
        kw: dict[str, Any] = {}
        if tls is not None:
            kw = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
        self.config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", access_log=False,
                                     lifespan="off", **kw)
        self.server = uvicorn.Server(self.config)
        self.scheme = "https" if tls else "http"
        self.host, self.port = host, port
        self._thread: threading.Thread | None = None

    def bound_port(self) -> int | None:
        """The port uvicorn listens on, once started; None before, or once its sockets closed
        (stopped, say by Ctrl-C as it started)."""
        if not self.server.started:
            return None
        sockets = [sock for srv in self.server.servers for sock in srv.sockets]
        return sockets[0].getsockname()[1] if sockets else None

    @property
    def url(self) -> str:
        port = self.bound_port() or self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}"

    def start(self, timeout: float = 30.0) -> DashboardServer:
        self._thread = threading.Thread(target=self.server.run, name="dashboard-http", daemon=True)
        self._thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > end or not self._thread.is_alive():
                raise RuntimeError(f"the dashboard did not start on {self.host}:{self.port}")
            time.sleep(0.05)
        return self

    def run(self) -> None:
        try:
            self.server.run()
        finally:
            self.close()

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.close()

    def close(self) -> None:
        self.feed.stop()
        self.app.state.actions.close()
