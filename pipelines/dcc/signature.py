"""An enveloped XAdES signature on certificate.xml (`signxml`), by the main signer's X.509 key,
and its verification against a trust store of CA certificates.

Signing (`sign_dcc`): XAdES-BES as PTB's signed good-practice DCC has it: one ds:Signature
appended to the root (the DCC schema's place for it), a reference to the whole document with
the enveloped-signature transform, a reference to the xades:SignedProperties (signing time,
the signing certificate's digest) and one to the KeyInfo, which carries the signer's
certificate and any intermediate CA certificates given.  Canonicalization C14N 1.1 (signxml's
default), digests SHA-256; RSA keys sign with RSA-SHA256, EC keys with ECDSA-SHA256.  A
certificate that is already signed is refused (sign the unsigned one again).

Verifying (`verify_signature`): the signature and every reference (signxml's XAdES verifier),
the signer's certificate chain up to one of the trusted CA certificates (the trust store: a PEM
file or a folder of them) at the signing time, the xades:SigningCertificate digest.  The
document returned is the part that was signed, so a caller never trusts unsigned content.

The same signature verifies with xmlsec1 (``xmlsec1 --verify --enabled-key-data x509
--trusted-pem CA.pem --id-attr:Id SignedProperties certificate.xml``): the tests check both.
The KeyInfo carries the certificates only, no bare ds:KeyValue, so no verifier can take the
key without checking its certificate.

Errors a user causes are `SigningError` with the file named: a key that cannot be read or
decrypted (wrong password), a certificate that is not PEM, a key that does not match the
certificate.
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml import InvalidInput, InvalidSignature, SignatureMethod
from signxml.xades import XAdESSignatureConfiguration, XAdESSigner, XAdESVerifier

from pipelines.dcc.common import DS_NS, NS, XADES_NS, DccError
from pipelines.dcc.validate import parse_xml

__all__ = ["SignatureInfo", "SigningError", "load_signer", "load_trust_store", "sign_dcc", "verify_signature"]


class SigningError(DccError):
    """A key, password or certificate file a user gave cannot be used (one line, the file named)."""


@dataclass(frozen=True)
class Signer:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate]
    """The signer's certificate first, then intermediate CA certificates."""


@dataclass(frozen=True)
class SignatureInfo:
    """What a verified signature says."""

    signer: str
    """The signing certificate's subject (RFC 4514)."""
    issuer: str
    signing_time: str
    """xades:SigningTime as written."""
    signed_xml: bytes
    """The document as signed (without the signature)."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def _certificates(path: Path) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(_read(path, "certificate"))
    except ValueError:
        certs = []
    if not certs:
        raise SigningError(f"{path}: not a PEM X.509 certificate")
    return certs


def load_signer(key_file: Path, cert_file: Path, password: bytes | None = None,
                chain: list[Path] | None = None) -> Signer:
    """The signer's private key and certificate chain; SigningError naming the file that is
    wrong (unreadable, not PEM, wrong or missing password, key and certificate not a pair)."""
    data = _read(key_file, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        if password is None:
            raise SigningError(f"{key_file}: the private key is encrypted; give its password") from None
        raise SigningError(f"{key_file}: the private key is not encrypted; give no password") from None
    except ValueError as exc:
        why = "wrong password, or not a PEM private key" if password else "not a PEM private key"
        raise SigningError(f"{key_file}: cannot load the private key ({why}: {exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SigningError(f"{key_file}: an RSA or EC private key is needed for XAdES, "
                           f"not {type(key).__name__}")
    certs = _certificates(cert_file)
    for extra in chain or []:
        certs += _certificates(extra)
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    pub = certs[0].public_key().public_bytes(der, spki)
    mine = key.public_key().public_bytes(der, spki)
    if pub != mine:
        raise SigningError(f"{cert_file}: the certificate is not the private key's ({key_file})")
    return Signer(key, certs)


def load_trust_store(path: Path) -> bytes:
    """The trusted CA certificates as one PEM bundle: a PEM file, or every *.pem / *.crt in a
    folder.  SigningError naming the path when there is none."""
    files = sorted([*path.glob("*.pem"), *path.glob("*.crt")]) if path.is_dir() else [path]
    bundle = b""
    for f in files:
        for cert in _certificates(f):
            bundle += cert.public_bytes(serialization.Encoding.PEM)
    if not bundle:
        raise SigningError(f"{path}: no CA certificate (*.pem, *.crt) in the trust store")
    return bundle


def sign_dcc(xml_bytes: bytes, signer: Signer) -> bytes:
    """``xml_bytes`` with an enveloped XAdES signature appended to its root (module docstring)."""
    doc = parse_xml(xml_bytes)
    if doc.find(f"{{{DS_NS}}}Signature") is not None:
        raise DccError("the certificate is signed already; sign the unsigned certificate")
    method = SignatureMethod.RSA_SHA256 if isinstance(signer.key, rsa.RSAPrivateKey) \
        else SignatureMethod.ECDSA_SHA256
    try:
        # No ds:KeyValue beside the certificate: a verifier must take the key from the
        # certificate it checks against the trust store, never a bare key.
        signed = XAdESSigner(signature_algorithm=method).sign(doc, key=signer.key, cert=signer.chain,
                                                              always_add_key_value=False)
    except InvalidInput as exc:
        raise SigningError(f"cannot sign: {exc}") from None
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def verify_signature(xml_bytes: bytes, trust_pem: bytes, *, at: datetime | None = None) -> SignatureInfo:
    """Verify the certificate's XAdES signature against the trusted CA certificates (PEM); the
    chain is checked at ``at`` (default: the signature's own signing time).  DccError with
    the reason when there is no signature or it does not verify."""
    doc = parse_xml(xml_bytes)
    sigs = doc.findall(f"{{{DS_NS}}}Signature")
    if not sigs:
        raise DccError("the certificate is not signed (no ds:Signature)")
    if len(sigs) > 1:
        raise DccError(f"the certificate has {len(sigs)} signatures; remotecal verifies one")
    signing_time = doc.findtext(f".//{{{XADES_NS}}}SigningTime") or ""
    when = at
    if when is None and signing_time:
        try:
            when = datetime.fromisoformat(signing_time.replace("Z", "+00:00"))
        except ValueError:
            raise DccError(f"xades:SigningTime {signing_time!r} is not a time") from None
    config = XAdESSignatureConfiguration(verification_time=when) if when else XAdESSignatureConfiguration()
    # signxml reads the trust store from a file
    with tempfile.NamedTemporaryFile(suffix=".pem") as ca:
        ca.write(trust_pem)
        ca.flush()
        try:
            results = XAdESVerifier().verify(xml_bytes, ca_pem_file=ca.name, expect_config=config)
        except (InvalidSignature, InvalidInput) as exc:
            raise DccError(f"the signature does not verify: {exc}") from None
    document = next((r for r in results if r.signed_xml is not None and r.signed_xml.tag == doc.tag), None)
    if document is None:
        raise DccError("the signature does not cover the certificate (no reference to the whole document)")
    first = doc.findtext("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)
    cert = x509.load_der_x509_certificate(base64.b64decode("".join((first or "").split())))
    return SignatureInfo(
        signer=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        signing_time=signing_time,
        signed_xml=etree.tostring(document.signed_xml),
    )
