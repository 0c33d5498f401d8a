"""certificate.xml signed with an enveloped XAdES signature (signxml) by the main signer's X.509
key, verified by remotecal against a trust store and, independently, by xmlsec1."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from pipelines.certificate.issue import Issued
from pipelines.dcc import NS, content_sha256, validate_dcc
from pipelines.dcc.signature import (
    SigningError,
    load_signer,
    load_trust_store,
    sign_dcc,
    verify_signature,
)
from tests.pipelines.conftest import SyntheticRun, issue
from tests.pipelines.pki import PASSWORD, Pki, make_pki

XMLSEC1 = shutil.which("xmlsec1")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def issued(synthetic_run: SyntheticRun) -> Issued:
    return issue(synthetic_run.results, synthetic_run.cfg, data=synthetic_run.data)


@pytest.fixture(scope="module")
def signed(issued: Issued, pki: Pki) -> bytes:
    return sign_dcc(issued.xml, load_signer(pki.signer_key, pki.signer_cert))


def _xmlsec1(xml: bytes, ca: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert XMLSEC1 is not None, "xmlsec1 is not installed (Debian package xmlsec1; make system-packages)"
    f = tmp_path / "certificate.xml"
    f.write_bytes(xml)
    return subprocess.run([XMLSEC1, "--verify", "--enabled-key-data", "x509", "--trusted-pem", str(ca),
                           "--id-attr:Id", "SignedProperties", str(f)], capture_output=True, text=True, timeout=60)


def test_signed_certificate_validates_and_keeps_its_content_hash(issued: Issued, signed: bytes) -> None:
    validate_dcc(signed)
    doc = etree.fromstring(signed)
    assert doc[-1].tag == "{http://www.w3.org/2000/09/xmldsig#}Signature"
    assert doc.find("ds:Signature/ds:KeyInfo/ds:KeyValue", NS) is None  # the certificate only
    assert doc.find("ds:Signature/ds:Object/xades:QualifyingProperties/xades:SignedProperties/"
                    "xades:SignedSignatureProperties/xades:SigningTime", NS) is not None
    # the QR codes carry the content hash: signing does not change it
    assert content_sha256(signed) == content_sha256(issued.xml) == issued.sha256


def test_remotecal_verifies_against_the_trust_store(signed: bytes, pki: Pki) -> None:
    info = verify_signature(signed, load_trust_store(pki.ca))
    assert "CN=Dr. Jana Beispiel" in info.signer and "remotecal test root CA" in info.issuer
    assert info.signing_time.endswith("Z") or "+" in info.signing_time
    assert b"measurementResults" in info.signed_xml
    # a folder of CA certificates is a trust store too
    assert verify_signature(signed, load_trust_store(pki.ca.parent)).signer == info.signer


def test_xmlsec1_verifies_the_signature_independently(signed: bytes, pki: Pki, tmp_path: Path) -> None:
    ok = _xmlsec1(signed, pki.ca, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout + ok.stderr and "References (ok/all): 3/3" in ok.stdout + ok.stderr


def test_a_changed_value_breaks_the_signature_for_both_verifiers(signed: bytes, pki: Pki, tmp_path: Path) -> None:
    doc = etree.fromstring(signed)
    value = doc.find(".//dcc:quantity[@refType='basic_measurementError']/si:realListXMLList/si:valueXMLList", NS)
    assert value is not None and value.text
    _, *rest = value.text.split()
    value.text = " ".join(["9.99", *rest])
    tampered = etree.tostring(doc, xml_declaration=True, encoding="UTF-8")
    with pytest.raises(Exception, match="does not verify"):
        verify_signature(tampered, load_trust_store(pki.ca))
    assert _xmlsec1(tampered, pki.ca, tmp_path).returncode != 0


def test_a_signer_the_trust_store_does_not_know_is_refused(signed: bytes, pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not verify"):
        verify_signature(signed, load_trust_store(pki.other_ca))
    assert _xmlsec1(signed, pki.other_ca, tmp_path).returncode != 0


def test_an_expired_signer_certificate_is_refused(issued: Issued, pki: Pki) -> None:
    expired = sign_dcc(issued.xml, load_signer(pki.expired_key, pki.expired_cert))
    with pytest.raises(Exception, match="does not verify"):
        verify_signature(expired, load_trust_store(pki.ca))


def test_encrypted_key_needs_its_password(issued: Issued, pki: Pki) -> None:
    signer = load_signer(pki.encrypted_key, pki.signer_cert, PASSWORD)
    verify_signature(sign_dcc(issued.xml, signer), load_trust_store(pki.ca))
    with pytest.raises(SigningError, match=rf"^{pki.encrypted_key}: the private key is encrypted; give its password"):
        load_signer(pki.encrypted_key, pki.signer_cert)
    with pytest.raises(SigningError, match=rf"^{pki.encrypted_key}: cannot load the private key \(wrong password"):
        load_signer(pki.encrypted_key, pki.signer_cert, b"wrong")


def test_bad_files_are_one_line_naming_the_file(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(SigningError, match=rf"^{pki.signer_cert}: the certificate is not the private key's"):
        load_signer(pki.expired_key, pki.signer_cert)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(SigningError, match=rf"^{junk}: not a PEM X.509 certificate"):
        load_signer(pki.signer_key, junk)
    with pytest.raises(SigningError, match=rf"^{tmp_path / 'missing.key'}: cannot read the private key"):
        load_signer(tmp_path / "missing.key", pki.signer_cert)
    empty = tmp_path / "trust"
    empty.mkdir()
    with pytest.raises(SigningError, match=rf"^{empty}: no CA certificate"):
        load_trust_store(empty)


def test_signing_twice_and_verifying_unsigned_are_refused(issued: Issued, signed: bytes, pki: Pki) -> None:
    with pytest.raises(Exception, match="signed already"):
        sign_dcc(signed, load_signer(pki.signer_key, pki.signer_cert))
    with pytest.raises(Exception, match="not signed"):
        verify_signature(issued.xml, load_trust_store(pki.ca))


def test_the_command_parser_imports_nothing_heavy() -> None:
    """Every `remotecal` command (a gateway's start too) builds the parser with `certificate`:
    building it must not import the certificate's libraries (the gateway's end-to-end tests
    give it one second to subscribe)."""
    import subprocess
    import sys

    code = ("import sys, remotecal.cli as c; c.parser(); "
            "print(sorted(m for m in ('signxml', 'lxml', 'scipy', 'jinja2', 'matplotlib', 'zxingcpp') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout
