"""Signatures on critical Service Requests: canonical bytes, Ed25519 signing, and a checker with replay protection."""

from __future__ import annotations

import heapq
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from twin.services.identity import Identity


class SignatureError(Exception):
    """A critical command's signature is missing, wrong, stale or replayed; `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical_bytes(*, user_id: str, srv: str, target: str, request_id: str, issued_at_ms: int,
                    payload: dict[str, Any]) -> bytes:
    """The exact bytes a User signs: compact JSON with sorted keys, ASCII-escaped so it is also valid UTF-8.
    The payload is taken as the request's google.protobuf.Struct carries it, every number a double,
    so a client that signs {"amount": 900} and the server that reads back 900.0 sign the same bytes."""
    doc = {"user_id": user_id, "srv": srv, "target": target, "request_id": request_id,
           "issued_at_ms": int(issued_at_ms), "payload": _struct_values(payload)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("utf-8")


def _struct_values(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {k: _struct_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_struct_values(v) for v in value]
    return value


def load_private_key(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def sign(private_key_pem: bytes, **fields: Any) -> bytes:
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("private key is not an Ed25519 key")
    return key.sign(canonical_bytes(**fields))


class SignatureChecker:
    """Verifies signed requests and rejects any (user_id, request_id) seen within the last max_age_s."""

    def __init__(self, *, max_age_s: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}  # (user_id, request_id) -> forget after (clock seconds)
        self._expiry: list[tuple[float, tuple[str, str]]] = []  # min-heap over the same entries

    def verify(self, identity: Identity, signature: bytes | None, *, srv: str, target: str, request_id: str,
               issued_at_ms: int, payload: dict[str, Any]) -> None:
        if not signature:
            raise SignatureError("missing signature")
        if identity.public_key is None:
            raise SignatureError("no public key registered")
        now = self._clock()
        issued_s = issued_at_ms / 1000.0
        if abs(now - issued_s) > self.max_age_s:
            raise SignatureError("request too old or from the future")
        message = canonical_bytes(user_id=identity.user_id, srv=srv, target=target, request_id=request_id,
                                  issued_at_ms=issued_at_ms, payload=payload)
        try:
            Ed25519PublicKey.from_public_bytes(identity.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            raise SignatureError("signature does not verify") from None
        # Only requests that verify are remembered, so a forger cannot use up someone else's request ids.
        # An id is kept until its timestamp goes stale; after that the age check rejects a replay anyway.
        key = (identity.user_id, request_id)
        with self._lock:
            self._prune(now)
            if key in self._seen:
                raise SignatureError("replayed request id")
            forget_at = issued_s + self.max_age_s
            self._seen[key] = forget_at
            heapq.heappush(self._expiry, (forget_at, key))

    def forget(self, user_id: str, request_id: str) -> None:
        """The request was refused after its signature verified: nothing applied, so the user may
        send it again under the same id (AIP-155), newly signed."""
        with self._lock:
            self._seen.pop((user_id, request_id), None)

    def _prune(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            forget_at, key = heapq.heappop(self._expiry)
            if self._seen.get(key) == forget_at:  # not forgotten (and perhaps seen again) since
                del self._seen[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)
