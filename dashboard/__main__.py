"""python -m dashboard: serve the dashboard against a running twin API (twin up starts it for you)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from twin.util.child import on_parent_exit, write_ready

if TYPE_CHECKING:
    from dashboard.server import DashboardServer


def operator_token(home: Path) -> str:
    """$TWIN_TOKEN, else the development operator's token that `twin up` wrote in HOME/tokens.json."""
    if os.environ.get("TWIN_TOKEN"):
        return os.environ["TWIN_TOKEN"]
    path = home / "tokens.json"
    try:
        tokens = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"dashboard: no operator token: set TWIN_TOKEN or run twin up once to create {path}") from None
    if "operator" not in tokens:
        raise SystemExit(f"dashboard: {path} has no 'operator' user; set TWIN_TOKEN")
    return tokens["operator"]


def _report_ready_when_serving(server: DashboardServer, path: Path) -> None:
    """Write the readiness file once uvicorn has bound its socket (from a watcher thread: run()
    keeps the main thread)."""

    def watch() -> None:
        while not server.server.started:
            if server.server.should_exit:
                return
            time.sleep(0.05)
        port = server.bound_port()
        if port is None:
            return  # stopped as it started (Ctrl-C during start-up): never ready, nothing to report
        write_ready(path, url=server.url, port=port)

    threading.Thread(target=watch, name="dashboard-ready", daemon=True).start()


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m dashboard`."""
    p = argparse.ArgumentParser(prog="python -m dashboard", description="twin live operations dashboard")
    p.add_argument("--api", default="127.0.0.1:50051", help="the twin gRPC API (default 127.0.0.1:50051)")
    p.add_argument("--api-ca", help="CA certificate of the API's TLS (when it is not on loopback)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1; beyond it, TLS and sign-in)")
    p.add_argument("--port", type=int, default=8050, help="listen port (default 8050)")
    p.add_argument("--tls-cert", help="TLS certificate (required beyond localhost)")
    p.add_argument("--tls-key", help="TLS private key")
    p.add_argument("--home", default=".twin", help="where twin keeps development tokens (default .twin)")
    p.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ready-file", help="once serving, write there (JSON) the URL and port it serves on (how twin up "
                                        "learns that it is ready, and where with --port 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    from dashboard.server import DashboardServer

    tls = (Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert and args.tls_key else None
    try:
        server = DashboardServer(api_address=args.api, token=operator_token(Path(args.home)), host=args.host,
                                 port=args.port, tls=tls, ca_cert=Path(args.api_ca) if args.api_ca else None)
    except ValueError as e:
        print(f"dashboard: {e}", file=sys.stderr)
        return 2
    if args.exit_with_parent:
        on_parent_exit(lambda: setattr(server.server, "should_exit", True))
    if args.ready_file:
        # Started by `twin up`, which learns the address from the file and prints it.
        _report_ready_when_serving(server, Path(args.ready_file))
    else:
        print(f"dashboard on {server.url}", file=sys.stderr, flush=True)
    # Ctrl-C on `twin up` reaches its whole process group, this process too: a quiet stop.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
