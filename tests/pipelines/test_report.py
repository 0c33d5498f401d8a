"""report.html: self-contained, complete (every point, every budget row), with a QR code that
carries the certificate's id and SHA-256, and rendered by a real browser."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from lxml import html as lhtml
from PIL import Image

from pipelines.certificate.issue import Issued
from pipelines.dcc import content_sha256
from pipelines.report import budget_table_id, build_report, qr_matrix, qr_payload
from tests.pipelines.conftest import SyntheticRun, issue

VERSION = "0.1.0+test"


@pytest.fixture(scope="module")
def issued(synthetic_run: SyntheticRun) -> Issued:
    return issue(synthetic_run.results, synthetic_run.cfg, data=synthetic_run.data, version=VERSION)


@pytest.fixture(scope="module")
def certificate(issued: Issued) -> bytes:
    return issued.xml


@pytest.fixture(scope="module")
def report(synthetic_run: SyntheticRun, issued: Issued) -> str:
    return build_report(issued, synthetic_run.data, synthetic_run.cfg, config_text=synthetic_run.config_text)


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


def test_every_point_is_in_the_results_table_with_units_and_stated_digits(
        page: lhtml.HtmlElement, issued: Issued) -> None:
    heads = [_text(th) for th in page.xpath("//table[@id='corrections']/thead/tr/th")]
    assert heads[:13] == ["channel", "reference", "point", "setpoint", "plateau (UTC)", "n", "reference value",
                          "DUT indication", "error", "U", "k", "correction", "flags"]
    rows = page.xpath("//table[@id='corrections']/tbody/tr")
    assert len(rows) == len(issued.content.points)
    for row, p in zip(rows, issued.content.points, strict=True):
        r = p.result
        cells = [_text(td) for td in row.xpath("td")]
        unit, dunit = ("°C", "K") if r.unit == "degC" else ("%rh", "%rh")
        assert cells[:3] == [r.channel, r.reference, str(r.point)]
        assert cells[5] == str(r.n)
        assert cells[6] == f"{p.reference_mean_text} {unit}" and cells[7] == f"{p.dut_mean_text} {unit}"
        assert cells[8] == f"{p.error_text} {dunit}" and cells[9] == f"{p.U_text} {dunit}"
        assert cells[10] == p.k_text and cells[11] == f"{p.correction_text} {dunit}"
        assert cells[12] == ", ".join(p.flags)
        # the value to U's decimal place (GUM 7.2.6)
        assert len(p.error_text.split(".")[-1]) == len(p.U_text.split(".")[-1])
        assert ":" in cells[4] and "–" in cells[4]  # HH:MM:SS – HH:MM:SS


def test_reads_like_a_certificate(page: lhtml.HtmlElement, issued: Issued) -> None:
    for section in ("administrative", "items", "references", "traceability", "statement-17025",
                    "statement-uncertainty", "statement-cmc"):
        assert page.get_element_by_id(section) is not None, section
    assert "relate only to the items calibrated" in _text(page.get_element_by_id("statement-17025"))
    assert _text(page.get_element_by_id("issue-date")) == issued.content.issue.issued.isoformat()
    refs = [_text(td) for td in page.xpath("//table[@id='references']/tbody/tr/td[1]")]
    assert refs == ["ref-rh", "ref-t"]
    assert page.xpath("//div[@id='banner-simulated']") == []


def test_every_budget_row_is_shown(page: lhtml.HtmlElement, issued: Issued) -> None:
    tables = page.xpath("//table[contains(@class, 'budget')]")
    assert len(tables) == len(issued.content.points)
    for p in issued.content.points:
        r = p.result
        (table,) = page.xpath(f"//table[@id='{budget_table_id(r)}']")
        rows = table.xpath("tbody/tr[@class='component']")
        assert len(rows) == len(r.budget.components) >= 7
        for row, c in zip(rows, r.budget.components, strict=True):
            cells = [_text(td) for td in row.xpath("td")]
            assert cells[:2] == [c.name, c.distribution]
            assert cells[6] == ("inf" if math.isinf(c.dof) else cells[6])
        totals = [_text(tr) for tr in table.xpath("tbody/tr[@class='total']")]
        assert p.u_combined_text in totals[0]
        assert totals[1].endswith(p.dof_text) and "e+" not in totals[1]
        assert totals[2].endswith(p.k_text)
        assert p.U_text in totals[3]


def test_config_version_and_flags(page: lhtml.HtmlElement, synthetic_run: SyntheticRun, issued: Issued) -> None:
    (config,) = page.xpath("//pre[@id='config']")
    assert config.text_content() == synthetic_run.config_text
    assert _text(page.get_element_by_id("software-version")) == VERSION
    flagged = [p for p in issued.content.points if p.flags]
    assert flagged, "the synthetic run has an extrapolated point"
    items = [_text(li) for li in page.xpath("//ul[@id='flags']/li")]
    assert len(items) == sum(len(p.flags) for p in flagged)
    assert items[0].startswith(f"extrapolated: {flagged[0].result.channel}, point {flagged[0].result.point}")
    assert len(page.xpath("//table[@id='corrections']/tbody/tr[@class='flagged']")) == len(flagged)


def test_qr_code_carries_id_and_content_hash(page: lhtml.HtmlElement, issued: Issued) -> None:
    cid, sha = issued.content.issue.identifier, content_sha256(issued.xml)
    assert sha == issued.sha256
    assert _text(page.get_element_by_id("certificate-id")) == cid
    assert _text(page.get_element_by_id("certificate-sha256")) == sha
    payload = _text(page.get_element_by_id("qr-payload"))
    assert payload == qr_payload(cid, sha)
    assert json.loads(payload) == {"dcc": cid, "sha256": sha}

    # Read the modules off the embedded image and compare them with the QR encoding of the
    # expected payload (same version, ECC level and mask).
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
    assert qr_matrix(qr_payload(cid, "0" * 64)) != expected


def _decode_qr(image: Image.Image) -> list[str]:
    zxingcpp = pytest.importorskip("zxingcpp", reason="no QR decoder: pip install zxing-cpp")
    return [r.text for r in zxingcpp.read_barcodes(image)]


def test_qr_code_decodes_to_id_and_sha(page: lhtml.HtmlElement, issued: Issued) -> None:
    (img,) = page.xpath("//img[@class='qr']")
    png = base64.b64decode(img.get("src").removeprefix("data:image/png;base64,"))
    decoded = _decode_qr(Image.open(io.BytesIO(png)))
    assert [json.loads(text) for text in decoded] == [{"dcc": issued.content.issue.identifier,
                                                        "sha256": issued.sha256}]


def test_demo_report_has_the_simulated_banner(synthetic_run: SyntheticRun, issued: Issued) -> None:
    from dataclasses import replace

    sim = replace(issued, content=replace(issued.content, simulated=True))
    page = lhtml.fromstring(build_report(sim, synthetic_run.data, synthetic_run.cfg, config_text=""))
    assert "SIMULATED DATA" in _text(page.get_element_by_id("banner-simulated"))
    assert "time-compressed" in _text(page.get_element_by_id("banner-simulated"))


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (Debian package 'chromium')")
def test_screenshot_in_headless_chromium(report: str, issued: Issued, tmp_path: Path) -> None:
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
        assert [json.loads(text) for text in decoded] == [{"dcc": issued.content.issue.identifier,
                                                            "sha256": issued.sha256}]
