"""AIP-158 pagination, written once for every list RPC: the page a request asks for (where its
token resumes, how many items) and the token that continues it.

Page tokens are opaque and bound to the request that asked for the list: a version byte, the
position to resume at (one or more integers), and an HMAC over both with the request's method,
its fields other than page_size and page_token (filter, parent, ...) and the caller, keyed by a
secret of this server process. A token used with another filter or parent, by another caller,
edited, made by hand or issued by an earlier server process is refused as INVALID_ARGUMENT naming
page_token; the list is then walked again from the start."""

from __future__ import annotations

import base64
import hashlib
import hmac
import operator
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, SupportsIndex, TypeVar

from google.protobuf.message import Message

from twin.services.errors import invalid
from twin.services.identity import IDENTITY

T = TypeVar("T")

_TOKEN_KEY = secrets.token_bytes(32)
_TOKEN_VERSION = 1
_MAC_BYTES = 16
_MAX_TOKEN_CHARS = 200
_PAGING_FIELDS = ("page_size", "page_token")


@dataclass(frozen=True)
class Page:
    """What one list request asks for: `start`, the position its page_token resumes at (a tuple of
    `positions` integers, None on the first page), and `size`, the most items to return (page_size,
    or the method's default if 0, capped at its maximum; AIP-158 lets a page hold fewer)."""

    start: tuple[int, ...] | None
    size: int

    @property
    def offset(self) -> int:
        """The single-integer position to resume at (0 on the first page)."""
        return self.start[0] if self.start else 0


def page_of(request: Any, *, default_size: int, max_size: int, positions: int = 1) -> Page:
    """The page `request` (a list request with page_size and page_token) asks for. Raises ApiError
    INVALID_ARGUMENT naming page_size if it is negative, page_token if the token was not issued
    for this request (see the module docstring)."""
    if request.page_size < 0:
        raise invalid("page_size", f"must not be negative, got {request.page_size}")
    return Page(page_start(request, positions), min(request.page_size or default_size, max_size))


def next_page_token(request: Message, position: SupportsIndex | tuple[int, ...] | None) -> str:
    """The next_page_token of a page of `request`'s list: '' at the end (`position` None), else a
    token resuming at `position` (an integer, numpy's included, or a tuple of them)."""
    if position is None:
        return ""
    return page_token(request, *(position if isinstance(position, tuple) else (operator.index(position),)))


def slice_page(request: Message, items: Sequence[T], page: Page) -> tuple[list[T], str]:
    """One page of a list held whole (a short one: switch-offs, branches), and its next token."""
    start = page.offset
    end = start + page.size
    return list(items[start:end]), next_page_token(request, end if end < len(items) else None)


def _caller() -> str:
    ident = IDENTITY.get(None)
    return ident.user_id if ident is not None else ""


def _token_mac(request: Message, body: bytes) -> bytes:
    scope = type(request)()
    scope.CopyFrom(request)
    for name in _PAGING_FIELDS:
        if name in scope.DESCRIPTOR.fields_by_name:
            scope.ClearField(name)
    mac = hmac.new(_TOKEN_KEY, digestmod=hashlib.sha256)
    for part in (request.DESCRIPTOR.full_name.encode(), _caller().encode(), scope.SerializeToString(deterministic=True),
                 body):
        mac.update(len(part).to_bytes(4, "big"))
        mac.update(part)
    return mac.digest()[:_MAC_BYTES]


def page_token(request: Message, *position: int) -> str:
    """A token continuing `request`'s list at `position` (one or more integers, as the method's
    page_start reads them)."""
    body = struct.pack(f">B{len(position)}q", _TOKEN_VERSION, *position)
    return base64.urlsafe_b64encode(body + _token_mac(request, body)).decode().rstrip("=")


def page_start(request: Message, n: int = 1) -> tuple[int, ...] | None:
    """The position `request.page_token` resumes at (n integers), None if it has no token; raises
    ApiError INVALID_ARGUMENT naming page_token if the token was not issued for this request."""
    token = request.page_token
    if not token:
        return None
    size = 1 + 8 * n
    try:
        if not token.isascii() or len(token) > _MAX_TOKEN_CHARS:
            raise ValueError
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raw = b""
    body, mac = raw[:size], raw[size:]
    if len(raw) != size + _MAC_BYTES or body[0] != _TOKEN_VERSION or not hmac.compare_digest(mac, _token_mac(request, body)):
        raise invalid("page_token", "not a token this server issued for this request: a page token continues only "
                                    "the list that returned it (same method, filter and parent, same caller, same "
                                    "server process); leave it empty to start the list again")
    return struct.unpack(f">{n}q", body[1:])
