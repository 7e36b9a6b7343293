"""Signatures on critical commands: valid ones pass; missing, forged, tampered, replayed and stale ones fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.services.identity import Identity
from twin.services.signing import SignatureChecker, SignatureError, canonical_bytes, load_private_key, sign

NOW_S = 1_700_000_000.0


def _key() -> tuple[bytes, bytes]:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem, private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


ALICE_PEM, ALICE_PUB = _key()
MALLORY_PEM, _ = _key()
ALICE = Identity("octopus-is", "IS", 1, ALICE_PUB)


def request(**overrides) -> dict:
    fields = {"user_id": "octopus-is", "srv": "7.1", "target": "00-DB-12-34-56-78-9A-BC", "request_id": "r-1",
              "issued_at_ms": int(NOW_S * 1000), "payload": {"reason": "reconnect", "delay_s": 0}}
    return fields | overrides


def verify(checker: SignatureChecker, signature: bytes | None, identity: Identity = ALICE, **fields) -> None:
    fields = request(**fields)
    del fields["user_id"]
    checker.verify(identity, signature, **fields)


def reason(checker: SignatureChecker, signature: bytes | None, identity: Identity = ALICE, **fields) -> str:
    with pytest.raises(SignatureError) as err:
        verify(checker, signature, identity, **fields)
    return err.value.reason


@pytest.fixture
def checker() -> SignatureChecker:
    return SignatureChecker(max_age_s=300.0, clock=lambda: NOW_S)


def test_canonical_bytes_are_compact_sorted_and_independent_of_dict_order():
    a = canonical_bytes(**request(payload={"b": 1, "a": [1, 2]}))
    b = canonical_bytes(**request(payload={"a": [1, 2], "b": 1}))
    assert a == b
    assert b" " not in a and a.index(b'"issued_at_ms"') < a.index(b'"payload"') < a.index(b'"request_id"')


def test_valid_signature_passes(checker, tmp_path: Path):
    (tmp_path / "k.pem").write_bytes(ALICE_PEM)
    verify(checker, sign(load_private_key(tmp_path / "k.pem"), **request()))


def test_missing_signature(checker):
    assert reason(checker, None) == "missing signature"
    assert reason(checker, b"") == "missing signature"


def test_user_without_public_key(checker):
    assert reason(checker, sign(ALICE_PEM, **request()), Identity("octopus-is", "IS", 1)) == "no public key registered"


def test_forged_with_another_users_key(checker):
    assert reason(checker, sign(MALLORY_PEM, **request())) == "signature does not verify"


def test_garbage_signature(checker):
    assert reason(checker, b"\x00" * 7) == "signature does not verify"


@pytest.mark.parametrize("tamper", [{"payload": {"reason": "reconnect", "delay_s": 1}},
                                    {"target": "00-DB-12-34-56-78-9A-BD"},
                                    {"srv": "7.2"}])
def test_tampered_request(checker, tamper):
    assert reason(checker, sign(ALICE_PEM, **request()), **tamper) == "signature does not verify"


def test_replayed_request_id_is_rejected_though_the_signature_is_valid(checker):
    sig = sign(ALICE_PEM, **request())
    verify(checker, sig)
    assert reason(checker, sig) == "replayed request id"
    # Another user's ids are their own.
    bob_pem, bob_pub = _key()
    bob = Identity("bg-gs", "GS", 2, bob_pub)
    verify(checker, sign(bob_pem, **request(user_id="bg-gs")), bob)


def test_forged_request_does_not_burn_the_request_id(checker):
    assert reason(checker, sign(MALLORY_PEM, **request())) == "signature does not verify"
    verify(checker, sign(ALICE_PEM, **request()))


@pytest.mark.parametrize("skew_s", [-301.0, 301.0])
def test_stale_or_future_timestamp(checker, skew_s):
    fields = request(issued_at_ms=int((NOW_S + skew_s) * 1000))
    assert reason(checker, sign(ALICE_PEM, **fields), issued_at_ms=fields["issued_at_ms"]) == \
        "request too old or from the future"


def test_remembered_ids_are_pruned_once_stale():
    now = [NOW_S]
    checker = SignatureChecker(max_age_s=10.0, clock=lambda: now[0])
    for i in range(5):
        verify(checker, sign(ALICE_PEM, **request(request_id=f"r-{i}")), request_id=f"r-{i}")
    assert len(checker) == 5
    now[0] += 11.0
    fresh = request(request_id="r-new", issued_at_ms=int(now[0] * 1000))
    verify(checker, sign(ALICE_PEM, **fresh), request_id="r-new", issued_at_ms=fresh["issued_at_ms"])
    assert len(checker) == 1


def test_a_forgotten_id_may_be_signed_again_and_pruning_keeps_the_new_entry():
    now = [NOW_S]
    checker = SignatureChecker(max_age_s=10.0, clock=lambda: now[0])
    verify(checker, sign(ALICE_PEM, **request(request_id="r-1")), request_id="r-1")
    checker.forget("octopus-is", "r-1")  # refused after it verified: the same id may be sent again
    now[0] += 5.0
    again = request(request_id="r-1", issued_at_ms=int(now[0] * 1000))
    verify(checker, sign(ALICE_PEM, **again), request_id="r-1", issued_at_ms=again["issued_at_ms"])
    now[0] += 6.0  # the first entry's expiry passes: the second is still remembered
    assert reason(checker, sign(ALICE_PEM, **again), request_id="r-1", issued_at_ms=again["issued_at_ms"]) == \
        "replayed request id"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.dictionaries(st.text(max_size=8), json_values, max_size=4), data=st.data())
def test_any_single_byte_change_breaks_the_signature(payload, data):
    fields = request(payload=payload)
    message = canonical_bytes(**fields)
    sig = sign(ALICE_PEM, **fields)
    public = serialization.load_pem_private_key(ALICE_PEM, password=None).public_key()
    public.verify(sig, message)
    at = data.draw(st.integers(0, len(message) - 1), label="byte")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = bytearray(message)
    changed[at] ^= flip
    with pytest.raises(InvalidSignature):
        public.verify(sig, bytes(changed))
