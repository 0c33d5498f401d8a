"""Issue a run's certificate: content, number, certificate.xml (validated, signed when a key is
configured), as `remotecal pipeline run` does it.

1. The content (`make_content`) with a placeholder identifier gives the content key: the
   SHA-256 of the canonical DCC without identifier, issue date and predecessor.
2. The register (`pipelines.certificate.register`) gives the identifier, revision, issue date
   and what it replaces; a provisional run takes "<number>-PROVISIONAL" and no number.
3. certificate.xml is built, validated against the shipped DCC schema (always: nothing is
   written that does not validate), signed with [certificate.signing] when given and validated
   again, and its content SHA-256 recorded under its identifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from pipelines.certificate.content import Certificate, Issue, make_content
from pipelines.certificate.register import Register
from pipelines.config import PipelineConfig
from pipelines.curve import Curve
from pipelines.dcc import build_dcc, canonical_content, content_sha256, validate_dcc
from pipelines.run import PointResult
from pipelines.source import ChannelData

__all__ = ["Issued", "certificate_number", "issue_certificate", "register_path"]

_PLACEHOLDER = Issue(identifier="unassigned", number="unassigned", issued=date(2000, 1, 1))


@dataclass(frozen=True)
class Issued:
    content: Certificate
    xml: bytes
    """certificate.xml as written (signed when a key is configured)."""
    sha256: str
    """Its content SHA-256 (`pipelines.dcc.read.content_sha256`): what the QR codes carry."""
    signed: bool


def certificate_number(cfg: PipelineConfig) -> str:
    """[certificate] identifier, or the run id."""
    if cfg.certificate is not None and cfg.certificate.identifier:
        return cfg.certificate.identifier
    return cfg.run.id


def register_path(cfg: PipelineConfig, config_path: Path) -> Path:
    """Where the certificate register lives: [certificate] register_file, or certificates.db
    beside the pipeline config."""
    if cfg.certificate is not None and cfg.certificate.register_file is not None:
        return cfg.certificate.register_file
    return config_path.resolve().parent / "certificates.db"


def issue_certificate(
    results: Sequence[PointResult],
    cfg: PipelineConfig,
    *,
    config_path: Path,
    software_version: str,
    data: Mapping[str, ChannelData] | None = None,
    curves: Mapping[str, Curve] | None = None,
    provisional: bool = False,
    origins: Sequence[str] = (),
) -> Issued:
    """The run's certificate, numbered, validated, signed when configured (module docstring).
    Raises DccError / RegisterError / SigningError (one line each)."""
    content = make_content(results, cfg, software_version=software_version, issue=_PLACEHOLDER, data=data,
                           curves=curves, origins=origins)
    key = hashlib.sha256(canonical_content(build_dcc(content))).hexdigest()
    number = certificate_number(cfg)
    if provisional:
        content = replace(content, issue=Issue(f"{number}-PROVISIONAL", number, provisional=True))
        xml = build_dcc(content)
        validate_dcc(xml)
        return Issued(content, xml, content_sha256(xml), signed=False)
    with Register(register_path(cfg, config_path)) as register:
        issue = register.issue(number, cfg.run.id, key)
        try:
            content = replace(content, issue=issue)
            xml = build_dcc(content)
            validate_dcc(xml)
            signed = False
            if cfg.certificate is not None and cfg.certificate.signing is not None:
                from pipelines.dcc.signature import load_signer, sign_dcc

                s = cfg.certificate.signing
                signer = load_signer(s.key, s.certificate, s.password.get().encode() if s.password else None,
                                     s.chain)
                xml = sign_dcc(xml, signer)
                validate_dcc(xml)
                signed = True
            sha = content_sha256(xml)
            register.record(issue.identifier, sha)
        except BaseException:
            register.forget_unwritten(issue.identifier)
            raise
    return Issued(content, xml, sha, signed)
