"""DUIS XML signatures (W3C XML Signature through signxml, keys and certificates through cryptography).

DUIS signs every message with an enveloped ds:Signature [C] (DUIS.md): exclusive c14n,
ecdsa-sha256, digest sha256, one Reference URI="" with the enveloped-signature transform, and
KeyInfo/X509Data/X509IssuerSerial naming the signer's certificate (the certificate itself is not
embedded: the receiver finds it by the issuer and serial, or by the originator's EUI).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from lxml import etree
from lxml.etree import _Element
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLSigner, XMLVerifier
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature

from twin.services.duis_gateway.wire import NS_DS, DuisRefusal, parse_xml

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_DS = {"ds": NS_DS}
# What verify accepts: only the DUIS algorithms, one reference, an X.509 key, at the top level.
_EXPECT = SignatureConfiguration(require_x509=True, location="./", expect_references=1,
                                 signature_methods=frozenset({SignatureMethod.ECDSA_SHA256}),
                                 digest_algorithms=frozenset({DigestAlgorithm.SHA256}))


class SignatureRefused(Exception):
    """A message whose signature does not hold; `reason` says why, for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _issuer_name(cert: x509.Certificate) -> str:
    return cert.issuer.rfc4514_string()


class XmlSigner:
    """Signs DUIS messages with one private key (EC P-256, PEM) and names its certificate (PEM) by
    issuer and serial. The key and certificate are parsed once; `sign` may be called from any thread
    (each call uses its own signxml signer: they keep per-call state)."""

    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        key = load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("a DUIS signing key is an EC prime256v1 (P-256) private key [C]")
        cert = x509.load_pem_x509_certificate(cert_pem)
        if cert.public_key() != key.public_key():
            raise ValueError("the certificate is not the signing key's")
        self.key = key
        self.cert = cert
        self.issuer = _issuer_name(cert)
        self.serial = cert.serial_number

    def _key_info(self) -> _Element:
        ki = etree.Element(f"{{{NS_DS}}}KeyInfo", nsmap=_DS)
        ser = etree.SubElement(etree.SubElement(ki, f"{{{NS_DS}}}X509Data"), f"{{{NS_DS}}}X509IssuerSerial")
        etree.SubElement(ser, f"{{{NS_DS}}}X509IssuerName").text = self.issuer
        etree.SubElement(ser, f"{{{NS_DS}}}X509SerialNumber").text = str(self.serial)
        return ki

    def sign(self, root: _Element) -> bytes:
        """The document `root` (not changed) with an enveloped ds:Signature as the root's last
        child, serialized as UTF-8 with an XML declaration."""
        signer = XMLSigner(signature_algorithm=SignatureMethod.ECDSA_SHA256, digest_algorithm=DigestAlgorithm.SHA256,
                           c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
        signed = signer.sign(root, key=self.key, key_info=self._key_info())
        return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def _root(data_or_root: bytes | _Element) -> _Element:
    if isinstance(data_or_root, _Element):
        return data_or_root
    try:
        return parse_xml(data_or_root, "message")
    except DuisRefusal as e:
        raise SignatureRefused(e.message) from None


def _signature(root: _Element) -> _Element | None:
    sigs = root.findall("ds:Signature", _DS)
    return sigs[-1] if len(sigs) == 1 else None


def issuer_serial(data_or_root: bytes | _Element) -> tuple[str, int] | None:
    """(X509IssuerName, X509SerialNumber) the root's ds:Signature KeyInfo names, None when there
    is no single top-level signature or it names no issuer and serial. Untrusted until `verify`.
    SignatureRefused if bytes given are not well-formed XML."""
    sig = _signature(_root(data_or_root))
    if sig is None:
        return None
    name = sig.find("ds:KeyInfo/ds:X509Data/ds:X509IssuerSerial/ds:X509IssuerName", _DS)
    serial = sig.find("ds:KeyInfo/ds:X509Data/ds:X509IssuerSerial/ds:X509SerialNumber", _DS)
    if name is None or serial is None or not name.text or not serial.text:
        return None
    text = serial.text.strip(" \t\r\n")
    if not (text.isascii() and text.isdigit() and len(text) <= 50):
        return None
    return name.text, int(text)


def _same_name(named: str, cert: x509.Certificate) -> bool:
    if named == _issuer_name(cert):
        return True
    try:  # another writer's spelling of the same DN
        return x509.Name.from_rfc4514_string(named).rfc4514_string() == _issuer_name(cert)
    except ValueError:
        return False


_CERTS: dict[bytes, x509.Certificate] = {}


def _cert(cert_pem: bytes | x509.Certificate) -> x509.Certificate:
    if isinstance(cert_pem, x509.Certificate):
        return cert_pem
    cert = _CERTS.get(cert_pem)
    if cert is None:  # parsed once per certificate: verify is on every request's path
        cert = x509.load_pem_x509_certificate(cert_pem)
        if len(_CERTS) < 10_000:
            _CERTS[cert_pem] = cert
    return cert


def verify(data_or_root: bytes | _Element, cert_pem: bytes | x509.Certificate) -> _Element:
    """The signed document (a new root, without its ds:Signature) when `data_or_root` carries a
    valid DUIS signature by `cert_pem`'s key (PEM bytes, or a parsed certificate). Only what the
    signature covers is returned, so nothing unsigned (an element added outside the signed data,
    a signature moved or wrapped) can pass as signed content. SignatureRefused on: not XML; no
    ds:Signature as the root's last child, or more than one; an algorithm other than exclusive
    c14n, ecdsa-sha256, sha256 with the enveloped-signature transform; a Reference other than one
    URI=""; a bad digest or signature value; an IssuerSerial not naming this certificate; an
    expired or not yet valid certificate."""
    root = _root(data_or_root)
    cert = _cert(cert_pem)
    kids = [c for c in root if isinstance(c.tag, str)]
    sig = _signature(root)
    if sig is None or not kids or kids[-1] is not sig:
        raise SignatureRefused("the message needs exactly one ds:Signature, as the root element's last child")
    named = issuer_serial(root)
    if named is None:
        raise SignatureRefused("the signature's KeyInfo names no X509IssuerSerial")
    if named[1] != cert.serial_number or not _same_name(named[0], cert):
        raise SignatureRefused(f"the signature names certificate {named[1]} of {named[0]!r}, not the signer's")
    try:
        result: Any = XMLVerifier().verify(root, x509_cert=cert, expect_config=_EXPECT)
    except (InvalidSignature, InvalidDigest, InvalidCertificate, InvalidInput) as e:
        raise SignatureRefused(f"the signature does not verify: {e}") from None
    except (ValueError, TypeError, etree.LxmlError) as e:  # malformed signature parts (e.g. bad base64)
        raise SignatureRefused(f"the signature is malformed: {e}") from None
    _check_signed_info(result.signature_xml)
    signed = result.signed_xml
    if signed is None or signed.tag != root.tag:
        raise SignatureRefused("the signature does not cover the whole document")
    return signed


def _check_signed_info(sig: _Element) -> None:
    """DUIS's algorithms exactly, read from the verified signature: exclusive c14n of SignedInfo,
    one Reference URI="" with the enveloped-signature transform then exclusive c14n."""
    c14n = sig.find("ds:SignedInfo/ds:CanonicalizationMethod", _DS)
    if c14n is None or c14n.get("Algorithm") != EXC_C14N:
        raise SignatureRefused("SignedInfo is not canonicalised with exclusive c14n")
    refs = sig.findall("ds:SignedInfo/ds:Reference", _DS)
    if len(refs) != 1 or refs[0].get("URI") != "":
        raise SignatureRefused('the signature needs exactly one Reference, URI=""')
    transforms = [t.get("Algorithm") for t in refs[0].findall("ds:Transforms/ds:Transform", _DS)]
    if transforms not in ([ENVELOPED, EXC_C14N], [ENVELOPED]):
        raise SignatureRefused(f"the Reference's transforms are {transforms}, not enveloped-signature and "
                               "exclusive c14n")
