"""Certificate numbers: stable for a run, a revision (naming the one it replaces) only when the
content changes, never two different certificates under one identifier."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from lxml import etree

from pipelines.certificate.issue import issue_certificate
from pipelines.certificate.register import Register, RegisterError
from pipelines.dcc import NS, certificate_identifier, content_sha256
from tests.pipelines.conftest import SyntheticRun


def _issue(run: SyntheticRun, folder: Path, version: str = "1.0", **kw: bool):  # type: ignore[no-untyped-def]
    return issue_certificate(run.results, run.cfg, config_path=folder / "pipeline.toml", software_version=version,
                             data=run.data, **kw)


def test_same_run_same_content_same_certificate(synthetic_run: SyntheticRun, tmp_path: Path) -> None:
    first = _issue(synthetic_run, tmp_path)
    again = _issue(synthetic_run, tmp_path)
    assert first.content.issue.identifier == synthetic_run.cfg.run.id  # the default number: the run id
    assert again.xml == first.xml  # byte for byte: a QR code printed earlier still matches
    with Register(tmp_path / "certificates.db") as reg:
        (entry,) = reg.entries()
    assert entry.sha256 == first.sha256 and entry.revision == 0 and entry.run == synthetic_run.cfg.run.id


def test_other_content_is_a_revision_that_names_the_one_it_replaces(
        synthetic_run: SyntheticRun, tmp_path: Path) -> None:
    first = _issue(synthetic_run, tmp_path, "1.0")
    second = _issue(synthetic_run, tmp_path, "1.1")
    third = _issue(synthetic_run, tmp_path, "1.2")
    number = synthetic_run.cfg.run.id
    assert [i.content.issue.identifier for i in (first, second, third)] == [number, f"{number}-R1", f"{number}-R2"]
    doc = etree.fromstring(second.xml)
    core = doc.find("dcc:administrativeData/dcc:coreData", NS)
    assert core is not None
    assert core.findtext("dcc:reportAmendedSubstituted/dcc:replacedUniqueIdentifier", namespaces=NS) == number
    assert core.findtext("dcc:previousReport/dcc:value", namespaces=NS) == first.sha256
    # issuing the first content again gives the first certificate back, not a fourth
    assert _issue(synthetic_run, tmp_path, "1.0").xml == first.xml
    assert certificate_identifier(_issue(synthetic_run, tmp_path, "1.1").xml) == f"{number}-R1"


def test_a_number_belongs_to_one_run(synthetic_run: SyntheticRun, tmp_path: Path) -> None:
    with Register(tmp_path / "r.db") as reg:
        reg.issue("KL-1", "run-a", "k1", today=date(2026, 1, 1))
        with pytest.raises(RegisterError, match="'KL-1' was issued for run 'run-a', not 'run-b'"):
            reg.issue("KL-1", "run-b", "k1")


def test_never_two_contents_under_one_identifier(tmp_path: Path) -> None:
    with Register(tmp_path / "r.db") as reg:
        issue = reg.issue("KL-1", "run-a", "k1")
        reg.record(issue.identifier, "a" * 64)
        reg.record(issue.identifier, "a" * 64)  # the same again is fine
        with pytest.raises(RegisterError, match="refusing to issue a second certificate under the same identifier"):
            reg.record(issue.identifier, "b" * 64)


def test_a_failed_issue_leaves_no_reservation(synthetic_run: SyntheticRun, tmp_path: Path) -> None:
    cfg = synthetic_run.cfg
    bad = cfg.model_copy(update={"certificate": None})
    from pipelines.certificate import issue as issue_module

    def broken(xml: bytes) -> None:
        raise RuntimeError("disk on fire")

    mp = pytest.MonkeyPatch()
    mp.setattr(issue_module, "validate_dcc", broken)
    try:
        with pytest.raises(RuntimeError):
            issue_certificate(synthetic_run.results, bad, config_path=tmp_path / "p.toml", software_version="1")
    finally:
        mp.undo()
    with Register(tmp_path / "certificates.db") as reg:
        assert reg.entries() == []


def test_provisional_takes_no_number(synthetic_run: SyntheticRun, tmp_path: Path) -> None:
    out = _issue(synthetic_run, tmp_path, provisional=True)
    assert out.content.issue.identifier.endswith("-PROVISIONAL") and out.content.issue.provisional
    assert b"PROVISIONAL: the run was still recording" in out.xml
    assert not (tmp_path / "certificates.db").exists()
    assert content_sha256(out.xml) == out.sha256
