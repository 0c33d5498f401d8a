"""The pipeline config, PIPELINE.toml (SPEC section 7): loaded, validated, cross-checked once.

    [run]                      id, optional start/end (ISO 8601 with a zone, or TOML datetimes)
    [source]                   kind = "influxdb" (url, api = "v1", database, optional
                               retention_policy, username/password or token) | "local" (path)
    [stability]                window_s, max_std, max_slope_per_min, min_duration_s
    [[comparisons]]            dut (a channel name or a glob), reference, quantity
    [reference_certificate.<channel>]
                               points = [[indication, correction, U, k], ...], extrapolate = false
    [uncertainty]              reference_drift, dut_resolution, chamber_inhomogeneity
                               (half-widths or a resolution, in the quantity's unit), and any
                               further `name = half_width`: a rectangular Type B contribution

Every problem is reported as one line with its key path, like the site config
(`gateway.config.format_validation_error`), e.g.
`reference_certificate.ref-t.points[2]: indications must increase (20.0 after 30.0)`.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from gateway.config import format_validation_error
from gateway.config_types import Secret
from gateway.errors import ConfigError
from gateway.quantities import check_quantity

__all__ = [
    "CertificateConfig",
    "ComparisonConfig",
    "PipelineConfig",
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
        parts = urlsplit(v)
        if "@" in parts.netloc:
            raise ValueError("credentials do not belong in the URL; use username/password or token")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {v!r}")
        if parts.query or parts.fragment:
            raise ValueError("the URL takes no query or fragment; use database")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port in {v!r}: {exc}") from None
        return v.rstrip("/")

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
        username = info.data.get("username")
        if v is None and username:
            raise ValueError("password is required with username")
        if v is not None and not username and "username" in info.data:
            raise ValueError("password is given without username")
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: Secret | None, info: ValidationInfo) -> Secret | None:
        if v is not None and not v.get():
            raise ValueError("token is empty")
        if v is not None and info.data.get("username"):
            raise ValueError("token and username/password exclude each other; give one")
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
    reference: str = Field(min_length=1)
    quantity: str
    stability: StabilityConfig | None = None
    """Criteria for this comparison's reference (e.g. in %rh for a hygrometer); default [stability]."""
    uncertainty: UncertaintyConfig | None = None
    """Type B contributions in this comparison's unit; default [uncertainty]."""

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, v: str) -> str:
        return check_quantity(v)


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

    @field_validator("points", mode="before")
    @classmethod
    def _shape(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, row in enumerate(v):
                if not isinstance(row, list | tuple) or len(row) != 4:
                    raise ValueError(f"[{i}]: expected [indication, correction, U, k], got {row!r}")
                if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in row):
                    raise ValueError(f"[{i}]: expected four numbers [indication, correction, U, k]")
        return v

    @field_validator("points")
    @classmethod
    def _points(cls, v: list[CertificatePoint]) -> list[CertificatePoint]:
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

    _finite = field_validator("reference_drift", "dut_resolution", "chamber_inhomogeneity")(_finite)

    @property
    def extra_half_widths(self) -> dict[str, float]:
        """The further rectangular contributions, in file order."""
        return dict(self.__pydantic_extra__ or {})


ComparisonConfig.model_rebuild()


class PipelineConfig(_Strict):
    run: RunConfig
    source: SourceConfig
    stability: StabilityConfig
    comparisons: list[ComparisonConfig] = Field(min_length=1)
    reference_certificate: dict[str, CertificateConfig] = {}
    uncertainty: UncertaintyConfig

    def certificate(self, channel: str) -> CertificateConfig:
        return self.reference_certificate[channel]


def _cross_check(cfg: PipelineConfig) -> list[str]:
    problems = []
    for i, c in enumerate(cfg.comparisons):
        if c.reference not in cfg.reference_certificate:
            problems.append(
                f"comparisons[{i}].reference: no certificate for {c.reference!r}; "
                f"add [reference_certificate.{c.reference}] with its points"
            )
        if c.dut == c.reference:
            problems.append(f"comparisons[{i}].dut: {c.dut!r} is the reference itself")
    for name, value in (cfg.uncertainty.__pydantic_extra__ or {}).items():
        if not math.isfinite(value):
            problems.append(f"uncertainty.{name}: must be a finite number")
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
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: the config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    cfg = parse_pipeline_config(data)
    if cfg.source.path is not None and not cfg.source.path.is_absolute():
        source = cfg.source.model_copy(update={"path": (p.parent / cfg.source.path).resolve()})
        cfg = cfg.model_copy(update={"source": source})
    return cfg
