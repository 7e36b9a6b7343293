"""Addresses: is one this machine's loopback, and the host of a host:port. Shared by the API, the
dashboard and the CLI (no dependencies, so the dashboard can use it without importing the engine)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(address: str) -> str:
    """The host of 'host:port' ('[::1]:50051' gives '::1')."""
    return address.rpartition(":")[0].strip("[]")
