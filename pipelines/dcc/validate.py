"""Validation of a certificate against PTB's DCC 3.3.0 schema, shipped in ``schemas/`` beside
this module (package data; licences and origins in ``schemas/README.md``), so that a
certificate is validated wherever remotecal is installed, with no network."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from lxml import etree

from pipelines.dcc.common import DccError

__all__ = ["parse_xml", "schema_dir", "validate_dcc"]

_QUDT_URL = "https://www.ptb.de/si/v2.2.1/qudt/quantitykind.xsd"


def schema_dir() -> Path:
    """The folder holding dcc.xsd and what it imports (inside the installed package)."""
    return Path(__file__).resolve().parent / "schemas"


class _LocalSchemas(etree.Resolver):
    """Maps the one absolute import in D-SI (the QUDT stand-in) to the local copy; everything
    else dcc.xsd imports is relative already.  The parser never reaches the network."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:
        if system_url == _QUDT_URL:
            return self.resolve_filename(str(self.folder / "si" / "qudt" / "quantitykind.xsd"), context)
        return None


@lru_cache(maxsize=2)
def _schema(folder: Path) -> etree.XMLSchema:
    xsd = folder / "dcc.xsd"
    if not xsd.is_file():
        raise DccError(f"the DCC schema is not at {xsd}: the installation of remotecal is incomplete")
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(_LocalSchemas(folder))
    try:
        return etree.XMLSchema(etree.parse(str(xsd), parser))
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise DccError(f"cannot load the DCC schema {xsd}: {exc}") from None


def parse_xml(xml_bytes: bytes, what: str = "certificate") -> etree._Element:
    """Parse a certificate safely (no network, no entities); DccError when not well-formed."""
    try:
        return etree.fromstring(xml_bytes, etree.XMLParser(no_network=True, resolve_entities=False,
                                                           huge_tree=False))
    except etree.XMLSyntaxError as exc:
        raise DccError(f"{what} is not well-formed XML: {exc}") from None


def validate_dcc(xml_bytes: bytes, schema_folder: Path | None = None) -> None:
    """Raise DccError listing the first problems (line: message) unless ``xml_bytes`` is a
    valid DCC 3.3.0 (a signed one too: ds:Signature is part of the schema)."""
    schema = _schema((schema_folder or schema_dir()).resolve())
    doc = parse_xml(xml_bytes)
    if not schema.validate(doc):
        errors = [f"line {e.line}: {e.message}" for e in schema.error_log]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise DccError("certificate does not validate against DCC 3.3.0: " + "; ".join(errors[:5]) + more)
