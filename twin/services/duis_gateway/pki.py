"""A test PKI for the DUIS gateway: a CA, the twin's DCC signing credential and one organisation
credential per DCC User, with a `duis.json` manifest.

The real DCC takes certificates from its SMKI repository service [C] (DUIS.md); the twin offers a
PKI of its own instead. Keys are EC prime256v1 as in DUIS [C]; certificates are plain X.509 v3
organisation certificates signed by the test CA (not SMKI profiles) [U].

EUIs: each party gets an EUI-64 from the twin's own locally administered prefix 02-54-57-00-00-00
(the first octet's 0x02 bit marks it locally administered, so it collides with no manufacturer's
EUI; "TW" in the second and third octets) [U]: the DCC's credential is ...-00-00, and users take
...-00-01, ...-00-02, ... in the order `issue` first sees them. Re-running `issue` keeps every
existing key, certificate and EUI and adds only new users.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from twin.services.duis_gateway.signing import XmlSigner

MANIFEST = "duis.json"
EUI_PREFIX = (0x02, 0x54, 0x57, 0x00, 0x00, 0x00)  # locally administered, the twin's [U]
DCC_USER = "dcc"
_USER = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}", re.ASCII)
_EUI = re.compile(r"[0-9A-F]{2}(?:-[0-9A-F]{2}){7}", re.ASCII)


def eui_for(index: int) -> str:
    """The EUI-64 of the index-th party (0 = the DCC) in the twin's prefix."""
    if not 0 <= index < 2**16:
        raise ValueError(f"party index {index} out of range")
    return "-".join(f"{b:02X}" for b in (*EUI_PREFIX, index >> 8, index & 0xFF))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twin test PKI"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def _cert(subject: x509.Name, public: ec.EllipticCurvePublicKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, days: int, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                      crl_sign=ca, encipher_only=False, decipher_only=False), critical=True))
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(out_dir: Path, users: Iterable[str], *, days: int = 365) -> Path:
    """Issue (or extend) the test PKI in `out_dir`: ca.pem / ca.key, dcc.pem / dcc.key and per user
    <user>.pem / <user>.key (keys 0600), and the manifest duis.json {"ca": "ca.pem", "dcc": {"eui",
    "cert", "key"}, "users": {user_id: {"eui", "cert", "key", "receive_url": null}}} with paths
    relative to `out_dir`. Existing CA, keys, certificates, EUIs and receive URLs are kept; only new
    users are added. User ids: 1-63 characters, lower-case ASCII letters, digits, '_' and '-'
    (ValueError otherwise, or for "dcc"). Returns the manifest path."""
    users = list(users)
    for u in users:
        if not isinstance(u, str) or not _USER.fullmatch(u) or u == DCC_USER:
            raise ValueError(f"user id {u!r}: 1-63 lower-case ASCII letters, digits, '_' or '-' (not 'dcc')")
    if not 1 <= days <= 36_500:
        raise ValueError(f"days {days}: 1 to 36500")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text("utf-8"))
        ca_key = serialization.load_pem_private_key((out_dir / "ca.key").read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate((out_dir / manifest["ca"]).read_bytes())
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError("ca.key is not an EC key")
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _cert(_name("twin test CA"), ca_key.public_key(), _name("twin test CA"), ca_key, days, ca=True)
        _write_key(out_dir / "ca.key", ca_key)
        (out_dir / "ca.pem").write_bytes(_pem(ca_cert))
        manifest = {"ca": "ca.pem", "dcc": None, "users": {}}

    def party(name: str, index: int) -> dict[str, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(_name(name), key.public_key(), ca_cert.subject, ca_key, days, ca=False)
        _write_key(out_dir / f"{name}.key", key)
        (out_dir / f"{name}.pem").write_bytes(_pem(cert))
        return {"eui": eui_for(index), "cert": f"{name}.pem", "key": f"{name}.key"}

    if manifest.get("dcc") is None:
        manifest["dcc"] = party(DCC_USER, 0)
    taken = {int(p["eui"].replace("-", "")[-4:], 16) for p in manifest["users"].values()}
    nxt = max(taken, default=0) + 1
    for u in users:
        if u not in manifest["users"]:
            manifest["users"][u] = {**party(u, nxt), "receive_url": None}
            nxt += 1
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    tmp.replace(manifest_path)
    return manifest_path


def set_receive_url(manifest: Path, user_id: str, url: str | None) -> None:
    """Set (or clear, with None) the URL a User's responses and alerts are POSTed to, in the
    manifest (rewritten atomically). KeyError for a user the manifest does not hold; the URL's
    form is checked by twin.services.duis_gateway.delivery.Receivers where it is served."""
    manifest = Path(manifest)
    doc = json.loads(manifest.read_text("utf-8"))
    if user_id not in doc["users"]:
        raise KeyError(user_id)
    doc["users"][user_id]["receive_url"] = url
    tmp = manifest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    tmp.replace(manifest)


@dataclass(frozen=True)
class Party:
    """One credential holder: `user_id` ("dcc" for the twin), its EUI-64, its certificate (PEM),
    the path of its private key and the URL its responses and alerts are POSTed to (None: unset)."""

    user_id: str
    eui: str
    cert_pem: bytes
    key_path: Path
    receive_url: str | None
    cert: x509.Certificate

    @property
    def issuer_serial(self) -> tuple[str, int]:
        return self.cert.issuer.rfc4514_string(), self.cert.serial_number


class Pki:
    """The parties of a manifest written by `issue`, looked up by EUI, user id or issuer and serial."""

    def __init__(self, ca: x509.Certificate, dcc: Party, users: dict[str, Party], manifest: Path | None = None) -> None:
        self.ca = ca
        self.manifest = manifest  # the file it was loaded from
        self.dcc = dcc
        self.users = users
        every = [dcc, *users.values()]
        self._by_eui = {p.eui: p for p in every}
        self._by_serial = {(p.cert.issuer.rfc4514_string(), p.cert.serial_number): p for p in every}
        self._signers: dict[str, XmlSigner] = {}

    @classmethod
    def load(cls, manifest: Path) -> Pki:
        """Read and check a manifest: every file present, every certificate an EC P-256 certificate
        signed by the manifest's CA, EUIs well-formed and distinct, receive URLs http(s) or null.
        ValueError with a clear message on anything wrong."""
        manifest = Path(manifest)
        try:
            doc = json.loads(manifest.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"DUIS PKI manifest {manifest}: {e}") from None
        base = manifest.parent

        def read(rel: Any, what: str) -> bytes:
            if not isinstance(rel, str) or not rel:
                raise ValueError(f"DUIS PKI manifest {manifest}: {what} must name a file")
            try:
                return (base / rel).read_bytes()
            except OSError as e:
                raise ValueError(f"DUIS PKI manifest {manifest}: {what} {rel}: {e.strerror}") from None

        if not isinstance(doc, dict) or not isinstance(doc.get("dcc"), dict) or not isinstance(doc.get("users"), dict):
            raise ValueError(f"DUIS PKI manifest {manifest}: needs ca, dcc and users")
        try:
            ca = x509.load_pem_x509_certificate(read(doc.get("ca"), "ca"))
        except ValueError as e:
            raise ValueError(f"DUIS PKI manifest {manifest}: ca: {e}") from None

        def party(user_id: str, entry: Any) -> Party:
            what = f"DUIS PKI manifest {manifest}: {user_id}"
            if not isinstance(entry, dict):
                raise ValueError(f"{what}: not an object")
            eui = entry.get("eui")
            if not isinstance(eui, str) or not _EUI.fullmatch(eui):
                raise ValueError(f"{what}: eui {eui!r} is not an EUI-64 like 02-54-57-00-00-00-00-01")
            pem = read(entry.get("cert"), f"{user_id} cert")
            try:
                cert = x509.load_pem_x509_certificate(pem)
            except ValueError as e:
                raise ValueError(f"{what}: cert: {e}") from None
            key = cert.public_key()
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
                raise ValueError(f"{what}: the certificate's key is not EC prime256v1")
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                raise ValueError(f"{what}: the certificate is not signed by the manifest's CA") from None
            url = entry.get("receive_url")
            if url is not None and (not isinstance(url, str) or not re.fullmatch(r"https?://[\x21-\x7e]+", url)):
                raise ValueError(f"{what}: receive_url {url!r} is not an http(s) URL")
            key_rel = entry.get("key")
            if not isinstance(key_rel, str) or not key_rel:
                raise ValueError(f"{what}: key must name a file")
            return Party(user_id=user_id, eui=eui, cert_pem=pem, key_path=base / key_rel, receive_url=url, cert=cert)

        dcc = party(DCC_USER, doc["dcc"])
        users = {}
        for user_id, entry in doc["users"].items():
            if not isinstance(user_id, str) or not _USER.fullmatch(user_id) or user_id == DCC_USER:
                raise ValueError(f"DUIS PKI manifest {manifest}: bad user id {user_id!r}")
            users[user_id] = party(user_id, entry)
        euis = [dcc.eui, *(p.eui for p in users.values())]
        if len(set(euis)) != len(euis):
            raise ValueError(f"DUIS PKI manifest {manifest}: two parties share an EUI")
        return cls(ca, dcc, users, manifest)

    def parties(self) -> list[Party]:
        """The twin's own party first, then the DCC Users in manifest order."""
        return [self.dcc, *self.users.values()]

    def by_eui(self, eui: str) -> Party | None:
        """The party of an EUI-64 (any case), None if none."""
        return self._by_eui.get(eui.upper()) if isinstance(eui, str) else None

    def by_user(self, user_id: str) -> Party | None:
        return self.dcc if user_id == DCC_USER else self.users.get(user_id)

    def by_issuer_serial(self, issuer: str, serial: int) -> Party | None:
        """The party whose certificate has this issuer (RFC 4514 string) and serial number."""
        got = self._by_serial.get((issuer, serial))
        if got is None and isinstance(issuer, str):
            try:  # another writer's spelling of the same DN
                got = self._by_serial.get((x509.Name.from_rfc4514_string(issuer).rfc4514_string(), serial))
            except ValueError:
                return None
        return got

    def signer(self, user_id: str) -> XmlSigner:
        """The XmlSigner of a party (its key read once). KeyError for an unknown user;
        ValueError if its key file cannot be read or is not its certificate's key."""
        s = self._signers.get(user_id)
        if s is None:
            p = self.by_user(user_id)
            if p is None:
                raise KeyError(user_id)
            try:
                key = p.key_path.read_bytes()
            except OSError as e:
                raise ValueError(f"{user_id}'s key {p.key_path}: {e.strerror}") from None
            s = self._signers[user_id] = XmlSigner(key, p.cert_pem)
        return s
