"""report.html: self-contained, complete (every point, every budget row), with a QR code that
carries the certificate's id and SHA-256, and rendered by a real browser."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from lxml import html as lhtml
from PIL import Image

from pipelines.dcc import DccError, build_dcc
from pipelines.report import budget_table_id, build_report, fmt, fmt_dof, qr_matrix, qr_payload
from tests.pipelines.conftest import SyntheticRun

CERT_ID = "RC-2026-0042-CERT"
VERSION = "0.1.0+test"


@pytest.fixture(scope="module")
def certificate(synthetic_run: SyntheticRun) -> bytes:
    return build_dcc(synthetic_run.results, synthetic_run.cfg, software_version=VERSION,
                     certificate_id=CERT_ID)


@pytest.fixture(scope="module")
def report(synthetic_run: SyntheticRun, certificate: bytes) -> str:
    return build_report(
        synthetic_run.results,
        synthetic_run.data,
        synthetic_run.cfg,
        config_text=synthetic_run.config_text,
        software_version=VERSION,
        certificate_xml=certificate,
        certificate_id=CERT_ID,
    )


@pytest.fixture(scope="module")
def page(report: str) -> lhtml.HtmlElement:
    return lhtml.fromstring(report)


def _text(el: lhtml.HtmlElement) -> str:
    return " ".join(el.text_content().split())


def test_self_contained(page: lhtml.HtmlElement, report: str) -> None:
    assert page.xpath("//script | //link | //iframe | //object | //embed") == []
    for el in page.iter():
        for attr in ("src", "href", "srcset", "data", "poster"):
            value = el.get(attr)
            if value is not None:
                assert value.startswith("data:image/png;base64,"), (el.tag, attr, value[:60])
    style = "".join(s.text_content() for s in page.xpath("//style"))
    assert "url(" not in style and "@import" not in style
    assert report.count("data:image/png;base64,") >= 4  # QR, 2 overviews, 2 error plots


def test_every_point_is_in_the_corrections_table(page: lhtml.HtmlElement, synthetic_run: SyntheticRun) -> None:
    rows = page.xpath("//table[@id='corrections']/tbody/tr")
    assert len(rows) == len(synthetic_run.results)
    for row, r in zip(rows, synthetic_run.results, strict=True):
        cells = [_text(td) for td in row.xpath("td")]
        assert cells[:3] == [r.channel, r.reference, str(r.point)]
        assert cells[6] == str(r.n)
        assert cells[9] == f"{r.correction:+.4f}"
        assert cells[10] == f"{r.U:#.3g}"
        assert cells[12] == ", ".join(r.flags)


def test_every_budget_row_is_shown(page: lhtml.HtmlElement, synthetic_run: SyntheticRun) -> None:
    tables = page.xpath("//table[contains(@class, 'budget')]")
    assert len(tables) == len(synthetic_run.results)
    for r in synthetic_run.results:
        (table,) = page.xpath(f"//table[@id='{budget_table_id(r)}']")
        rows = table.xpath("tbody/tr[@class='component']")
        assert len(rows) == len(r.budget.components) >= 7
        for row, c in zip(rows, r.budget.components, strict=True):
            cells = [_text(td) for td in row.xpath("td")]
            assert cells == [c.name, c.distribution, fmt(c.value), fmt(c.u), fmt(c.sensitivity),
                             fmt(c.contribution), fmt_dof(c.dof)]
        totals = [_text(tr) for tr in table.xpath("tbody/tr[@class='total']")]
        assert fmt(r.u_combined) in totals[0]
        assert totals[1].endswith(fmt_dof(r.dof_eff))
        assert totals[2].endswith(f"{r.k:#.3g}")
        assert fmt(r.U) in totals[3]


def test_config_version_and_flags(page: lhtml.HtmlElement, synthetic_run: SyntheticRun) -> None:
    (config,) = page.xpath("//pre[@id='config']")
    assert config.text_content() == synthetic_run.config_text
    assert _text(page.get_element_by_id("software-version")) == VERSION
    flagged = [r for r in synthetic_run.results if r.flags]
    assert flagged, "the synthetic run has an extrapolated point"
    items = [_text(li) for li in page.xpath("//ul[@id='flags']/li")]
    assert len(items) == len(flagged)
    for item, r in zip(items, flagged, strict=True):
        assert item.startswith(f"extrapolated: {r.channel}, point {r.point}")
    assert len(page.xpath("//table[@id='corrections']/tbody/tr[@class='flagged']")) == len(flagged)


def test_qr_code_carries_id_and_sha(page: lhtml.HtmlElement, certificate: bytes) -> None:
    sha = hashlib.sha256(certificate).hexdigest()
    assert _text(page.get_element_by_id("certificate-id")) == CERT_ID
    assert _text(page.get_element_by_id("certificate-sha256")) == sha
    payload = _text(page.get_element_by_id("qr-payload"))
    assert payload == qr_payload(CERT_ID, sha)
    assert json.loads(payload) == {"dcc": CERT_ID, "sha256": sha}

    # No QR decoder is installed: read the modules off the embedded image and compare them
    # with the QR encoding of the expected payload (same version, ECC level and mask).
    (img,) = page.xpath("//img[@class='qr']")
    png = base64.b64decode(img.get("src").removeprefix("data:image/png;base64,"))
    image = Image.open(io.BytesIO(png)).convert("L")
    expected = qr_matrix(payload)
    box, border = 4, 4
    assert image.size == ((len(expected) + 2 * border) * box,) * 2
    pixels = np.asarray(image)
    read = [[bool(pixels[(border + i) * box + box // 2, (border + j) * box + box // 2] < 128)
             for j in range(len(expected))] for i in range(len(expected))]
    assert read == expected
    assert qr_matrix(qr_payload(CERT_ID, "0" * 64)) != expected


def _decode_qr(image: Image.Image) -> list[str]:
    zxingcpp = pytest.importorskip("zxingcpp", reason="no QR decoder: pip install zxing-cpp")
    return [r.text for r in zxingcpp.read_barcodes(image)]


def test_qr_code_decodes_to_id_and_sha(page: lhtml.HtmlElement, certificate: bytes) -> None:
    (img,) = page.xpath("//img[@class='qr']")
    png = base64.b64decode(img.get("src").removeprefix("data:image/png;base64,"))
    decoded = _decode_qr(Image.open(io.BytesIO(png)))
    assert [json.loads(text) for text in decoded] == [
        {"dcc": CERT_ID, "sha256": hashlib.sha256(certificate).hexdigest()}
    ]


def test_report_refuses_a_certificate_of_another_id(synthetic_run: SyntheticRun, certificate: bytes) -> None:
    with pytest.raises(DccError, match="not 'OTHER'"):
        build_report(synthetic_run.results, synthetic_run.data, synthetic_run.cfg, config_text="",
                     software_version=VERSION, certificate_xml=certificate, certificate_id="OTHER")


def test_report_without_points(synthetic_run: SyntheticRun) -> None:
    out = build_report([], synthetic_run.data, synthetic_run.cfg, config_text="", software_version=VERSION,
                       certificate_xml=b"", certificate_id="none")
    assert "No calibration points" in out
    assert hashlib.sha256(b"").hexdigest() in out


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (Debian package 'chromium')")
def test_screenshot_in_headless_chromium(report: str, certificate: bytes, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(report, encoding="utf-8")
    shot = tmp_path / "report.png"
    chromium = _chromium()
    assert chromium is not None
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
         page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    assert shot.is_file()
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        rgb = np.asarray(im.convert("RGB")).astype(np.int16)
    assert rgb.std() > 0
    # The plots drew: the overview's plateau shading (tab:green at alpha 0.15 on white) covers
    # a good part of the first screen, and the QR code's black modules are there.
    shade = np.array([223, 241, 223])
    shaded = (np.abs(rgb - shade).max(axis=2) <= 6).sum()
    assert shaded > 50_000, shaded
    assert (rgb.max(axis=2) < 30).sum() > 5_000
    # and the QR code, as the browser drew it, still reads back (where a decoder is installed)
    if importlib.util.find_spec("zxingcpp") is not None:
        with Image.open(shot) as im:
            decoded = _decode_qr(im.convert("RGB"))
        sha = hashlib.sha256(certificate).hexdigest()
        assert [json.loads(text) for text in decoded] == [{"dcc": CERT_ID, "sha256": sha}]
