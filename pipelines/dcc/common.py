"""What the DCC modules share: namespaces, the error, D-SI units."""

from __future__ import annotations

from gateway.errors import RemotecalError

__all__ = [
    "DCC_NS",
    "DS_NS",
    "NS",
    "SCHEMA_VERSION",
    "SI_NS",
    "XADES_NS",
    "DccError",
    "dsi_difference_unit",
    "dsi_unit",
]

DCC_NS = "https://ptb.de/dcc"
SI_NS = "https://ptb.de/si"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
SCHEMA_VERSION = "3.3.0"
NS = {"dcc": DCC_NS, "si": SI_NS, "ds": DS_NS, "xades": XADES_NS}

_DSI_UNITS = {
    "degC": r"\degreecelsius",
    "K": r"\kelvin",
    "%rh": r"\percent",
    "Pa": r"\pascal",
    "hPa": r"\hecto\pascal",
    "kPa": r"\kilo\pascal",
    "bar": r"\bar",
    "mbar": r"\milli\bar",
    "g/m3": r"\gram\metre\tothe{-3}",
    "g/kg": r"\gram\kilogram\tothe{-1}",
    "ohm": r"\ohm",
    "V": r"\volt",
    "mV": r"\milli\volt",
    "A": r"\ampere",
    "mA": r"\milli\ampere",
    "1": r"\one",
}


class DccError(RemotecalError):
    """A certificate cannot be built, read, signed or verified, or does not validate."""


def dsi_unit(unit: str) -> str:
    """The D-SI spelling of one of remotecal's units (gateway.quantities)."""
    try:
        return _DSI_UNITS[unit]
    except KeyError:
        raise DccError(
            f"unit {unit!r} has no D-SI spelling; a DCC needs SI units "
            f"({', '.join(sorted(_DSI_UNITS))})"
        ) from None


def dsi_difference_unit(unit: str) -> str:
    """The D-SI unit of a difference of two values in ``unit``: a temperature difference is
    in kelvin (a Celsius temperature is not; PTB's good-practice DCCs state errors and
    uncertainties of temperature in \\kelvin); other units are their own."""
    return r"\kelvin" if unit in ("degC", "K") else dsi_unit(unit)
