"""certificate.xml, PTB's Digital Calibration Certificate (DCC 3.3.0), in modules along its
three jobs plus signing:

- `pipelines.dcc.write`: build a certificate from a run's `Certificate` content;
- `pipelines.dcc.read`: read one back (identifier, content hash, results by refType);
- `pipelines.dcc.validate`: validate against the schemas shipped in ``schemas/``;
- `pipelines.dcc.signature`: sign (enveloped XAdES) and verify the signature.
"""

from pipelines.dcc.common import (
    DCC_NS,
    DS_NS,
    NS,
    SCHEMA_VERSION,
    SI_NS,
    DccError,
    dsi_difference_unit,
    dsi_unit,
)
from pipelines.dcc.read import canonical_content, certificate_identifier, content_sha256, read_corrections
from pipelines.dcc.validate import schema_dir, validate_dcc
from pipelines.dcc.write import build_dcc

__all__ = [
    "DCC_NS",
    "DS_NS",
    "NS",
    "SCHEMA_VERSION",
    "SI_NS",
    "DccError",
    "build_dcc",
    "canonical_content",
    "certificate_identifier",
    "content_sha256",
    "dsi_difference_unit",
    "dsi_unit",
    "read_corrections",
    "schema_dir",
    "validate_dcc",
]
