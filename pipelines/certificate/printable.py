"""The printable certificate: certificate.html (Jinja2, ``pipelines/templates/certificate.html.j2``)
and certificate.pdf printed from it by headless Chromium, with the same content as
certificate.xml (`pipelines.certificate.content.Certificate`).

Every page carries the title and the certificate number (CSS ``@page`` margin boxes) and
"page N of M"; the first page the laboratory, the customer, the items (manufacturer, model,
serial), the method, the reference standards and their traceability, the ambient
conditions, then the results with U and k per item, the statements (ISO/IEC 17025 7.8.4.3:
the results relate only to the items calibrated; EA-4/02 M:2022; the CMC), the dates, the
authorised signatory, and a QR code with the certificate's identifier and content SHA-256
(`pipelines.report.qr_payload`), which `remotecal certificate verify --printed` reads back.

PDF engine: headless Chromium (``--print-to-pdf``), because `make` installs it already (the
report's browser test uses it), it prints CSS paged media with margin boxes and page counters
(Chromium 131 and later), and it adds no Python dependency; WeasyPrint would have added a
package with its own native libraries (Pango) for the same output.  Chromium is looked up as
``$REMOTECAL_CHROMIUM``, ``chromium``, ``chromium-browser``, ``google-chrome``; without it the
pipeline writes certificate.html (print it from any browser) and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from markupsafe import Markup

from gateway.errors import RemotecalError
from pipelines.certificate.content import Certificate
from pipelines.certificate.issue import Issued
from pipelines.report import qr_payload, qr_png, templates

__all__ = ["PrintError", "chromium", "print_pdf", "render_certificate"]

PDF_TIMEOUT_S = 120.0


class PrintError(RemotecalError):
    """The PDF could not be printed (no Chromium, or it failed)."""


def render_certificate(issued: Issued) -> str:
    """certificate.html: the printable certificate as one self-contained HTML page."""
    from pipelines.dcc.write import STATEMENT_17025, STATEMENT_UNCERTAINTY, cmc_text, traceability_text

    c: Certificate = issued.content
    payload = qr_payload(c.issue.identifier, issued.sha256)
    return templates().get_template("certificate.html.j2").render(
        c=c, issued=issued, payload=payload, qr=qr_png(payload),
        statement_17025=STATEMENT_17025, statement_uncertainty=STATEMENT_UNCERTAINTY,
        statement_cmc=cmc_text(c), statement_traceability=traceability_text(c),
        css=Markup(templates().get_template("certificate.css").render(c=c)),
    )


def chromium() -> str | None:
    """The Chromium executable, or None."""
    env = os.environ.get("REMOTECAL_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html_file: Path, pdf_file: Path) -> Path:
    """Print ``html_file`` to ``pdf_file`` with headless Chromium; PrintError (one line) when
    there is no Chromium or it fails."""
    exe = chromium()
    if exe is None:
        raise PrintError("no Chromium to print certificate.pdf (Debian package 'chromium', or set "
                         "REMOTECAL_CHROMIUM); certificate.html is the printable certificate")
    with tempfile.TemporaryDirectory(prefix="remotecal-print-") as profile:
        args = [exe, "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                f"--user-data-dir={profile}", "--no-pdf-header-footer", f"--print-to-pdf={pdf_file}",
                html_file.resolve().as_uri()]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=PDF_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PrintError(f"{exe}: cannot print {html_file.name} to PDF: {exc}") from None
    if proc.returncode != 0 or not pdf_file.is_file() or pdf_file.stat().st_size == 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PrintError(f"{exe}: printing {html_file.name} to PDF failed (exit {proc.returncode}): {last}")
    return pdf_file
