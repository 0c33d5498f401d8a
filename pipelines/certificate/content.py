"""What a certificate states, gathered once (`make_content`) and written three ways from the
same object: certificate.xml (`pipelines.dcc.write`), report.html (`pipelines.report`) and the
printable certificate (`pipelines.certificate.printable`), so they can never disagree.

- the points as stated (`pipelines.certificate.reported`: CMC floor, rounding, decisions);
- the parties ([certificate]) and the items ([items.<channel>]);
- the reference standards: each reference channel with its certificate's rows and, where the
  config states them, its identity and traceability (manufacturer, model, serial, certificate
  number, issuing laboratory, calibration and due dates, SHA-256 of its certificate file);
- the ambient conditions over the run ([conditions]: minimum, maximum, mean of a channel);
- the issue: certificate number, revision, what it replaces, issue date, provisional or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypedDict, cast

import numpy as np

from pipelines.certificate.reported import Reported, report_points
from pipelines.config import IssuedCertificateConfig, ItemConfig, PipelineConfig
from pipelines.curve import Curve
from pipelines.run import PointResult
from pipelines.source import ChannelData

__all__ = [
    "Certificate",
    "ChannelMeta",
    "Condition",
    "Issue",
    "Parties",
    "ReferenceStandard",
    "Replaced",
    "channels_meta_from_config",
    "conditions_of",
    "make_content",
    "references_of",
]

CONDITION_TEXT = {
    "ambient_temperature": "Ambient temperature",
    "ambient_humidity": "Ambient relative humidity",
    "ambient_pressure": "Ambient pressure",
}


class ChannelMeta(TypedDict, total=False):
    """What the certificate says about one DUT channel's instrument; every key optional."""

    name: str
    manufacturer: str
    model: str
    serial: str


def channels_meta_from_config(items: Mapping[str, ItemConfig]) -> dict[str, ChannelMeta]:
    """The items' ``ChannelMeta`` from the [items.<channel>] sections (the same keys)."""
    return {channel: cast(ChannelMeta, item.model_dump(exclude_none=True)) for channel, item in items.items()}


@dataclass(frozen=True)
class Parties:
    """Who calibrated what for whom, where.  The defaults say "not stated" (and "ZZ", the
    ISO 3166 code for an unknown country) so that a certificate always validates; a real
    certificate states them."""

    laboratory: str = "not stated"
    laboratory_code: str | None = None
    laboratory_email: str | None = None
    laboratory_city: str = "not stated"
    laboratory_country: str = "ZZ"
    customer: str = "not stated"
    customer_city: str = "not stated"
    customer_country: str = "ZZ"
    responsible_person: str = "not stated"
    responsible_role: str = "calibration engineer"
    country_code: str = "ZZ"
    """countryCodeISO3166_1 of the certificate (the laboratory's country)."""
    language: str = "en"
    performance_location: str = "laboratory"
    """laboratory | customer | laboratoryBranch | customerBranch | other."""

    @classmethod
    def from_config(cls, section: IssuedCertificateConfig | None) -> Parties:
        """The parties a [certificate] section states; the defaults where it is absent, or
        for the keys it leaves out.  The certificate's country is the laboratory's unless
        country_code says otherwise."""
        if section is None:
            return cls()
        given = section.model_dump(include=set(cls.__dataclass_fields__), exclude_none=True)
        given.setdefault("country_code", section.laboratory_country)
        return cls(**given)


@dataclass(frozen=True)
class ReferenceStandard:
    """A reference instrument of the run, with what is known of its own calibration."""

    channel: str
    quantity: str
    unit: str
    rows: tuple[tuple[float, float, float, float], ...] = ()
    """Its certificate's (indication, correction, U, k)."""
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    certificate_number: str | None = None
    laboratory: str | None = None
    """Who calibrated it (the traceability link)."""
    calibration_date: date | None = None
    due_date: date | None = None
    sha256: str | None = None
    """SHA-256 of its certificate file."""

    @property
    def traceability(self) -> str:
        """One sentence: how this standard is traceable."""
        by = self.laboratory or "a laboratory not stated in the pipeline config"
        number = f"certificate {self.certificate_number}" if self.certificate_number else \
            "a certificate whose number is not stated in the pipeline config"
        when = f" of {self.calibration_date.isoformat()}" if self.calibration_date else ""
        due = f", due {self.due_date.isoformat()}" if self.due_date else ""
        return f"calibrated by {by}, {number}{when}{due}"


@dataclass(frozen=True)
class Condition:
    """An ambient condition over the run, from one channel's readings."""

    name: str
    """ambient_temperature | ambient_humidity | ambient_pressure."""
    channel: str
    quantity: str
    unit: str
    minimum: float
    maximum: float
    mean: float
    n: int

    @property
    def label(self) -> str:
        return CONDITION_TEXT.get(self.name, self.name.replace("_", " "))


@dataclass(frozen=True)
class Replaced:
    """The certificate an issue replaces (an earlier revision under the same number)."""

    identifier: str
    sha256: str
    """Its content hash (`pipelines.dcc.read.content_sha256`)."""


@dataclass(frozen=True)
class Issue:
    identifier: str
    """The DCC's uniqueIdentifier: the number, with "-R<revision>" from the first revision on."""
    number: str
    revision: int = 0
    issued: date = field(default_factory=lambda: datetime.now(UTC).date())
    replaces: Replaced | None = None
    provisional: bool = False
    """The run was still recording: not a certificate, a preview (issue 14)."""


@dataclass(frozen=True)
class Certificate:
    """Everything a certificate states (module docstring)."""

    run: str
    points: list[Reported]
    parties: Parties
    items: dict[str, ChannelMeta]
    references: list[ReferenceStandard]
    conditions: list[Condition]
    missing_conditions: list[str]
    """[conditions] names whose channel has no readings in the run."""
    curves: dict[str, Curve]
    conformity_rule: str | None
    software_version: str
    issue: Issue
    simulated: bool = False
    """The readings are the demo's simulation (time-compressed): said on every page."""
    time_compression: float = 1.0
    origins: tuple[str, ...] = ()
    """"site/gateway" of each gateway that recorded the run."""

    @property
    def channels(self) -> list[str]:
        """The DUT channels, in certificate order (item1, item2, ...)."""
        return list(dict.fromkeys(p.result.channel for p in self.points))

    def points_of(self, channel: str) -> list[Reported]:
        return [p for p in self.points if p.result.channel == channel]

    def item_id(self, channel: str) -> str:
        return f"item{self.channels.index(channel) + 1}"

    def references_of(self, channel: str) -> list[ReferenceStandard]:
        names = {ch for p in self.points_of(channel) for ch, _ in p.result.equipment}
        return [r for r in self.references if r.channel in names]

    @property
    def begin_s(self) -> float:
        return min(p.result.t_start_s for p in self.points)

    @property
    def end_s(self) -> float:
        return max(p.result.t_end_s for p in self.points)


_REFERENCE_KEYS = {
    # [references.<id>] key -> ReferenceStandard field
    "name": "name", "manufacturer": "manufacturer", "model": "model", "serial": "serial",
    "certificate": "certificate_number", "certificate_number": "certificate_number",
    "laboratory": "laboratory", "calibration_date": "calibration_date", "due_date": "due_date",
    "certificate_sha256": "sha256", "sha256": "sha256",
}


def _reference_entry(cfg: PipelineConfig, channel: str) -> Any | None:
    """The [references.<id>] entry whose channel (default: its id) is ``channel``, once the
    config has that section (the `math` engineer's); None otherwise."""
    for ref_id, ref in (getattr(cfg, "references", None) or {}).items():
        if (getattr(ref, "channel", None) or ref_id) == channel:
            return ref
    return None


def _meta(cfg: PipelineConfig, channel: str) -> dict[str, Any]:
    """What [references.<id>] states of a reference channel's identity and certificate."""
    ref = _reference_entry(cfg, channel)
    if ref is None:
        return {}
    data = ref.model_dump() if hasattr(ref, "model_dump") else dict(ref)
    return {field: data[key] for key, field in _REFERENCE_KEYS.items() if data.get(key) is not None}


def references_of(cfg: PipelineConfig, results: Sequence[PointResult],
                  data: Mapping[str, ChannelData] | None = None) -> list[ReferenceStandard]:
    """The reference standards behind the results, sorted by channel."""
    units = {ch: unit for r in results for ch, unit in r.equipment}
    out = []
    for channel in sorted(units):
        cert = _reference_entry(cfg, channel) or cfg.reference_certificate.get(channel)
        quantity = data[channel].quantity if data and channel in data else \
            next((r.quantity for r in results if r.reference == channel), "")
        out.append(ReferenceStandard(
            channel=channel, quantity=quantity, unit=units[channel],
            rows=tuple((float(a), float(b), float(u), float(k)) for a, b, u, k in cert.points)
            if cert else (),
            **_meta(cfg, channel)))
    return out


def conditions_of(cfg: PipelineConfig, data: Mapping[str, ChannelData],
                  begin_s: float, end_s: float) -> tuple[list[Condition], list[str]]:
    """The [conditions] channels' minimum, maximum and mean from the first plateau's start to
    the last one's end; and the names of conditions whose channel has no readings then."""
    found, missing = [], []
    for name, channel in cfg.conditions.channels().items():
        ch = data.get(channel)
        if ch is None:
            missing.append(name)
            continue
        inside = (ch.t_s >= begin_s) & (ch.t_s <= end_s) & np.isfinite(ch.values)
        v = ch.values[inside]
        if v.size == 0:
            missing.append(name)
            continue
        found.append(Condition(name, channel, ch.quantity, ch.unit, float(v.min()), float(v.max()),
                               float(v.mean()), int(v.size)))
    return found, missing


def make_content(
    results: Sequence[PointResult],
    cfg: PipelineConfig,
    *,
    software_version: str,
    issue: Issue,
    data: Mapping[str, ChannelData] | None = None,
    curves: Mapping[str, Curve] | None = None,
    origins: Sequence[str] = (),
) -> Certificate:
    """The certificate's content for a run's results (module docstring).  ``data`` are the
    run's readings (for the ambient conditions); without them no condition is stated."""
    ordered = sorted(results, key=lambda r: (r.channel, r.reference, r.point))
    points = report_points(cfg, ordered)
    conditions: list[Condition] = []
    missing = list(cfg.conditions.channels())
    if data is not None and results:
        conditions, missing = conditions_of(cfg, data, min(r.t_start_s for r in results),
                                            max(r.t_end_s for r in results))
    return Certificate(
        run=cfg.run.id, points=points, parties=Parties.from_config(cfg.certificate),
        items=channels_meta_from_config(cfg.items), references=references_of(cfg, ordered, data),
        conditions=conditions, missing_conditions=missing, curves=dict(curves or {}),
        conformity_rule=cfg.conformity.rule if cfg.conformity is not None else None,
        software_version=software_version, issue=issue, simulated=cfg.report.simulated,
        time_compression=cfg.report.time_compression, origins=tuple(origins),
    )
