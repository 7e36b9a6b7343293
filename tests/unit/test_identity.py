"""The user store: issuing users, saving and loading, authenticating bearer tokens, validation."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from twin.services.identity import Identity, Unauthenticated, UserStore, dev_users
from twin.services.signing import SignatureChecker, load_private_key, sign


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_issue_save_load_authenticate(tmp_path: Path):
    store = UserStore()
    identity, token, key_path = store.issue_user("octopus-is", "IS", 1, keys_dir=tmp_path / "keys")
    assert identity == Identity("octopus-is", "IS", 1, identity.public_key) and len(identity.public_key) == 32
    store.save(tmp_path / "users.json")
    assert mode(tmp_path / "users.json") == 0o600
    assert mode(key_path) == 0o600 and key_path == tmp_path / "keys" / "octopus-is.pem"

    loaded = UserStore.load(tmp_path / "users.json")
    assert loaded.authenticate(token) == identity
    with pytest.raises(Unauthenticated):
        loaded.authenticate(token + "x")
    with pytest.raises(Unauthenticated):
        loaded.authenticate("")

    text = (tmp_path / "users.json").read_text()
    assert token not in text
    assert json.loads(text)["users"][0].keys() == {"user_id", "role", "party_id", "token_sha256", "public_key_hex"}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))

    # The private key written for the user signs requests its public key verifies.
    fields = {"srv": "4.1.1", "target": "t", "request_id": "r", "issued_at_ms": 1000, "payload": {}}
    sig = sign(load_private_key(key_path), user_id="octopus-is", **fields)
    SignatureChecker(clock=lambda: 1.0).verify(identity, sig, **fields)


@pytest.mark.parametrize(("user_id", "role", "party", "match"), [
    ("x", "XX", 1, "unknown role"),
    ("x", "IS", 0, "supplier code"),
    ("x", "GS", 17, "supplier code"),
    ("x", "ED", 9, "area id"),
    ("x", "GT", 24, "area id"),
    ("x", "OU", 3, "party_id 0"),
    ("x", "OPERATOR", 1, "party_id 0"),
    ("Bad_Name", "IS", 1, "user_id"),
    ("", "IS", 1, "user_id"),
    ("a" * 41, "IS", 1, "user_id"),
])
def test_bad_users_are_rejected(tmp_path: Path, user_id, role, party, match):
    with pytest.raises(ValueError, match=match):
        UserStore().issue_user(user_id, role, party, keys_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_user_ids_and_tokens_are_unique(tmp_path: Path):
    store = UserStore()
    store.issue_user("edf-es", "ES", 5, keys_dir=tmp_path)
    with pytest.raises(ValueError, match="already exists"):
        store.issue_user("edf-es", "ES", 5, keys_dir=tmp_path)
    store.add(Identity("ou-1", "OU", 0), "token-a")
    with pytest.raises(ValueError, match="already in use"):
        store.add(Identity("ou-2", "OU", 0), "token-a")
    with pytest.raises(ValueError, match="empty"):
        store.add(Identity("ou-3", "OU", 0), "")


def test_dev_users_cover_every_role(tmp_path: Path):
    store, tokens = dev_users(tmp_path)
    roles = {store.authenticate(t).role for t in tokens.values()}
    assert roles == {"IS", "ES", "GS", "ED", "GT", "RSA", "OU", "OPERATOR"}
    assert store.authenticate(tokens["ukpn-london-ed"]).party_id == 12
    assert store.authenticate(tokens["bg-gs"]) == next(u for u in store.users() if u.user_id == "bg-gs")
