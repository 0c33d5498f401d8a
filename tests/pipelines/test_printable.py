"""The printable certificate (HTML -> PDF by headless Chromium), checked as a person would: its
pages rendered to PNG (pdftoppm) and kept under the tests' artefacts, their text and QR code
read back; and `remotecal certificate sign|verify` on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.certificate.issue import Issued
from pipelines.certificate.printable import chromium, print_pdf, render_certificate
from pipelines.certificate.verify import qr_payloads
from pipelines.config import parse_pipeline_config
from pipelines.report import build_report
from pipelines.source import ChannelData
from remotecal.cli import main
from tests.pipelines.conftest import CONFIG_TEXT, SyntheticRun, issue
from tests.pipelines.pki import PASSWORD, make_pki
from tests.pipelines.test_certificate_parties import LABORATORY_AND_CUSTOMER

pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_pdf,
    pytest.mark.skipif(chromium() is None or shutil.which("pdftoppm") is None,
                       reason="needs chromium and poppler-utils (make system-packages)"),
]

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("REMOTECAL_TEST_ARTEFACTS", ROOT / "out" / "test-artefacts"))

FULL = CONFIG_TEXT + LABORATORY_AND_CUSTOMER + """
[items.dut1-t]
name = "Temperature transmitter"
manufacturer = "Vaisala"
model = "HMT330"
serial = "S1234567"

[items.dut2-t]
manufacturer = "Rotronic"
model = "HC2A-S"
serial = "0061234567"

[conditions]
ambient_temperature = "amb-t"
ambient_humidity = "amb-rh"
ambient_pressure = "amb-p"

[[cmc.temperature]]
min = -40.0
max = 50.0
U = 0.05
"""


@pytest.fixture(scope="module")
def printed(synthetic_run: SyntheticRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[Issued, Path, Path]:
    cfg = parse_pipeline_config(tomllib.loads(FULL))
    t = synthetic_run.data["ref-t"].t_s
    data = dict(synthetic_run.data)
    data["amb-t"] = ChannelData(t, 22.0 + 0.4 * np.sin(t / 900.0), "temperature", "degC", "chamber")
    data["amb-rh"] = ChannelData(t, 41.0 + 2.0 * np.cos(t / 700.0), "relative_humidity", "%rh", "chamber")
    data["amb-p"] = ChannelData(t, 1012.5 + 0.0 * t, "pressure", "hPa", "chamber")
    issued = issue(synthetic_run.results, cfg, data=data)
    folder = tmp_path_factory.mktemp("printable")
    html = folder / "certificate.html"
    html.write_text(render_certificate(issued), encoding="utf-8")
    pdf = print_pdf(html, folder / "certificate.pdf")
    (folder / "report.html").write_text(build_report(issued, data, cfg, config_text=FULL), encoding="utf-8")
    (folder / "certificate.xml").write_bytes(issued.xml)
    return issued, pdf, folder


def _pages_text(pdf: Path) -> list[str]:
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
    return [" ".join(page.split()) for page in out.stdout.split("\f") if page.strip()]


def test_every_page_has_title_number_and_page_count(printed: tuple[Issued, Path, Path]) -> None:
    _, pdf, _ = printed
    pages = _pages_text(pdf)
    assert len(pages) >= 2
    for i, page in enumerate(pages, start=1):
        assert "Calibration Certificate" in page, i
        assert "Certificate no. KL-2026-0042" in page, i
        assert f"Page {i} of {len(pages)}" in page, i


def test_it_states_what_a_certificate_must(printed: tuple[Issued, Path, Path]) -> None:
    issued, pdf, _ = printed
    text = " ".join(_pages_text(pdf))
    for needed in ("Klimakalibrierlabor Nord GmbH", "D-K-15070-01-00", "Pharma Lager AG", "Vaisala", "HMT330",
                   "S1234567", "0061234567", "Method", "Reference standards and traceability",
                   "Environmental conditions", "Ambient temperature", "Ambient relative humidity",
                   "Ambient pressure", "Date of issue", "Dr. Jana Beispiel", "authorised signatory",
                   "The results relate only to the items calibrated", "EA-4/02 M:2022", "(CMC)"):
        assert needed in text, needed
    for p in issued.content.points:  # results with U and k, as stated
        assert f"{p.error_text} {p.U_text} {p.k_text} {p.correction_text}" in text, p.result


def test_pages_as_png_for_a_person_and_the_qr_code_reads_back(printed: tuple[Issued, Path, Path]) -> None:
    issued, pdf, _ = printed
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTEFACTS.glob("certificate-page-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "100", "-png", str(pdf), str(ARTEFACTS / "certificate-page")], check=True)
    shutil.copy(pdf, ARTEFACTS / "certificate.pdf")
    pngs = sorted(ARTEFACTS.glob("certificate-page-*.png"))
    assert len(pngs) >= 2
    with Image.open(pngs[0]) as im:
        assert im.size == (827, 1170)  # A4 at 100 dpi
        rgb = np.asarray(im.convert("RGB"))
    assert (rgb.min(axis=2) < 60).mean() > 0.01  # there is text on it
    payloads = [json.loads(t) for t in qr_payloads(pdf)]
    assert payloads == [{"dcc": "KL-2026-0042", "sha256": issued.sha256}]


def test_sign_and_verify_on_the_command_line(printed: tuple[Issued, Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    issued, pdf, folder = printed
    pki = make_pki(tmp_path / "pki")
    xml = tmp_path / "certificate.xml"
    xml.write_bytes(issued.xml)
    password = tmp_path / "password"
    password.write_bytes(PASSWORD + b"\n")
    assert main(["certificate", "sign", str(xml), "--key", str(pki.encrypted_key), "--cert", str(pki.signer_cert),
                 "--password-file", str(password)]) == 0
    assert "signed" in capsys.readouterr().out
    assert main(["certificate", "verify", str(xml), "--trust", str(pki.ca), "--printed", str(pdf),
                 "--printed", str(folder / "report.html")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["schema", "signature", "printed certificate.pdf",
                                                      "printed report.html"]
    assert all(": OK - " in line for line in lines), lines

    # a printed copy of another certificate (another revision's content) does not match
    other = replace(issued, sha256="0" * 64)
    other_html = tmp_path / "other.html"
    other_html.write_text(render_certificate(other), encoding="utf-8")
    assert main(["certificate", "verify", str(xml), "--trust", str(pki.ca), "--printed", str(other_html)]) == 1
    assert "printed other.html: FAILED - QR code names another content of this certificate" in capsys.readouterr().out
    # an untrusted signer
    assert main(["certificate", "verify", str(xml), "--trust", str(pki.other_ca)]) == 1
    assert "signature: FAILED" in capsys.readouterr().out


def test_user_errors_exit_2_naming_the_file(tmp_path: Path, printed: tuple[Issued, Path, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    issued, _, _ = printed
    pki = make_pki(tmp_path / "pki")
    xml = tmp_path / "certificate.xml"
    xml.write_bytes(issued.xml)
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    assert main(["certificate", "sign", str(xml), "--key", str(pki.encrypted_key), "--cert", str(pki.signer_cert),
                 "--password-file", str(wrong)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"remotecal: {pki.encrypted_key}: cannot load the private key")
    assert main(["certificate", "sign", str(xml), "--key", str(pki.signer_key), "--cert", str(pki.other_ca)]) == 2
    assert f"{pki.other_ca}: the certificate is not the private key's" in capsys.readouterr().err
    assert main(["certificate", "verify", str(xml), "--trust", str(tmp_path / "none.pem")]) == 2
    assert f"{tmp_path / 'none.pem'}: cannot read the certificate" in capsys.readouterr().err
    assert xml.read_bytes() == issued.xml  # nothing was signed
