"""The DUIS endpoints over HTTP(S), FastAPI on uvicorn, on the API server's event loop (so a DUIS
request reaches the same DccCore as a gRPC one without crossing a thread):

- `POST /api/v1/serviceS` Send Command (command variants 1 and 5), `POST /api/v1/serviceD`
  Non-Device (8), `POST /api/v1/serviceT` Transform (4): a signed DUIS request as
  `application/xml`; the answer is a signed DUIS Response (see twin.services.duis_gateway.gateway
  for the response codes and HTTP statuses).
- `GET /healthz`: serving, the deliveries' counts and recent failures (no token: nothing private).
- `GET /twin/v1/failed-deliveries` and `POST /twin/v1/redeliver`: a DCC User's failed-delivery
  queue and its re-delivery, with the User's bearer token (the gRPC API's user store), since DUIS
  itself has no message for them [U].

Plain HTTP only on loopback; beyond it TLS is required, as for the gRPC API."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from twin.services.dcc.core import DccCore
from twin.services.duis_gateway import wire
from twin.services.duis_gateway.delivery import Delivery, Receivers
from twin.services.duis_gateway.gateway import DuisGateway, Followers
from twin.services.duis_gateway.pki import Pki
from twin.services.identity import Unauthenticated, UserStore
from twin.util.netaddr import is_loopback

log = logging.getLogger(__name__)
XML = "application/xml"
SERVICES = {"serviceS": "S", "serviceD": "D", "serviceT": "T"}


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it passes `limit` bytes (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(gateway: DuisGateway, delivery: Delivery | None, users: UserStore,
               followers: Followers | None = None) -> FastAPI:
    app = FastAPI(title="twin DUIS gateway", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        """Serving, with the deliveries' counts and the last failures of delivery and of the
        tasks following the DCC's logs (a failing loop is reported here, never hidden)."""
        errors = [*(followers.errors if followers else []), *(e.splitlines()[0] for e in
                                                              (delivery.errors if delivery else [])[-10:])]
        return JSONResponse({"serving": True, "in_flight": gateway.in_flight,
                             "delivery": delivery.stats() if delivery else {}, "recent_errors": errors})

    async def serve(service: str, request: Request) -> Response:
        body = await read_body(request, wire.MAX_BODY_BYTES)
        answer = gateway.too_large() if body is None else await gateway.handle(service, body)
        return Response(answer.xml, status_code=answer.status, media_type=XML)

    for path, service in SERVICES.items():
        async def endpoint(request: Request, _service: str = service) -> Response:
            return await serve(_service, request)

        app.add_api_route(f"/api/v1/{path}", endpoint, methods=["POST"], name=path)

    def user_of(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        return users.authenticate(token).user_id

    @app.get("/twin/v1/failed-deliveries")
    async def failed(request: Request) -> Response:
        try:
            user = user_of(request)
        except Unauthenticated as e:
            return JSONResponse({"error": str(e)}, status_code=401)
        held = delivery.failed(user) if delivery is not None else []
        return JSONResponse({"failed": [{"message_id": f.message.message_id, "attempts": f.attempts,
                                         "last_error": f.last_error} for f in held]})

    @app.post("/twin/v1/redeliver")
    async def redeliver(request: Request) -> Response:
        try:
            user = user_of(request)
        except Unauthenticated as e:
            return JSONResponse({"error": str(e)}, status_code=401)
        count = await delivery.redeliver(user) if delivery is not None else 0
        return JSONResponse({"redelivered": count})

    return app


class DuisServer:
    """The gateway's HTTP server on `loop` (the API server's). `tls` is (certificate, key) PEM
    paths; required beyond loopback. `port` 0 picks one; `port` is the bound one once started."""

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 8079,
                 tls: tuple[Path, Path] | None = None):
        if tls is None and not is_loopback(host):
            raise ValueError(f"refusing to serve DUIS in plain HTTP on {host}: beyond loopback it needs TLS "
                             "(twin certs makes development certificates)")
        import uvicorn

        kwargs: dict[str, Any] = {}
        if tls is not None:
            kwargs = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                     lifespan="off", **kwargs)
        self.server = uvicorn.Server(self.config)
        self.host = host
        self.port = port
        self.tls = tls
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve (returns once listening). OSError if the address is taken."""
        self.server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]  # the API's loop
        self._task = asyncio.create_task(self.server.serve(), name="duis-http")
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise OSError(f"the DUIS gateway could not serve on {self.host}:{self.port}")
            await asyncio.sleep(0.01)
        servers = getattr(self.server, "servers", [])
        for s in servers:
            for sock in s.sockets:
                self.port = sock.getsockname()[1]
                return

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class DuisSettings:
    """How `twin up` serves DUIS: the PKI manifest (`twin duis-pki` writes it; receive URLs are set
    there per User), host and port (8079, the port DCC's own test system uses), TLS (certificate,
    key) beyond loopback, hosts beyond loopback that receive URLs may name (HTTPS only), and how
    long a message is retried before it goes to the failed-delivery queue (DUIS: 300 s)."""

    pki: Path
    host: str = "127.0.0.1"
    port: int = 8079
    tls: tuple[Path, Path] | None = None
    receiver_hosts: frozenset[str] = frozenset()
    retry_for_s: float = 300.0


class DuisFrontDoor:
    """The running gateway: its HTTP server, delivery and followers (see `start_duis`)."""

    def __init__(self, gateway: DuisGateway, server: DuisServer, delivery: Delivery, followers: Followers):
        self.gateway, self.server, self.delivery, self.followers = gateway, server, delivery, followers

    async def stop(self) -> None:
        await self.server.stop()
        await self.followers.stop()
        await self.delivery.stop()


async def start_duis(settings: DuisSettings, core: DccCore, users: UserStore) -> DuisFrontDoor:
    """Build and start the DUIS front door on the running loop over `core` (the gRPC API's DCC).
    ValueError for a PKI manifest or receive URL that cannot be used; OSError if the port is taken."""
    pki = Pki.load(settings.pki)
    gateway = DuisGateway(core, pki, users.users)
    receivers = Receivers(allowed_hosts=set(settings.receiver_hosts))
    for party in pki.parties():
        if party.receive_url is not None:
            receivers.set(party.user_id, party.receive_url)
    delivery = Delivery(receivers, retry_for_s=settings.retry_for_s)
    await delivery.start()
    followers = Followers(gateway, delivery)
    followers.start()
    server = DuisServer(create_app(gateway, delivery, users, followers), host=settings.host, port=settings.port,
                        tls=settings.tls)
    try:
        await server.start()
    except BaseException:
        await followers.stop()
        await delivery.stop()
        raise
    return DuisFrontDoor(gateway, server, delivery, followers)
