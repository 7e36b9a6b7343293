"""Ray cluster addresses: checked before Ray is asked to join one (no Ray import here, so the CLI
can name the error without loading Ray)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 5.0


class RayAddressError(ConnectionError):
    """A Ray cluster address that cannot be reached (the CLI says so and exits with 2)."""


def check_reachable(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise RayAddressError unless `address` ("HOST:PORT" or "SCHEME://HOST:PORT") accepts a TCP
    connection within `timeout_s`. "auto" is left to Ray (it fails at once if it finds nothing)."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise RayAddressError(f"--address: {address!r} is not a Ray cluster address (HOST:PORT, ray://HOST:PORT "
                              "or auto)")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        reason = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e)).lower()
        raise RayAddressError(f"--address: cannot reach a Ray cluster at {address} ({reason} within "
                              f"{timeout_s:g} s)") from None
