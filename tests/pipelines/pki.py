"""Test keys and certificates, made at test time with `cryptography` (no private key is ever
committed): a root CA and a signer it certifies, an unrelated CA, written as PEM files."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path
    """The trusted root CA certificate (PEM)."""
    signer_key: Path
    signer_cert: Path
    encrypted_key: Path
    """The signer's key encrypted with PASSWORD."""
    other_ca: Path
    """A CA that certified nothing here."""
    expired_key: Path
    expired_cert: Path
    """A signer certificate of the CA that expired yesterday."""


PASSWORD = b"correct horse battery staple"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "remotecal test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(cn: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, key: rsa.RSAPrivateKey
          | ec.EllipticCurvePrivateKey, start: dt.datetime, end: dt.datetime) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))


def make_pki(folder: Path) -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca = _ca("remotecal test root CA", now)
    _, other = _ca("some other CA", now)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _leaf("Dr. Jana Beispiel", ca_key, ca, key, now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    old_key = ec.generate_private_key(ec.SECP256R1())
    old = _leaf("Expired Signer", ca_key, ca, old_key, now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    folder.mkdir(parents=True, exist_ok=True)

    def pem(name: str, data: bytes) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    plain = serialization.NoEncryption()
    return Pki(
        ca=pem("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        signer_key=pem("signer.key", key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8, plain)),
        signer_cert=pem("signer.pem", cert.public_bytes(serialization.Encoding.PEM)),
        encrypted_key=pem("signer-encrypted.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD))),
        other_ca=pem("other-ca.pem", other.public_bytes(serialization.Encoding.PEM)),
        expired_key=pem("expired.key", old_key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8, plain)),
        expired_cert=pem("expired.pem", old.public_bytes(serialization.Encoding.PEM)),
    )
