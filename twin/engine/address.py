"""Ray cluster addresses: parsed with an explicit grammar and checked before Ray is asked to join
one (no Ray import here, so the CLI can name the error without loading Ray)."""

from __future__ import annotations

import re
import socket

CONNECT_TIMEOUT_S = 5.0
# [scheme://]host:port, ASCII only: a host name or IPv4 address, or an IPv6 address in brackets;
# a port of 1 to 5 ASCII digits. (Python's int() and urlsplit take any Unicode digit; an address
# written with, say, Arabic-Indic digits is refused here rather than read as another port.)
_ADDRESS = re.compile(r"(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?"
                      r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]{0,252}[a-z0-9])?)"
                      r"(?::(?P<port>[0-9]{1,5}))?/?", re.ASCII | re.IGNORECASE)
DEFAULT_PORTS = {"http": 80, "https": 443}  # a job server's URL may leave its port out


class RayAddressError(ConnectionError):
    """A Ray cluster address that is malformed or cannot be reached (the CLI says so, exit 2)."""


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of "HOST:PORT", "[IPV6]:PORT", "SCHEME://HOST:PORT" or "http(s)://HOST";
    RayAddressError otherwise."""
    m = _ADDRESS.fullmatch(address.strip()) if isinstance(address, str) else None
    port = 0
    if m is not None:
        port = int(m["port"]) if m["port"] else DEFAULT_PORTS.get((m["scheme"] or "").lower(), 0)
    if m is None or not 1 <= port <= 65535:
        raise RayAddressError(f"--address: {address!r} is not a Ray cluster address (HOST:PORT, ray://HOST:PORT, "
                              "http://HOST:PORT for a job server, or auto)")
    return m["host"].strip("[]"), port


def check_reachable(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise RayAddressError unless `address` accepts a TCP connection within `timeout_s`. "auto"
    is left to Ray (it fails at once if it finds no cluster)."""
    if address == "auto":
        return
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        reason = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e)).lower()
        raise RayAddressError(f"--address: cannot reach a Ray cluster at {address} ({reason} within "
                              f"{timeout_s:g} s)") from None
