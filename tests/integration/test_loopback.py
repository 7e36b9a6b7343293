"""Secure defaults: the embedded Ray, the API and the dashboard listen on loopback only."""

from __future__ import annotations

import ipaddress

import psutil
import pytest
import ray

pytestmark = pytest.mark.usefixtures("ray_session")


def loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
    return (mapped or addr).is_loopback


def test_the_embedded_ray_listens_on_loopback_only():
    assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
    me = psutil.Process()
    ours = {me.pid} | {p.pid for p in me.children(recursive=True)}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in ours]
    assert listening, "expected Ray's servers among this process tree's sockets"
    exposed = [(psutil.Process(c.pid).name(), c.laddr) for c in listening if not loopback(c.laddr.ip)]
    assert exposed == [], exposed
