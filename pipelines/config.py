"""The pipeline config, PIPELINE.toml (SPEC section 7): loaded, validated, cross-checked once.

    [run]                      id, optional start/end (ISO 8601 with a zone, or TOML datetimes)
    [source]                   kind = "influxdb" (url, api = "v1", database, optional
                               retention_policy, username/password or token) | "local" (path)
    [stability]                window_s, max_std, max_slope_per_min, min_duration_s
    [[comparisons]]            dut (a channel name or a glob), quantity, and either
                               reference (a channel of the DUT's quantity), or, for
                               relative_humidity, reference_dew_point and
                               reference_temperature (a chilled mirror and a thermometer,
                               each with its certificate) with optional pressure_pa;
                               optional stability / uncertainty overrides
    [references.<id>]          a reference standard tied to its certificate: channel (default
                               the id), manufacturer, model, serial, certificate (number),
                               laboratory, calibration_date, due_date, certificate_sha256,
                               optional certificate_file (its SHA-256 is checked), points,
                               extrapolate, drift, and [[references.<id>.history]] (earlier
                               certificates: calibration_date, points, ...): drift from them
    [reference_certificate.<channel>]
                               points = [[indication, correction, U, k], ...], extrapolate = false
                               (SPEC section 7's form: a table without the identity)
    [uncertainty]              reference_drift, dut_resolution, chamber_inhomogeneity
                               (half-widths or a resolution, in the quantity's unit), and any
                               further `name = half_width`: a rectangular Type B contribution
    [curve]                    optional: degree = 1 fits a weighted polynomial of correction
                               against DUT indication per DUT channel (`pipelines.curve`)
    [conformity]               optional: mpe = 0.5 (or mpe = {temperature = 0.3, ...}),
                               rule = "simple" | "guard_band" (ILAC-G8:09/2019,
                               `pipelines.conformity`)
    [certificate]              optional: what certificate.xml states about who calibrated for
                               whom (`IssuedCertificateConfig`); without it the DCC says "not
                               stated" and the CLI warns
    [items.<channel>]          optional, per DUT channel: name, manufacturer, model, serial of
                               the instrument (its dcc:item); the channel must be one that a
                               comparison's dut matches
    [[cmc.<quantity>]], [conditions], [report], [certificate.signing], [certificate] register_file
                               the certificate's own sections (`pipelines.certificate.config`)

Every problem is reported as one line with its key path, like the site config
(`gateway.config.format_validation_error`), e.g.
`reference_certificate.ref-t.points[2]: indications must increase (20.0 after 30.0)`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import re
import unicodedata
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from gateway.config_types import Secret, check_influx_url, check_password, check_token
from gateway.configfile import format_validation_error, read_toml
from gateway.errors import ConfigError
from gateway.quantities import check_quantity
from pipelines.certificate.config import CmcRange, ConditionsConfig, ReportConfig, SigningConfig, check_cmc

__all__ = [
    "CalibrationRecord",
    "CertificateConfig",
    "ComparisonConfig",
    "ConformityConfig",
    "CurveConfig",
    "IssuedCertificateConfig",
    "ItemConfig",
    "PipelineConfig",
    "ReferenceConfig",
    "RunConfig",
    "SourceConfig",
    "StabilityConfig",
    "UncertaintyConfig",
    "load_pipeline_config",
    "parse_pipeline_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


class RunConfig(_Strict):
    id: str = Field(min_length=1)
    start: datetime | None = None
    """Inclusive lower bound of the readings read (UTC)."""
    end: datetime | None = None
    """Exclusive upper bound of the readings read (UTC)."""
    allow_expired_references: bool = False
    """Compute points with a reference past its certificate's due date (refused otherwise);
    such points are flagged ``expired_reference`` in the results."""

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not v.strip() or "\n" in v:
            raise ValueError("must be one non-blank line")
        return v

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("give a time zone, e.g. '2026-11-20T08:00:00Z'")
        return v.astimezone(UTC)

    @field_validator("end")
    @classmethod
    def _after_start(cls, v: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("start")
        if v is not None and start is not None and v <= start:
            raise ValueError(f"must be after run.start ({start.isoformat()})")
        return v


class SourceConfig(_Strict):
    """Where the run's readings are: InfluxDB 1.x (or a v1-compatible API) over InfluxQL, or
    the demo's local store."""

    kind: Literal["influxdb", "local"]
    url: str | None = Field(default=None, validate_default=True)
    api: Literal["v1"] = "v1"
    database: str | None = Field(default=None, validate_default=True)
    retention_policy: str | None = Field(default=None, min_length=1)
    username: str | None = Field(default=None, min_length=1)
    password: Secret | None = Field(default=None, validate_default=True)
    token: Secret | None = Field(default=None, validate_default=True)
    path: Path | None = Field(default=None, validate_default=True)
    timeout: float = Field(default=60.0, gt=0)
    """Seconds without progress before a request to the server is given up."""
    chunk_size: int = Field(default=50_000, ge=1, le=1_000_000)
    """Points per chunk of a chunked InfluxQL response."""
    write_results: bool = True
    """Write the `calibration_point` points back to the same database (influxdb only)."""
    site: str | None = Field(default=None, min_length=1)
    """Only the readings of this site (InfluxDB tag `site`)."""
    gateway: str | None = Field(default=None, min_length=1)
    """Only the readings of this gateway (InfluxDB tag `gateway`)."""
    live_windows: bool = True
    """Use the windows a remote run recorded live at the edge (measurement `run_window`) as the
    calibration points of their reference channels; false: the pipeline's own detection only."""
    quiet_s: float = Field(default=600.0, ge=0)
    """A run without an [run] end in the past whose newest reading is younger than this [s] is
    still recording: `pipeline run` refuses it (or, with --provisional, marks it provisional)."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if v is None:
            if kind == "influxdb":
                raise ValueError("url is required with kind = 'influxdb'")
            return None
        if kind == "local":
            raise ValueError("url applies to kind = 'influxdb' only; the local store takes path")
        return check_influx_url(v, "database")

    @field_validator("database")
    @classmethod
    def _database(cls, v: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "influxdb" and not v:
            raise ValueError("database is required with kind = 'influxdb'")
        if kind == "local" and v is not None:
            raise ValueError("database applies to kind = 'influxdb' only")
        return v

    @field_validator("password")
    @classmethod
    def _password(cls, v: Secret | None, info: ValidationInfo) -> Secret | None:
        check_password(v, info.data.get("username"), "username" in info.data)
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: Secret | None, info: ValidationInfo) -> Secret | None:
        check_token(v, info.data.get("username"))
        return v

    @field_validator("site", "gateway")
    @classmethod
    def _filters(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("kind") == "local":
            raise ValueError("applies to kind = 'influxdb' only; the local store holds one gateway's "
                             "readings")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        kind = info.data.get("kind")
        if kind == "local" and v is None:
            raise ValueError("path is required with kind = 'local'")
        if kind == "influxdb" and v is not None:
            raise ValueError("path applies to kind = 'local' only")
        return v


class StabilityConfig(_Strict):
    """Plateau criteria on the reference (see `pipelines.plateaus`)."""

    window_s: float = Field(gt=0)
    max_std: NonNegativeFloat
    max_slope_per_min: NonNegativeFloat
    min_duration_s: NonNegativeFloat = 0.0

    _finite = field_validator("window_s", "max_std", "max_slope_per_min", "min_duration_s")(_finite)


class ComparisonConfig(_Strict):
    dut: str = Field(min_length=1)
    """A channel name, or a glob (fnmatch: *, ?, [seq]) over the run's channels."""
    reference: str | None = Field(default=None, min_length=1)
    """The reference channel, of the DUT's quantity. Or give the next two instead."""
    reference_dew_point: str | None = Field(default=None, min_length=1)
    """A dew-point channel (chilled mirror); with reference_temperature, the reference RH
    is computed from it (relative_humidity only; see `pipelines.run`)."""
    reference_temperature: str | None = Field(default=None, min_length=1)
    """The air temperature beside the DUTs, for a dew-point reference."""
    pressure_pa: float | None = Field(default=None, gt=0)
    """Total pressure [Pa] at the DUTs: applies Hardy's enhancement factor (dew-point
    reference only); absent: the enhancement factor is taken as 1."""
    pressure_u_pa: float = Field(default=0.0, ge=0)
    """Standard uncertainty of pressure_pa [Pa] (and of mirror_pressure_pa), propagated to
    %rh with the sensitivity coefficient at each point."""
    mirror_pressure_pa: float | None = Field(default=None, gt=0)
    """Pressure in the mirror's measuring cell [Pa] when it differs from the chamber's (a
    sampled or pumped mirror): the vapour pressure scales by pressure_pa / mirror_pressure_pa.
    Absent: the mirror sees pressure_pa."""
    correlation_dew_point_temperature: float = Field(default=0.0, ge=-1, le=1)
    """Correlation coefficient between the dew-point and the temperature corrections (their
    certificates' and drifts', e.g. both traced to one laboratory's standard; GUM 5.2)."""
    dut_settling: bool = True
    """A point's window starts only once the DUT itself is stable by the comparison's
    stability criteria (a lagging DUT biases the mean otherwise); false: the reference's
    plateau as it is."""
    quantity: str
    stability: StabilityConfig | None = None
    """Criteria for this comparison's reference (e.g. in %rh for a hygrometer); default [stability]."""
    uncertainty: UncertaintyConfig | None = None
    """Type B contributions in this comparison's unit; default [uncertainty]."""

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, v: str) -> str:
        return check_quantity(v)

    @property
    def reference_name(self) -> str:
        """The channel whose plateaus are the points: the reference, or the dew point."""
        name = self.reference or self.reference_dew_point
        assert name is not None  # guaranteed by _cross_check
        return name

    @property
    def reference_channels(self) -> tuple[str, ...]:
        """Every reference channel this comparison reads (each needs a certificate)."""
        if self.reference is not None:
            return (self.reference,)
        return tuple(c for c in (self.reference_dew_point, self.reference_temperature) if c)

    @property
    def dew_point_reference(self) -> bool:
        return self.reference is None


def _certificate_rows(v: Any) -> Any:
    if isinstance(v, list):
        for i, row in enumerate(v):
            if not isinstance(row, list | tuple) or len(row) != 4:
                raise ValueError(f"[{i}]: expected [indication, correction, U, k], got {row!r}")
            if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in row):
                raise ValueError(f"[{i}]: expected four numbers [indication, correction, U, k]")
    return v


def _check_rows(v: list[CertificatePoint]) -> list[CertificatePoint]:
    for i, (indication, correction, big_u, k) in enumerate(v):
        if not all(math.isfinite(x) for x in (indication, correction, big_u, k)):
            raise ValueError(f"[{i}]: every number must be finite")
        if big_u < 0:
            raise ValueError(f"[{i}]: the expanded uncertainty U must be >= 0, not {big_u}")
        if k <= 0:
            raise ValueError(f"[{i}]: the coverage factor k must be > 0, not {k}")
        if i and indication <= v[i - 1][0]:
            raise ValueError(f"[{i}]: indications must increase ({indication} after {v[i - 1][0]})")
    return v


CertificatePoint = tuple[float, float, float, float]


class CertificateConfig(_Strict):
    """The reference probe's calibration certificate: (indication, correction, U, k) rows.

    Between rows the correction and the standard uncertainty U/k are interpolated linearly.
    Outside the rows the pipeline refuses to work unless ``extrapolate`` is true; then the
    correction is extrapolated linearly from the two outermost rows, the uncertainty is held
    at the outermost row's, and the result is flagged.
    """

    points: list[CertificatePoint] = Field(min_length=1)
    extrapolate: bool = False

    _shape = field_validator("points", mode="before")(_certificate_rows)
    _points = field_validator("points")(_check_rows)


_SHA256 = re.compile(r"[0-9a-f]{64}")


class CalibrationRecord(_Strict):
    """[[references.<id>.history]]: an earlier calibration of a reference, for its drift."""

    certificate: str | None = None
    """The certificate's number."""
    laboratory: str | None = None
    calibration_date: date
    points: list[CertificatePoint] = Field(min_length=1)

    _lines = field_validator("certificate", "laboratory")(lambda v: _one_line(v))
    _shape = field_validator("points", mode="before")(_certificate_rows)
    _points = field_validator("points")(_check_rows)


class ReferenceConfig(_Strict):
    """[references.<id>]: a reference standard tied to its calibration certificate
    (`pipelines.reference`).  The table is the certificate's; the identity goes into the
    results (and the DCC's measuringEquipment)."""

    channel: str | None = Field(default=None, min_length=1)
    """The channel it reads in the run; default: the id."""
    manufacturer: str | None = None
    model: str | None = None
    serial: str
    certificate: str
    """The certificate's number."""
    laboratory: str
    """The laboratory that issued the certificate."""
    calibration_date: date
    due_date: date
    """After this day the reference is expired: a run refuses it (unless
    run.allow_expired_references)."""
    certificate_sha256: str | None = None
    """SHA-256 of the certificate's file (hex), stating which document the table is from."""
    certificate_file: Path | None = None
    """The certificate's file (relative to PIPELINE.toml): its SHA-256 must equal
    certificate_sha256 (which then is required)."""
    points: list[CertificatePoint] = Field(min_length=1)
    extrapolate: bool = False
    drift: NonNegativeFloat | None = None
    """Half-width of the drift since calibration (rectangular) [unit of the channel];
    default [uncertainty] reference_drift (of the comparison's unit), unless the history
    gives one."""
    history: list[CalibrationRecord] = []
    """Earlier certificates, oldest first: with one or more, the drift is the largest change
    of correction between successive calibrations (rectangular half-width)."""

    _lines = field_validator("manufacturer", "model", "serial", "certificate", "laboratory")(
        lambda v: _one_line(v))
    _shape = field_validator("points", mode="before")(_certificate_rows)
    _points = field_validator("points")(_check_rows)

    @field_validator("certificate_sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256.fullmatch(v.lower()):
            raise ValueError("expected the SHA-256 as 64 hexadecimal digits")
        return None if v is None else v.lower()

    @field_validator("due_date")
    @classmethod
    def _due(cls, v: date, info: ValidationInfo) -> date:
        cal = info.data.get("calibration_date")
        if cal is not None and v <= cal:
            raise ValueError(f"must be after calibration_date ({cal.isoformat()})")
        return v

    @field_validator("history")
    @classmethod
    def _history(cls, v: list[CalibrationRecord], info: ValidationInfo) -> list[CalibrationRecord]:
        cal = info.data.get("calibration_date")
        for i, record in enumerate(v):
            if i and record.calibration_date <= v[i - 1].calibration_date:
                raise ValueError(f"[{i}].calibration_date: history runs oldest first "
                                 f"({record.calibration_date} after {v[i - 1].calibration_date})")
            if cal is not None and record.calibration_date >= cal:
                raise ValueError(f"[{i}].calibration_date: an earlier calibration must precede "
                                 f"calibration_date ({cal.isoformat()})")
        return v

    @field_validator("drift")
    @classmethod
    def _drift(cls, v: float | None) -> float | None:
        return None if v is None else _finite(v)


class UncertaintyConfig(BaseModel):
    """Type B contributions that are not measured, in the quantity's unit.

    Keys beyond the three named ones are further rectangular half-widths, e.g.
    ``self_heating = 0.005``; they appear in the budget under their key.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, NonNegativeFloat] = Field(init=False)

    reference_drift: NonNegativeFloat
    """Half-width of the reference's drift since its calibration (rectangular)."""
    dut_resolution: NonNegativeFloat
    """The DUT's resolution (digit step): u = resolution / (2 sqrt 3)."""
    chamber_inhomogeneity: NonNegativeFloat
    """Half-width of the temperature/humidity difference between reference and DUT positions."""
    temperature_inhomogeneity: NonNegativeFloat | None = None
    """Dew-point comparisons only: half-width [degC] of the air temperature difference
    between the reference thermometer and the DUTs, propagated to %rh with dRH/dT at each
    point (rectangular)."""

    _finite = field_validator("reference_drift", "dut_resolution", "chamber_inhomogeneity",
                              "temperature_inhomogeneity")(_finite)

    @property
    def extra_half_widths(self) -> dict[str, float]:
        """The further rectangular contributions, in file order."""
        return dict(self.__pydantic_extra__ or {})


ComparisonConfig.model_rebuild()


class CurveConfig(_Strict):
    """A correction curve per DUT channel across its points (`pipelines.curve`)."""

    degree: int = Field(ge=0, le=5)
    """Polynomial degree of correction against DUT indication (1: offset and slope)."""


class ConformityConfig(_Strict):
    """Statements of conformity per ILAC-G8:09/2019 (`pipelines.conformity`)."""

    mpe: PositiveFloat | dict[str, PositiveFloat]
    """Maximum permissible error, in the quantity's unit: one number for every quantity, or
    a table by quantity (``{temperature = 0.3, relative_humidity = 2.0}``); a quantity
    missing from the table gets no decision."""
    rule: Literal["simple", "guard_band"] = "simple"
    """simple: pass when |error| <= MPE, else fail (ILAC-G8 4.2.1). guard_band: guard band
    w = U (ILAC-G8 4.2.3, non-binary): pass, conditional pass, conditional fail, fail."""

    @field_validator("mpe")
    @classmethod
    def _mpe(cls, v: float | dict[str, float]) -> float | dict[str, float]:
        if isinstance(v, dict):
            if not v:
                raise ValueError("give one MPE, or a table with at least one quantity")
            for quantity, x in v.items():
                try:
                    check_quantity(quantity)
                except ValueError as exc:
                    raise ValueError(f"{quantity}: {exc}") from None
                if not math.isfinite(x):
                    raise ValueError(f"{quantity}: must be a finite number")
            return v
        return _finite(v)

    def mpe_for(self, quantity: str) -> float | None:
        """The MPE of a quantity, or None when the table leaves it out."""
        if isinstance(self.mpe, dict):
            return self.mpe.get(quantity)
        return self.mpe


def _one_line(v: str | None) -> str | None:
    """Surrounding blanks are dropped: the DCC's notEmptyStringType refuses them."""
    if v is None:
        return None
    v = v.strip()
    if not v or any(unicodedata.category(c) == "Cc" for c in v):
        raise ValueError("must be one non-blank line of text")
    return v


_COUNTRY = re.compile(r"[A-Z]{2}")
_LANGUAGE = re.compile(r"[a-z]{2}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def _country(v: str | None) -> str | None:
    if v is None or _COUNTRY.fullmatch(v):
        return v
    if _COUNTRY.fullmatch(v.upper()):
        raise ValueError(f"an ISO 3166-1 alpha-2 country code is upper case: {v.upper()!r}, not {v!r}")
    raise ValueError(
        f"expected an ISO 3166-1 alpha-2 country code, two upper-case letters such as 'DE', got {v!r}"
    )


PerformanceLocation = Literal["laboratory", "customer", "laboratoryBranch", "customerBranch", "other"]


class IssuedCertificateConfig(_Strict):
    """[certificate]: who calibrated what for whom, where, as certificate.xml states it
    (`pipelines.dcc.Parties`; what ISO/IEC 17025:2017 7.8.2.1 asks of a report).

    The laboratory, the customer (name, city, country) and the responsible person are
    required once the section is given: a certificate that states some of them and "not
    stated" for the others is no better than one that states none.
    """

    identifier: str | None = None
    """The certificate number the laboratory assigns (DCC uniqueIdentifier, printed in the
    report and its QR code); default: the run id.  A run issued again with other results gets
    the next revision, "<number>-R1", ... (`pipelines.certificate.register`)."""
    laboratory: str
    laboratory_code: str | None = None
    """The accreditation code, e.g. "D-K-15070-01-00"."""
    laboratory_email: str | None = None
    laboratory_city: str
    laboratory_country: str
    customer: str
    customer_city: str
    customer_country: str
    responsible_person: str
    """The person who authorises the certificate (dcc:respPerson, main signer)."""
    responsible_role: str | None = None
    """Default "calibration engineer"."""
    country_code: str | None = None
    """The certificate's country (coreData countryCodeISO3166_1); default laboratory_country."""
    language: str | None = None
    """ISO 639-1 code of the certificate's texts (its used and mandatory language, and the
    lang of every text); "en", the default, is the only one remotecal writes."""
    performance_location: PerformanceLocation | None = None
    """Where the calibration was performed; default "laboratory"."""
    register_file: Path | None = None
    """The register of certificate numbers issued (`pipelines.certificate.register`); default
    certificates.db beside the config file."""
    signing: SigningConfig | None = None
    """The main signer's key and certificate: certificate.xml is signed (XAdES) when given."""

    _lines = field_validator(
        "identifier", "laboratory", "laboratory_code", "laboratory_email", "laboratory_city", "customer",
        "customer_city", "responsible_person", "responsible_role",
    )(_one_line)
    _countries = field_validator("laboratory_country", "customer_country", "country_code")(_country)

    @field_validator("laboratory_email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not _EMAIL.fullmatch(v):
            raise ValueError(f"expected an e-mail address such as 'calibration@example.org', got {v!r}")
        return v

    @field_validator("language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        if v is not None and not _LANGUAGE.fullmatch(v):
            raise ValueError(
                f"expected an ISO 639-1 language code, two lower-case letters such as 'en', got {v!r}"
            )
        if v is not None and v != "en":
            # The certificate would declare its English texts to be in another language.
            raise ValueError(f"remotecal writes the certificate's texts in English only: 'en', not {v!r}")
        return v


class ItemConfig(_Strict):
    """[items.<channel>]: the instrument behind one DUT channel, as its dcc:item states it."""

    name: str | None = None
    """Default "<quantity> sensor, channel <channel>"."""
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    """The manufacturer's serial number."""

    _lines = field_validator("name", "manufacturer", "model", "serial")(_one_line)


class PipelineConfig(_Strict):
    run: RunConfig
    source: SourceConfig
    stability: StabilityConfig
    comparisons: list[ComparisonConfig] = Field(min_length=1)
    reference_certificate: dict[str, CertificateConfig] = {}
    references: dict[str, ReferenceConfig] = {}
    """Reference standards with their identity and certificates, by id."""
    uncertainty: UncertaintyConfig
    curve: CurveConfig | None = None
    conformity: ConformityConfig | None = None
    certificate: IssuedCertificateConfig | None = None
    items: dict[str, ItemConfig] = {}
    """By DUT channel name."""
    # The certificate's own sections (`pipelines.certificate.config`).
    cmc: dict[str, list[CmcRange]] = {}
    """The laboratory's CMC by quantity (ILAC-P14): no U is stated below it."""
    conditions: ConditionsConfig = ConditionsConfig()
    report: ReportConfig = ReportConfig()


def _cross_check(cfg: PipelineConfig) -> list[str]:
    problems = []
    certified: dict[str, str] = {name: f"reference_certificate.{name}" for name in cfg.reference_certificate}
    for ref_id, ref in cfg.references.items():
        channel = ref.channel or ref_id
        if channel in certified:
            problems.append(f"references.{ref_id}: channel {channel!r} already has a certificate in "
                            f"[{certified[channel]}]; give each reference channel one")
        certified[channel] = f"references.{ref_id}"
        if ref.certificate_file is not None and ref.certificate_sha256 is None:
            problems.append(f"references.{ref_id}.certificate_sha256: required with certificate_file")
    dew_point_defaults = any(c.dew_point_reference and c.uncertainty is None for c in cfg.comparisons)
    if cfg.uncertainty.temperature_inhomogeneity is not None and not dew_point_defaults:
        problems.append("uncertainty.temperature_inhomogeneity: applies to dew-point comparisons "
                        "(reference_dew_point) only, and none takes [uncertainty]")
    for i, c in enumerate(cfg.comparisons):
        dew = (c.reference_dew_point, c.reference_temperature)
        if c.reference is not None and any(x is not None for x in dew):
            key = "reference_dew_point" if c.reference_dew_point is not None else "reference_temperature"
            problems.append(
                f"comparisons[{i}].{key}: give either reference, or reference_dew_point with "
                "reference_temperature, not both"
            )
            continue
        if c.reference is None:
            if all(x is None for x in dew):
                problems.append(
                    f"comparisons[{i}].reference: required key is missing (or give "
                    "reference_dew_point and reference_temperature)"
                )
                continue
            if c.reference_temperature is None:
                problems.append(f"comparisons[{i}].reference_temperature: required with reference_dew_point")
                continue
            if c.reference_dew_point is None:
                problems.append(f"comparisons[{i}].reference_dew_point: required with reference_temperature")
                continue
            if c.quantity != "relative_humidity":
                problems.append(
                    f"comparisons[{i}].reference_dew_point: a dew-point reference calibrates "
                    f"relative_humidity, not {c.quantity}"
                )
            if c.reference_dew_point == c.reference_temperature:
                problems.append(
                    f"comparisons[{i}].reference_temperature: the same channel as reference_dew_point"
                )
        else:
            for key in ("pressure_pa", "mirror_pressure_pa"):
                if getattr(c, key) is not None:
                    problems.append(f"comparisons[{i}].{key}: applies to a dew-point reference "
                                    "(reference_dew_point) only")
            for key in ("pressure_u_pa", "correlation_dew_point_temperature"):
                if getattr(c, key) != 0.0:
                    problems.append(f"comparisons[{i}].{key}: applies to a dew-point reference "
                                    "(reference_dew_point) only")
            if c.uncertainty is not None and c.uncertainty.temperature_inhomogeneity is not None:
                problems.append(f"comparisons[{i}].uncertainty.temperature_inhomogeneity: applies to a "
                                "dew-point reference (reference_dew_point) only")
        if c.dew_point_reference and c.pressure_pa is None and (
                c.mirror_pressure_pa is not None or c.pressure_u_pa):
            key = "mirror_pressure_pa" if c.mirror_pressure_pa is not None else "pressure_u_pa"
            problems.append(f"comparisons[{i}].{key}: needs pressure_pa (the chamber's pressure)")
        keys = ("reference",) if c.reference is not None else ("reference_dew_point", "reference_temperature")
        for key, name in zip(keys, c.reference_channels, strict=True):
            if name not in certified:
                problems.append(
                    f"comparisons[{i}].{key}: no certificate for {name!r}; add [references.{name}] "
                    f"(or [reference_certificate.{name}]) with its points"
                )
            if c.dut == name:
                problems.append(f"comparisons[{i}].dut: {c.dut!r} is the reference itself")
    for name, value in (cfg.uncertainty.__pydantic_extra__ or {}).items():
        if name == "temperature_inhomogeneity":
            continue
        if not math.isfinite(value):
            problems.append(f"uncertainty.{name}: must be a finite number")
    problems += _check_items(cfg)
    problems += check_cmc(cfg.cmc)
    return problems


def _check_items(cfg: PipelineConfig) -> list[str]:
    """Each [items.<channel>] must be a DUT channel that some comparison's dut matches: a
    typo would otherwise leave a DUT without its serial number on the certificate.  Whether
    the run has readings for it is known only when the run is read (the CLI warns then)."""
    problems = []
    references = {name for c in cfg.comparisons for name in c.reference_channels}
    duts = ", ".join(repr(c.dut) for c in cfg.comparisons)
    for channel, item in cfg.items.items():
        if item == ItemConfig():
            problems.append(f"items.{channel}: give at least one of name, manufacturer, model, serial")
        elif not any(fnmatch.fnmatchcase(channel, c.dut) and channel not in c.reference_channels
                     for c in cfg.comparisons):
            why = ("is a reference channel; items are the DUTs the certificate is for"
                   if channel in references else f"matches no comparison's dut ({duts})")
            problems.append(f"items.{channel}: {channel!r} {why}")
    return problems


def parse_pipeline_config(data: dict[str, Any]) -> PipelineConfig:
    """Validate a parsed PIPELINE.toml; raise ConfigError with one 'key.path: reason' per problem."""
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    problems = _cross_check(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read and validate PIPELINE.toml. A relative `source.path` is relative to the file."""
    p = Path(path)
    cfg = parse_pipeline_config(read_toml(p))
    if cfg.source.path is not None and not cfg.source.path.is_absolute():
        source = cfg.source.model_copy(update={"path": (p.parent / cfg.source.path).resolve()})
        cfg = cfg.model_copy(update={"source": source})
    references = dict(cfg.references)
    problems = []
    for ref_id, ref in cfg.references.items():
        if ref.certificate_file is None:
            continue
        file = ref.certificate_file
        if not file.is_absolute():
            file = p.parent / file
        key = f"references.{ref_id}.certificate_file"
        try:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
        except OSError as exc:
            problems.append(f"{key}: cannot read {file}: {exc.strerror or exc}")
            continue
        if digest != ref.certificate_sha256:
            problems.append(f"{key}: the file's SHA-256 is {digest}, not certificate_sha256 "
                            f"{ref.certificate_sha256}: not the certificate the table was taken from")
        references[ref_id] = ref.model_copy(update={"certificate_file": file.resolve()})
    if problems:
        raise ConfigError(problems)
    if references != cfg.references:
        cfg = cfg.model_copy(update={"references": references})
    return _certificate_paths(cfg, p.parent)


def _certificate_paths(cfg: PipelineConfig, base: Path) -> PipelineConfig:
    """The certificate's files (register, signing key and certificates) relative to ``base``."""
    c = cfg.certificate
    if c is None:
        return cfg

    def at(path: Path) -> Path:
        return path if path.is_absolute() else (base / path).resolve()

    update: dict[str, Any] = {}
    if c.register_file is not None:
        update["register_file"] = at(c.register_file)
    if c.signing is not None:
        s = c.signing
        update["signing"] = s.model_copy(update={
            "key": at(s.key), "certificate": at(s.certificate), "chain": [at(x) for x in s.chain]})
    return cfg.model_copy(update={"certificate": c.model_copy(update=update)}) if update else cfg
