"""DCC Users and their bearer tokens: a small user store that keeps only SHA-256 digests of tokens."""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from twin.model.catalog import AREA_BY_ID, SUPPLIERS
from twin.services.duis import ROLES

OPERATOR = "OPERATOR"  # a DCC operator: fleet operations only, never Service Requests
SUPPLIER_ROLES = frozenset({"IS", "ES", "GS", "RSA"})
NETWORK_ROLES = frozenset({"ED", "GT"})
_USER_ID = re.compile(r"[a-z0-9-]{1,40}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class Unauthenticated(Exception):
    """The bearer token is missing or belongs to no user."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    role: str  # one of duis.ROLES, or OPERATOR
    party_id: int  # supplier code (IS/ES/GS/RSA), DNO area id (ED/GT), else 0
    public_key: bytes | None = None  # raw 32-byte Ed25519 public key


# The caller of the RPC being served, set by the server's gate before the servicer runs.
IDENTITY: contextvars.ContextVar[Identity] = contextvars.ContextVar("twin_identity")


def bearer_token(context: Any) -> str:
    """The call's bearer token ('' if it has none)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and value[:7].lower() == "bearer ":
            return value[7:].strip()
    return ""


def current_identity() -> Identity:
    """The identity of the call being served (LookupError outside a gated call)."""
    return IDENTITY.get()


def check_identity(identity: Identity) -> None:
    """Raise ValueError unless the user id, role and party id are consistent."""
    if not isinstance(identity.user_id, str) or not _USER_ID.fullmatch(identity.user_id):
        raise ValueError(f"user_id {identity.user_id!r} must be 1-40 characters of a-z, 0-9 and '-'")
    role, party = identity.role, identity.party_id
    if role not in ROLES and role != OPERATOR:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join((*ROLES, OPERATOR))}")
    if role in SUPPLIER_ROLES and not 1 <= party <= len(SUPPLIERS):
        raise ValueError(f"role {role} needs a supplier code 1..{len(SUPPLIERS)} as party_id, got {party}")
    if role in NETWORK_ROLES and party not in AREA_BY_ID:
        raise ValueError(f"role {role} needs a DNO area id ({min(AREA_BY_ID)}..{max(AREA_BY_ID)}) as party_id, "
                         f"got {party}")
    if role not in SUPPLIER_ROLES | NETWORK_ROLES and party != 0:
        raise ValueError(f"role {role} takes party_id 0, got {party}")
    if identity.public_key is not None and len(identity.public_key) != 32:
        raise ValueError(f"public key of {identity.user_id} must be 32 bytes, got {len(identity.public_key)}")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, replacing any old one atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mkstemp uses 0o600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class UserStore:
    """Maps bearer tokens to Identities; holds SHA-256 digests of the tokens, never the tokens."""

    def __init__(self) -> None:
        self._by_digest: dict[str, Identity] = {}

    @classmethod
    def load(cls, path: str | Path) -> UserStore:
        store = cls()
        doc = json.loads(Path(path).read_text("utf-8"))
        for row in doc["users"]:
            key_hex = row.get("public_key_hex")
            identity = Identity(row["user_id"], row["role"], int(row["party_id"]),
                                bytes.fromhex(key_hex) if key_hex else None)
            store._add_digest(identity, str(row["token_sha256"]).lower())
        return store

    def save(self, path: str | Path) -> None:
        users = []
        for digest, ident in self._by_digest.items():
            row = {"user_id": ident.user_id, "role": ident.role, "party_id": ident.party_id, "token_sha256": digest}
            if ident.public_key is not None:
                row["public_key_hex"] = ident.public_key.hex()
            users.append(row)
        _write_private(Path(path), (json.dumps({"users": users}, indent=2) + "\n").encode("utf-8"))

    def users(self) -> list[Identity]:
        return list(self._by_digest.values())

    def add(self, identity: Identity, token: str) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self._add_digest(identity, _digest(token))

    def _add_digest(self, identity: Identity, digest: str) -> None:
        check_identity(identity)
        if not _SHA256_HEX.fullmatch(digest):
            raise ValueError(f"token_sha256 of {identity.user_id} is not a SHA-256 hex digest")
        if any(u.user_id == identity.user_id for u in self._by_digest.values()):
            raise ValueError(f"user_id {identity.user_id!r} already exists")
        if digest in self._by_digest:
            raise ValueError(f"token of {identity.user_id} is already in use")
        self._by_digest[digest] = identity

    def authenticate(self, token: str) -> Identity:
        if not token:
            raise Unauthenticated("missing bearer token")
        # A lookup by the token's SHA-256: what its timing could reveal is about the digest, which
        # a caller cannot steer towards a stored one without a preimage, so it says nothing useful
        # about any token; and it costs the same however many users there are.
        found = self._by_digest.get(_digest(token))
        if found is None:
            raise Unauthenticated("unknown bearer token")
        return found

    def issue_user(self, user_id: str, role: str, party_id: int, *, keys_dir: str | Path) -> tuple[Identity, str, Path]:
        """Create a user with a fresh token and Ed25519 key pair; the token is returned only here."""
        check_identity(Identity(user_id, role, party_id))
        if any(u.user_id == user_id for u in self._by_digest.values()):
            raise ValueError(f"user_id {user_id!r} already exists")
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        keys = Path(keys_dir)
        keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_path = keys / f"{user_id}.pem"
        _write_private(key_path, pem)
        identity = Identity(user_id, role, party_id, public)
        token = secrets.token_urlsafe(32)
        self.add(identity, token)
        return identity, token, key_path


# One development user per role: (user_id, role, party_id).
DEV_USERS: tuple[tuple[str, str, int], ...] = (
    ("octopus-is", "IS", 1),  # Octopus Energy
    ("bg-gs", "GS", 2),  # British Gas
    ("edf-es", "ES", 5),  # EDF Energy
    ("rsa-1", "RSA", 1),
    ("ukpn-london-ed", "ED", 12),  # London
    ("cadent-gt", "GT", 12),
    ("ou-1", "OU", 0),
    ("operator", OPERATOR, 0),
)


def dev_users(keys_dir: Path) -> tuple[UserStore, dict[str, str]]:
    """A development store with one user per role; returns it with {user_id: token}."""
    store = UserStore()
    tokens = {}
    for user_id, role, party in DEV_USERS:
        _, token, _ = store.issue_user(user_id, role, party, keys_dir=keys_dir)
        tokens[user_id] = token
    return store, tokens
