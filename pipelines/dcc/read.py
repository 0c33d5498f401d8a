"""Reading a certificate back: its identifier, its content hash, and its results by refType
(never by names or positions), as a customer's software would."""

from __future__ import annotations

import hashlib
import math
from copy import deepcopy

from lxml import etree

from pipelines.dcc.common import DS_NS, NS, DccError
from pipelines.dcc.validate import parse_xml

__all__ = ["canonical_content", "certificate_identifier", "content_sha256", "read_corrections"]


def certificate_identifier(xml_bytes: bytes) -> str:
    """The coreData uniqueIdentifier of a certificate."""
    found = parse_xml(xml_bytes).findtext("dcc:administrativeData/dcc:coreData/dcc:uniqueIdentifier",
                                          namespaces=NS)
    if not found:
        raise DccError("certificate has no coreData/uniqueIdentifier")
    return found


def canonical_content(xml_bytes: bytes) -> bytes:
    """The certificate without its signatures, canonicalized (exclusive XML C14N 1.0, no
    comments): the same bytes before and after `pipelines.dcc.signature.sign_dcc`, because an
    enveloped signature is appended to the root and removing it restores the document."""
    doc = deepcopy(parse_xml(xml_bytes))
    for sig in doc.findall(f"{{{DS_NS}}}Signature"):
        doc.remove(sig)  # lxml drops the element's tail with it
    return etree.tostring(doc, method="c14n", exclusive=True, with_comments=False)


def content_sha256(xml_bytes: bytes) -> str:
    """SHA-256 (hex) of `canonical_content`: what the QR code of the report and of the printable
    certificate carries, and what a revision names as the certificate it replaces."""
    return hashlib.sha256(canonical_content(xml_bytes)).hexdigest()


def read_corrections(xml_bytes: bytes) -> dict[str, list[dict[str, float]]]:
    """Per DUT channel, per point: point, setpoint, reference_mean, dut_mean, error, correction,
    U, k, n, and (from the budget) u_combined and dof_eff, read back by refType."""
    doc = parse_xml(xml_bytes)
    out: dict[str, list[dict[str, float]]] = {}

    def values(parent: etree._Element, path: str) -> list[float]:
        text = parent.findtext(path, namespaces=NS)
        if text is None:
            raise DccError(f"certificate has no {path}")
        return [float(x) for x in text.split()]

    def q(ref_type: str, rest: str = "si:realListXMLList/si:valueXMLList") -> str:
        return f"dcc:quantity[@refType='{ref_type}']/{rest}"

    def real_or_inf(parent: etree._Element, ref_type: str) -> float:
        el = parent.find(f"dcc:quantity[@refType='{ref_type}']", NS)
        if el is None:
            raise DccError(f"certificate has no quantity {ref_type}")
        value = el.findtext("si:real/si:value", namespaces=NS)
        return math.inf if value is None else float(value)

    mu = "si:realListXMLList/si:measurementUncertaintyUnivariateXMLList/si:expandedMUXMLList/"
    for mr in doc.iterfind("dcc:measurementResults/dcc:measurementResult", NS):
        res = mr.find("dcc:results/dcc:result[@refType='remotecal_calibrationResults']", NS)
        if res is None:
            continue
        lst = res.find("dcc:data/dcc:list", NS)
        if lst is None:
            raise DccError("certificate has a calibration result without its list")
        item = mr.get("refId")
        channel = doc.xpath(
            "dcc:administrativeData/dcc:items/dcc:item[@id=$id]/dcc:identifications/dcc:identification"
            "[dcc:issuer='calibrationLaboratory']/dcc:value/text()", namespaces=NS, id=item)
        ref = lst.find("dcc:quantity[@refType='basic_referenceValue']", NS)
        if ref is None:
            raise DccError("certificate has no basic_referenceValue")
        columns = {
            "point": values(lst, q("remotecal_point", "dcc:charsXMLList")),
            "setpoint": values(ref, "dcc:measurementMetaData/dcc:metaData[@refType='basic_calibrationValue']"
                                    "/dcc:data/dcc:quantity/si:realListXMLList/si:valueXMLList"),
            "reference_mean": values(lst, q("basic_referenceValue")),
            "dut_mean": values(lst, q("basic_measuredValue")),
            "error": values(lst, q("basic_measurementError")),
            "correction": values(lst, q("remotecal_correction")),
            "U": values(lst, q("basic_measurementError", mu + "si:valueExpandedMUXMLList")),
            "k": values(lst, q("basic_measurementError", mu + "si:coverageFactorXMLList")),
            "n": values(lst, q("remotecal_n")),
        }
        rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        budgets = mr.findall("dcc:results/dcc:result[@refType='remotecal_uncertaintyBudgets']"
                             "/dcc:data/dcc:list",
                             NS)
        for row, budget in zip(rows, budgets, strict=True):
            row["u_combined"] = values(budget, q("remotecal_combinedUncertainty", "si:real/si:value"))[0]
            row["dof_eff"] = real_or_inf(budget, "remotecal_dofEff")
        out[str(channel[0]) if channel else str(item)] = rows
    return out
