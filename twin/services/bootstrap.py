"""Development identities and certificates: users with tokens and signing keys, and a
self-signed CA with a server certificate for TLS beyond loopback."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from pathlib import Path

from twin.services.identity import UserStore, dev_users


def load_or_create_users(home: Path) -> tuple[UserStore, Path]:
    """The user store in `home` (default .twin/); on first use, one development user per role,
    their tokens in tokens.json and their signing keys in keys/ (all readable by the owner only)."""
    users_path = home / "users.json"
    tokens_path = home / "tokens.json"
    if users_path.exists():
        return UserStore.load(users_path), tokens_path
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    store, tokens = dev_users(home / "keys")
    store.save(users_path)
    tmp = tokens_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(tokens, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(tokens_path)
    return store, tokens_path


def make_certs(out: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """A development CA and a server certificate for `hosts`; returns (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twin development CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = (out / "ca.pem", out / "server.pem", out / "server.key")
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths
