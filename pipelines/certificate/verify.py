"""`remotecal certificate verify`: what a recipient checks before trusting a certificate.

1. **Schema:** certificate.xml validates against PTB's DCC 3.3.0 (shipped in the package).
2. **Signature:** its enveloped XAdES signature verifies, and the signer's certificate chains
   to one of the trusted CA certificates (`pipelines.dcc.signature.verify_signature`).
3. **Printed copies:** the QR code of each printed copy given - certificate.pdf (printed to
   images with poppler's pdftoppm), report.html or certificate.html (their embedded images),
   or a PNG/JPEG scan - names this certificate and its content SHA-256
   (`pipelines.dcc.read.content_sha256`), so a paper copy is tied to this very XML.

Each check gives a `Check` (name, ok, one line); the command prints them and exits 1 when one
failed.  QR codes are decoded with zxing-cpp.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipelines.dcc import DccError, certificate_identifier, content_sha256, validate_dcc
from pipelines.dcc.signature import verify_signature

__all__ = ["Check", "qr_payloads", "verify_certificate"]

_DATA_PNG = re.compile(rb'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name}: {'OK' if self.ok else 'FAILED'} - {self.detail}"


def _decode(image: Image.Image) -> list[str]:
    import zxingcpp

    found = zxingcpp.read_barcodes(image.convert("RGB"))
    return [r.text for r in found if r.format == zxingcpp.BarcodeFormat.QRCode]


def qr_payloads(path: Path) -> list[str]:
    """The QR codes' texts in a printed copy: a PDF (every page), an HTML page (its embedded PNG
    images) or an image file.  DccError (one line) when the file cannot be read."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".pdf":
            pdftoppm = shutil.which("pdftoppm")
            if pdftoppm is None:
                raise DccError(f"{path}: reading a PDF needs pdftoppm (Debian package poppler-utils)")
            with tempfile.TemporaryDirectory(prefix="remotecal-qr-") as tmp:
                proc = subprocess.run([pdftoppm, "-r", "150", "-png", str(path), f"{tmp}/page"],
                                      capture_output=True, text=True, timeout=120, check=False)
                if proc.returncode != 0:
                    raise DccError(f"{path}: not a readable PDF ({proc.stderr.strip()[:200]})")
                found: list[str] = []
                for page in sorted(Path(tmp).glob("page*.png")):
                    with Image.open(page) as im:
                        found += _decode(im)
                return found
        if suffix in (".html", ".htm"):
            found = []
            for m in _DATA_PNG.finditer(path.read_bytes()):
                with Image.open(io.BytesIO(base64.b64decode(m.group(1)))) as im:
                    found += _decode(im)
            return found
        with Image.open(path) as im:
            return _decode(im)
    except OSError as exc:
        raise DccError(f"{path}: cannot read the printed copy: {exc}") from None


def _printed_check(path: Path, identifier: str, sha: str) -> Check:
    try:
        payloads = qr_payloads(path)
    except DccError as exc:
        return Check(f"printed {path.name}", False, str(exc))
    parsed = []
    for text in payloads:
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and "dcc" in data and "sha256" in data:
            parsed.append(data)
    if not parsed:
        return Check(f"printed {path.name}", False, "no remotecal QR code found")
    if any(d["dcc"] == identifier and d["sha256"] == sha for d in parsed):
        return Check(f"printed {path.name}", True, f"QR code names {identifier} and its content SHA-256")
    d = parsed[0]
    what = "another certificate" if d["dcc"] != identifier else "another content of this certificate"
    return Check(f"printed {path.name}", False,
                 f"QR code names {what} ({d['dcc']}, SHA-256 {str(d['sha256'])[:16]}...), "
                 f"not {identifier} ({sha[:16]}...)")


def verify_certificate(xml_bytes: bytes, *, trust_pem: bytes | None,
                       printed: Sequence[Path] = ()) -> list[Check]:
    """The checks of the module docstring; ``trust_pem`` None skips the signature check (an
    unsigned certificate, e.g. before signing)."""
    checks = []
    try:
        validate_dcc(xml_bytes)
        checks.append(Check("schema", True, "valid DCC 3.3.0"))
    except DccError as exc:
        checks.append(Check("schema", False, str(exc)))
        return checks
    identifier, sha = certificate_identifier(xml_bytes), content_sha256(xml_bytes)
    if trust_pem is not None:
        try:
            info = verify_signature(xml_bytes, trust_pem)
            checks.append(Check("signature", True, f"XAdES by {info.signer} (issuer {info.issuer}), "
                                                   f"signed {info.signing_time}"))
        except DccError as exc:
            checks.append(Check("signature", False, str(exc)))
    checks += [_printed_check(p, identifier, sha) for p in printed]
    return checks
