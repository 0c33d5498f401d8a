"""[certificate] and [items.<channel>]: who calibrated what for whom, from PIPELINE.toml into
certificate.xml through the CLI, and what the CLI says when they are missing."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from gateway.errors import ConfigError
from pipelines.certificate.content import Parties, channels_meta_from_config
from pipelines.config import PipelineConfig, load_pipeline_config, parse_pipeline_config
from pipelines.dcc import DCC_NS, validate_dcc
from remotecal.cli import main
from tests.pipelines.test_run import CERT, PIPELINE_TOML, RUN, synthetic_run

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not

HERE = Path(__file__).parent
NS = {"dcc": DCC_NS}

LABORATORY_AND_CUSTOMER = """
[certificate]
identifier = "KL-2026-0042"
laboratory = "Klimakalibrierlabor Nord GmbH"
laboratory_code = "D-K-15070-01-00"
laboratory_email = "kalibrierung@kklnord.example"
laboratory_city = "Braunschweig"
laboratory_country = "DE"
customer = "Pharma Lager AG"
customer_city = "Basel"
customer_country = "CH"
responsible_person = "Dr. Jana Beispiel"
responsible_role = "Head of the calibration laboratory"
"""
"""A `[certificate]` of a real laboratory and customer (the printable certificate's tests use it too)."""
CERTIFICATE = LABORATORY_AND_CUSTOMER + 'performance_location = "customer"\n'

ITEMS = """
[items.dut1-t]
name = "Temperature transmitter"
manufacturer = "Vaisala"
model = "HMT330"
serial = "S1234567"

[items.dut2-t]
manufacturer = "Rotronic"
model = "HC2A-S"
serial = "0061234567"
"""


def _example() -> str:
    return (HERE / "pipeline_example.toml").read_text(encoding="utf-8")


def _parse(text: str) -> PipelineConfig:
    return parse_pipeline_config(tomllib.loads(text))


# --- config ---------------------------------------------------------------------------------


def test_spec_example_is_still_accepted_without_the_sections() -> None:
    cfg = load_pipeline_config(HERE / "pipeline_example.toml")
    assert cfg.certificate is None and cfg.items == {}
    assert Parties.from_config(cfg.certificate) == Parties()


def test_deploy_example_states_the_parties_and_items() -> None:
    cfg = load_pipeline_config(HERE.parent.parent / "deploy" / "examples" / "pipeline.toml")
    assert cfg.certificate is not None and cfg.certificate.laboratory_country == "DE"
    assert cfg.items and all(item.serial for item in cfg.items.values())


def test_readme_shows_sections_that_are_accepted() -> None:
    readme = (HERE.parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in readme.split("```toml\n")[1:]]
    (block,) = [b for b in blocks if "[certificate]" in b]
    cfg = _parse(_example() + block)
    assert cfg.certificate is not None and cfg.certificate.identifier == "KL-2026-0042"
    assert cfg.items["dut1-t"].serial == "S1234567"


def test_sections_are_read_into_parties_and_items() -> None:
    cfg = _parse(_example() + CERTIFICATE.replace('"Basel"', '"  Basel "') + ITEMS.replace("dut2-t", "dut3-t"))
    assert cfg.certificate is not None and cfg.certificate.identifier == "KL-2026-0042"
    assert cfg.certificate.customer_city == "Basel"  # the DCC refuses surrounding blanks
    parties = Parties.from_config(cfg.certificate)
    assert parties == Parties(
        laboratory="Klimakalibrierlabor Nord GmbH", laboratory_code="D-K-15070-01-00",
        laboratory_email="kalibrierung@kklnord.example", laboratory_city="Braunschweig",
        laboratory_country="DE", customer="Pharma Lager AG", customer_city="Basel", customer_country="CH",
        responsible_person="Dr. Jana Beispiel", responsible_role="Head of the calibration laboratory",
        country_code="DE",  # the laboratory's, unless country_code says otherwise
        language="en", performance_location="customer",
    )
    assert channels_meta_from_config(cfg.items) == {
        "dut1-t": {"name": "Temperature transmitter", "manufacturer": "Vaisala", "model": "HMT330",
                   "serial": "S1234567"},
        "dut3-t": {"manufacturer": "Rotronic", "model": "HC2A-S", "serial": "0061234567"},
    }
    minimal = _parse(_example() + CERTIFICATE.replace('identifier = "KL-2026-0042"\n', "")
                     .replace('responsible_role = "Head of the calibration laboratory"\n', "")
                     .replace('performance_location = "customer"\n', 'country_code = "AT"\n'))
    assert minimal.certificate is not None and minimal.certificate.identifier is None
    parties = Parties.from_config(minimal.certificate)
    assert (parties.country_code, parties.responsible_role, parties.performance_location) == (
        "AT", "calibration engineer", "laboratory")


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        ('laboratory_country = "DE"', 'laboratory_country = "de"', "certificate.laboratory_country",
         "upper case: 'DE'"),
        ('customer_country = "CH"', 'customer_country = "Switzerland"', "certificate.customer_country",
         "ISO 3166-1 alpha-2"),
        ('performance_location = "customer"', 'performance_location = "laboratory"\ncountry_code = "DEU"',
         "certificate.country_code", "ISO 3166-1 alpha-2"),
        ('performance_location = "customer"', 'language = "EN"', "certificate.language", "ISO 639-1"),
        ('performance_location = "customer"', 'language = "de"', "certificate.language", "English only"),
        ('performance_location = "customer"', 'performance_location = "on site"',
         "certificate.performance_location", "'laboratory', 'customer', 'laboratoryBranch'"),
        ('"kalibrierung@kklnord.example"', '"kalibrierung at kklnord"', "certificate.laboratory_email",
         "e-mail address"),
        ('"kalibrierung@kklnord.example"', '"kalibrierung@localhost"', "certificate.laboratory_email",
         "e-mail address"),
        ('customer_city = "Basel"\n', "", "certificate.customer_city", "required key is missing"),
        ('responsible_person = "Dr. Jana Beispiel"', 'responsible_person = " "',
         "certificate.responsible_person", "non-blank"),
        ('identifier = "KL-2026-0042"', 'identifier = "KL-2026-\\n0042"', "certificate.identifier", "one"),
        ('customer = "Pharma Lager AG"', 'customer = "Pharma Lager AG"\ncustomer_email = "x@y.example"',
         "certificate.customer_email", "unknown key"),
        ('serial = "S1234567"', 'serial_number = "S1234567"', "items.dut1-t.serial_number", "unknown key"),
        ('model = "HMT330"', 'model = ""', "items.dut1-t.model", "non-blank"),
        ("[items.dut2-t]", "[items.dut2-rh]", "items.dut2-rh", "matches no comparison's dut ('dut*-t')"),
        ("[items.dut2-t]", "[items.ref-t]", "items.ref-t", "is a reference channel"),
        ('[items.dut2-t]\nmanufacturer = "Rotronic"\nmodel = "HC2A-S"\nserial = "0061234567"\n', "[items.dut2-t]\n",
         "items.dut2-t", "at least one of name, manufacturer, model, serial"),
    ],
)
def test_bad_section_is_refused_with_its_key(old: str, new: str, key: str, reason: str) -> None:
    text = _example() + CERTIFICATE + ITEMS
    assert old in text
    with pytest.raises(ConfigError) as e:
        _parse(text.replace(old, new, 1))
    assert len(e.value.problems) == 1, e.value.problems
    assert e.value.problems[0].startswith(f"{key}: "), e.value.problems
    assert reason in e.value.problems[0], e.value.problems


def test_cli_refuses_a_bad_country_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.toml"
    p.write_text(_example() + CERTIFICATE.replace('customer_country = "CH"', 'customer_country = "ch"'))
    assert main(["pipeline", "run", "-c", str(p), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"{p}: certificate.customer_country: an ISO 3166-1 alpha-2 country "
                                        "code is upper case: 'CH', not 'ch'"]


# --- through the CLI into certificate.xml ---------------------------------------------------


@dataclass(frozen=True)
class CliRun:
    xml: bytes
    stdout: str
    warnings: list[str]
    config: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gateway.sinks.local.store import LocalStoreConfig, LocalStoreSink

    path = tmp_path_factory.mktemp("store") / "store.db"
    sink = LocalStoreSink(LocalStoreConfig(path=path))

    async def fill() -> None:
        await sink.write(synthetic_run())
        await sink.aclose()

    asyncio.run(fill())
    return path


def _run_cli(tmp_path: Path, store: Path, extra: str, caplog: pytest.LogCaptureFixture,
             capsys: pytest.CaptureFixture[str]) -> CliRun:
    """`remotecal pipeline run` on the local store of test_run's synthetic run (dut1-t and
    dut2-t against ref-t, three points each; dut1-rh has readings but no comparison)."""
    text = PIPELINE_TOML.format(run=RUN, url="x", database="x", cert=CERT)
    source = text[text.index("[source]"):text.index("[stability]")]
    config = tmp_path / "pipeline.toml"
    config.write_text(text.replace(source, f'[source]\nkind = "local"\npath = "{store}"\n\n') + extra)
    out = tmp_path / "out"
    caplog.set_level(logging.WARNING, logger="pipelines")
    assert main(["pipeline", "run", "-c", str(config), "--out", str(out)]) == 0
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "pipelines.pipeline" and r.levelno == logging.WARNING]
    return CliRun((out / "certificate.xml").read_bytes(), capsys.readouterr().out, warnings, config)


def _one(doc: etree._Element, path: str) -> str:
    found = doc.xpath(path, namespaces=NS)
    assert len(found) == 1, (path, found)
    return str(found[0])


def test_certificate_states_the_parties_and_items(tmp_path: Path, store: Path, caplog: pytest.LogCaptureFixture,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_cli(tmp_path, store, CERTIFICATE + ITEMS, caplog, capsys)
    assert run.warnings == []
    doc = etree.fromstring(run.xml)
    adm = "/dcc:digitalCalibrationCertificate/dcc:administrativeData"
    core = f"{adm}/dcc:coreData"
    assert _one(doc, f"{core}/dcc:uniqueIdentifier/text()") == "KL-2026-0042"
    assert "(id KL-2026-0042)" in run.stdout
    assert _one(doc, f"{core}/dcc:countryCodeISO3166_1/text()") == "DE"
    assert _one(doc, f"{core}/dcc:mandatoryLangCodeISO639_1/text()") == "en"
    assert _one(doc, f"{core}/dcc:performanceLocation/text()") == "customer"

    lab = f"{adm}/dcc:calibrationLaboratory"
    assert _one(doc, f"{lab}/dcc:calibrationLaboratoryCode/text()") == "D-K-15070-01-00"
    assert _one(doc, f"{lab}/dcc:contact/dcc:name/dcc:content/text()") == "Klimakalibrierlabor Nord GmbH"
    assert _one(doc, f"{lab}/dcc:contact/dcc:eMail/text()") == "kalibrierung@kklnord.example"
    assert _one(doc, f"{lab}/dcc:contact/dcc:location/dcc:city/text()") == "Braunschweig"
    assert _one(doc, f"{lab}/dcc:contact/dcc:location/dcc:countryCode/text()") == "DE"

    customer = f"{adm}/dcc:customer"
    assert _one(doc, f"{customer}/dcc:name/dcc:content/text()") == "Pharma Lager AG"
    assert _one(doc, f"{customer}/dcc:location/dcc:city/text()") == "Basel"
    assert _one(doc, f"{customer}/dcc:location/dcc:countryCode/text()") == "CH"

    person = f"{adm}/dcc:respPersons/dcc:respPerson"
    assert _one(doc, f"{person}/dcc:person/dcc:name/dcc:content/text()") == "Dr. Jana Beispiel"
    assert _one(doc, f"{person}/dcc:role/text()") == "Head of the calibration laboratory"

    expected = {
        "dut1-t": ("Temperature transmitter", "Vaisala", "HMT330", "S1234567"),
        "dut2-t": ("temperature sensor, channel dut2-t", "Rotronic", "HC2A-S", "0061234567"),
    }
    for channel, (name, manufacturer, model, serial) in expected.items():
        item = (f"{adm}/dcc:items/dcc:item[dcc:identifications/dcc:identification"
                f"[dcc:issuer='calibrationLaboratory'][dcc:value='{channel}']]")
        assert _one(doc, f"{item}/dcc:name/dcc:content/text()") == name
        assert _one(doc, f"{item}/dcc:manufacturer/dcc:name/dcc:content/text()") == manufacturer
        assert _one(doc, f"{item}/dcc:model/text()") == model
        assert _one(doc, f"{item}/dcc:identifications/dcc:identification[dcc:issuer='manufacturer']"
                         "/dcc:value/text()") == serial
        # The item is the one whose results are the channel's corrections.
        item_id = _one(doc, f"{item}/@id")
        assert _one(doc, f"//dcc:measurementResult[@refId='{item_id}']/dcc:name/dcc:content/text()") \
            == f"Calibration of channel {channel} against ref-t"


def test_certificate_with_the_sections_validates(tmp_path: Path, store: Path, caplog: pytest.LogCaptureFixture,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_cli(tmp_path, store, CERTIFICATE + ITEMS, caplog, capsys)
    validate_dcc(run.xml)
    assert b">not stated<" not in run.xml and b">ZZ<" not in run.xml


def test_without_the_sections_a_warning_and_still_a_valid_certificate(
    tmp_path: Path, store: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_cli(tmp_path, store, "", caplog, capsys)
    validate_dcc(run.xml)
    doc = etree.fromstring(run.xml)
    adm = "/dcc:digitalCalibrationCertificate/dcc:administrativeData"
    assert _one(doc, f"{adm}/dcc:calibrationLaboratory/dcc:contact/dcc:name/dcc:content/text()") == "not stated"
    assert _one(doc, f"{adm}/dcc:coreData/dcc:countryCodeISO3166_1/text()") == "ZZ"
    # the default number: the run id, stable for the run (not a fresh UUID per computation)
    assert _one(doc, f"{adm}/dcc:coreData/dcc:uniqueIdentifier/text()") == RUN
    assert not doc.xpath(f"{adm}/dcc:items/dcc:item/dcc:manufacturer", namespaces=NS)
    assert len(run.warnings) == 2, run.warnings
    parties, items = run.warnings
    assert "states no calibration laboratory, customer or responsible person" in parties
    assert f"add a [certificate] section to {run.config}" in parties
    assert "DUT channel(s) dut1-t, dut2-t" in items and "[items.<channel>]" in items


def test_items_of_channels_without_points_and_dut_channels_without_items_are_named(
    tmp_path: Path, store: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # dut1-rh matches dut = "dut*" but is no temperature channel: no point, not on the certificate.
    extra = CERTIFICATE + ITEMS.replace("[items.dut2-t]", "[items.dut1-rh]")
    run = _run_cli(tmp_path, store, extra, caplog, capsys)
    assert len(run.warnings) == 2, run.warnings
    assert "DUT channel(s) dut2-t:" in run.warnings[0]
    assert run.warnings[1] == f"items: channel(s) dut1-rh have no calibration point in run {RUN}: not on the certificate"
    assert b"0061234567" not in run.xml and b"S1234567" in run.xml
