"""The uplink frame: a batch of journal records, packed with `struct`, signed with HMAC-SHA256.

    frame   = body | hmac_sha256(key, body)                          (32 bytes at the end)
    body    = "RCU1" | version u8 | seq u64 | sent_ns i64
            | strings:  count u16, then count x (len u16, utf-8)
            | site u16 | gateway u16                                   (string indices)
            | series:   count u16, then count x (site, gateway, run, channel, quantity,
                        unit, role: 7 x u16 | ntags u8 | ntags x (key u16, value u16))
            | readings: count u32, then count x (series u16 | time_ns i64 | value f64)
            | health:   count u16, then count x (site u16 | gateway u16 | time_ns i64 |
                        nfields u8 | nfields x (name u16 | kind u8 "i"/"f" | 8 bytes))
            | points:   (version 2 only) count u16, then count x (measurement, site, gateway, run:
                        4 x u16 | time_ns i64 | ntags u8 | ntags x (key u16, value u16) |
                        nfields u8 | nfields x (name u16 | kind u8 "i"/"f"/"s"/"b" | 8 bytes:
                        i64, f64, the string's index as i64, 0/1 as i64))

A frame with no `Point` (a remote run's run_event / run_window) is version 1, byte for byte
what it was before points existed; one with points is version 2.  Version 3 (what gateways
send since) carries the epoch of the gateway's uplink state after the header, and always
the points section:

    body v3 = "RCU1" | 3 | seq u64 | sent_ns i64 | epoch u64 | strings ... health | points

The epoch is a random number (1 .. 2**63 - 1) drawn when the gateway's sequence file is
made, that is with a new data_dir: a re-provisioned gateway numbers its frames from 1 again
in a new epoch, and the ingest keeps a replay window per epoch (gateway.ingest.replay).
Versions 1 and 2 decode as epoch 0.  All three decode.

All integers little-endian.  The signature covers the whole body, identity and sequence
number included, so a frame cannot be moved to another gateway's topic or renumbered.

Why not JSON: a gateway's readings repeat the same few tag sets (site, gateway, run,
channel, quantity, unit, role) thousands of times; JSON carries them with every reading,
while the string table and series table carry them once per frame and a reading costs 18
bytes.  `python -m bench.uplink` (frames of 1000 readings, 50 series): the frame is 19 bytes
per reading, JSON 203, line protocol 153.  Gzip would shrink JSON to about 8 (our synthetic
readings are very regular), but JSON + gzip encodes at about 0.28 M readings/s where the
frame encodes and signs at 1.2 M, which matters on a gateway's small CPU, and JSON turns
floats into text and back, where the frame carries their IEEE 754 bits, so every value
arrives bit-exact.  Decoding is one `struct.iter_unpack` over the readings.  Why not
msgpack: it would still repeat the keys and tags per reading unless we built the same
tables on top of it, for a dependency more.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any
from urllib.parse import quote, unquote

from gateway.errors import PayloadError
from gateway.reading import FieldValue, HealthSample, Point, Reading, Record
from gateway.records import HEALTH, READING, RecordRows

__all__ = [
    "EPOCH_VERSION",
    "MAGIC",
    "SEQ_MAX",
    "SIGNATURE_BYTES",
    "Frame",
    "decode_frame",
    "encode_frame",
    "frame_header",
    "readings_topic",
    "sign",
    "split_topic",
    "verify",
]

MAGIC = b"RCU1"
VERSION = 1
POINTS_VERSION = 2
EPOCH_VERSION = 3
"""A frame with the epoch of its gateway's uplink state (and a points section, maybe empty)."""
VERSIONS = (VERSION, POINTS_VERSION, EPOCH_VERSION)
"""A frame that carries `Point`s (section "points")."""
SIGNATURE_BYTES = 32
_HEADER = struct.Struct("<4sBQq")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_SERIES = struct.Struct("<7HB")
_READING = struct.Struct("<Hqd")
_HEALTH = struct.Struct("<HHqB")
_POINT = struct.Struct("<4HqB")
_FIELD = struct.Struct("<Hc8s")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_VALUE = itemgetter(2)
"""The value of an unpacked reading (series, time_ns, value)."""
_F64 = struct.Struct("<d")
_MAX_TABLE = 0xFFFF
SEQ_MAX = 2**63 - 1
"""The highest sequence number: the ingest keeps them as SQLite integers (signed 64 bits)."""


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    sent_ns: int
    site: str
    gateway: str
    records: list[Record]
    invalid: list[tuple[Record, str]] = field(default_factory=list)
    epoch: int = 0
    """The epoch of the gateway's uplink state (0: a frame of version 1 or 2, from before epochs)."""
    """Records of a well-formed frame that cannot be written, each with why (a value that is
    not finite, a reading without a channel, a line break in a tag): a gateway's bug, not a
    forgery (the frame is signed).  The ingest quarantines them one by one, writes the rest."""


_LINE_BREAK = frozenset("\n\r")


def _series_problem(fixed: tuple[str, ...], tags: tuple[tuple[str, str], ...]) -> str | None:
    """Why no reading of a series (site, gateway, run, channel, quantity, unit, role; tags) can
    be written, or None: no channel, or a line break in a tag (InfluxDB cannot write one)."""
    if not fixed[3].strip():
        return "channel is empty"
    for t in (*fixed, *(t for kv in tags for t in kv)):
        if not _LINE_BREAK.isdisjoint(t):
            return f"tag {t!r} has a line break"
    return None


def _fields_problem(what: str, fields: Mapping[str, object]) -> str | None:
    for name, value in fields.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"{what} field {name!r} value is {value}"
        if not _LINE_BREAK.isdisjoint(name):
            return f"{what} field name {name!r} has a line break"
    return None


def readings_topic(prefix: str, site: str, gateway: str) -> str:
    """`{prefix}/{site}/{gateway}/readings`, each id percent-encoded: '/', '+', '#' are topic syntax."""
    return f"{prefix}/{quote(site, safe='')}/{quote(gateway, safe='')}/readings"


def split_topic(prefix: str, topic: str) -> tuple[str, str]:
    """The (site, gateway) of a readings topic; PayloadError unless it is one we would publish."""
    head = prefix + "/"
    parts = topic[len(head):].split("/") if topic.startswith(head) else []
    if len(parts) != 3 or parts[2] != "readings":
        raise PayloadError(f"topic {topic!r} is not {prefix}/SITE/GATEWAY/readings")
    try:
        site, gateway = unquote(parts[0], errors="strict"), unquote(parts[1], errors="strict")
    except UnicodeDecodeError:
        raise PayloadError(f"topic {topic!r}: a percent-encoded level is not UTF-8") from None
    if readings_topic(prefix, site, gateway) != topic:
        raise PayloadError(f"topic {topic!r} is not in canonical percent-encoding")
    return site, gateway


def sign(key: bytes, body: bytes) -> bytes:
    return body + hmac.new(key, body, hashlib.sha256).digest()


def verify(key: bytes, frame: bytes) -> bytes:
    """The body of a frame whose signature is right under `key`, else PayloadError."""
    if len(frame) < _HEADER.size + SIGNATURE_BYTES:
        raise PayloadError("frame too short to be signed")
    body, mac = frame[:-SIGNATURE_BYTES], frame[-SIGNATURE_BYTES:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise PayloadError("bad signature")
    return body


def frame_header(frame: bytes) -> tuple[int, int]:
    """(seq, sent_ns) of a frame, before its signature is checked; PayloadError if not a frame."""
    if len(frame) < _HEADER.size + SIGNATURE_BYTES:
        raise PayloadError(f"not a frame ({len(frame)} bytes)")
    magic, version, seq, sent_ns = _HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise PayloadError("not a frame (bad magic)")
    if version not in VERSIONS:
        raise PayloadError(f"frame version {version} is not one of {', '.join(map(str, VERSIONS))}")
    if seq > SEQ_MAX:
        raise PayloadError(f"sequence number {seq} is out of range (at most 2**63 - 1)")
    return seq, sent_ns


class _Strings:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.index)
            if i > _MAX_TABLE:
                raise ValueError("more than 65535 distinct strings in one frame")
        return i


def encode_frame(seq: int, sent_ns: int, site: str, gateway: str, records: Sequence[Record],
                 epoch: int = 0) -> bytes:
    """The unsigned body of a frame (see the module docstring); `sign` it before sending.
    With an `epoch` (1 .. 2**63 - 1) it is a version 3 frame, without one version 1 or 2.

    A journal batch (`RecordRows`) is packed from its rows: its series ids give the frame's
    series table directly, with no `Reading` made.

    Raises ValueError when the batch does not fit the format (more than 65535 series), and
    struct.error when one record does not (a string over 65535 bytes, over 255 tags).
    """
    if not 0 <= seq <= SEQ_MAX:
        raise ValueError(f"sequence number {seq} is out of range")
    if not 0 <= epoch <= SEQ_MAX:
        raise ValueError(f"epoch {epoch} is out of range")
    strings = _Strings()
    series: dict[object, int] = {}
    series_parts: list[bytes] = []
    readings: list[bytes] = []
    health: list[bytes] = []
    points: list[bytes] = []

    def add_series(key: object, fixed: tuple[str, ...], tags: tuple[tuple[str, str], ...]) -> int:
        sid = series[key] = len(series)
        if sid > _MAX_TABLE:
            raise ValueError("more than 65535 series in one frame")
        part = [_SERIES.pack(*map(strings, fixed), len(tags))]
        part += [_U16.pack(strings(k)) + _U16.pack(strings(v)) for k, v in tags]
        series_parts.append(b"".join(part))
        return sid

    if type(records) is RecordRows:
        table = records.series
        for row in records.rows:
            _, jsid, ts, value, _ = row
            sid = series.get(jsid)
            if sid is None:
                s = table[jsid]
                if s.measurement != READING:
                    rec = records.record(row)
                    if s.measurement == HEALTH:
                        health.append(_health_part(rec, strings))
                    else:
                        points.append(_point_part(rec, strings))
                    continue
                sid = add_series(jsid, (s.site, s.gateway, s.run, s.channel, s.quantity, s.unit, s.role),
                                 s.tags)
            readings.append(_READING.pack(sid, ts, value))
    else:
        for r in records:
            if isinstance(r, Reading):
                key = r.series_key()
                sid = series.get(key)
                if sid is None:
                    sid = add_series(key, (r.site, r.gateway, r.run, r.channel, r.quantity, r.unit, r.role),
                                     r.tags)
                readings.append(_READING.pack(sid, r.time_ns, r.value))
            elif isinstance(r, Point):
                points.append(_point_part(r, strings))
            else:
                health.append(_health_part(r, strings))
    if len(health) > _MAX_TABLE or len(points) > _MAX_TABLE:
        raise ValueError("more than 65535 health samples or points in one frame")
    # The string table is complete only now: points add their strings too.
    ident = _U16.pack(strings(site)) + _U16.pack(strings(gateway))
    table_parts = [_U16.pack(len(strings.index))]
    for text in strings.index:
        b = text.encode()
        table_parts += [_U16.pack(len(b)), b]
    tail = [_U16.pack(len(points)), *points] if points or epoch else []
    if epoch:
        header = _HEADER.pack(MAGIC, EPOCH_VERSION, seq, sent_ns) + _U64.pack(epoch)
    else:
        header = _HEADER.pack(MAGIC, POINTS_VERSION if points else VERSION, seq, sent_ns)
    return b"".join([
        header, *table_parts, ident,
        _U16.pack(len(series_parts)), *series_parts,
        _U32.pack(len(readings)), *readings,
        _U16.pack(len(health)), *health, *tail,
    ])


def _health_part(h: Record, strings: _Strings) -> bytes:
    assert isinstance(h, HealthSample)
    part = [_HEALTH.pack(strings(h.site), strings(h.gateway), h.time_ns, len(h.fields))]
    for name, value in h.fields.items():
        if isinstance(value, int):
            part.append(_FIELD.pack(strings(name), b"i", _I64.pack(value)))
        else:
            part.append(_FIELD.pack(strings(name), b"f", _F64.pack(value)))
    return b"".join(part)


def _point_part(p: Record, strings: _Strings) -> bytes:
    assert isinstance(p, Point)
    part = [_POINT.pack(strings(p.measurement), strings(p.site), strings(p.gateway), strings(p.run),
                        p.time_ns, len(p.tags))]
    part += [_U16.pack(strings(k)) + _U16.pack(strings(v)) for k, v in p.tags]
    part.append(_U8.pack(len(p.fields)))
    for name, value in p.fields.items():
        if isinstance(value, bool):
            part.append(_FIELD.pack(strings(name), b"b", _I64.pack(int(value))))
        elif isinstance(value, int):
            part.append(_FIELD.pack(strings(name), b"i", _I64.pack(value)))
        elif isinstance(value, str):
            part.append(_FIELD.pack(strings(name), b"s", _I64.pack(strings(value))))
        else:
            part.append(_FIELD.pack(strings(name), b"f", _F64.pack(value)))
    return b"".join(part)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos

    def take(self, s: struct.Struct) -> tuple[Any, ...]:
        out = s.unpack_from(self.buf, self.pos)
        self.pos += s.size
        return out

    def bytes(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise struct.error("truncated")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def decode_frame(body: bytes) -> Frame:
    """A verified body back into records; PayloadError("malformed frame: ...") on any flaw of
    the format.  A record that decodes but cannot be written is in `Frame.invalid`, not in
    `records`: one bad reading never costs its frame."""
    try:
        return _decode(body)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"malformed frame: {exc}") from None


def _decode(body: bytes) -> Frame:
    rd = _Reader(body, 0)
    magic, version, seq, sent_ns = rd.take(_HEADER)
    if magic != MAGIC or version not in VERSIONS:
        raise ValueError("bad magic or version")
    if seq > SEQ_MAX:
        raise ValueError(f"sequence number {seq} is out of range (at most 2**63 - 1)")
    epoch = rd.take(_U64)[0] if version == EPOCH_VERSION else 0
    if epoch > SEQ_MAX:
        raise ValueError(f"epoch {epoch} is out of range (at most 2**63 - 1)")
    (n,) = rd.take(_U16)
    strings = [rd.bytes(rd.take(_U16)[0]).decode() for _ in range(n)]
    site_i, gw_i = rd.take(_U16) + rd.take(_U16)
    site, gateway = strings[site_i], strings[gw_i]
    (n,) = rd.take(_U16)
    series: list[tuple[str, ...]] = []
    tags: list[tuple[tuple[str, str], ...]] = []
    problems: list[str | None] = []
    broken = any("\n" in t or "\r" in t for t in strings)
    for _ in range(n):
        *ids, ntags = rd.take(_SERIES)
        series.append(tuple(strings[i] for i in ids))
        pairs = [rd.take(_U16) + rd.take(_U16) for _ in range(ntags)]
        tags.append(tuple((strings[k], strings[v]) for k, v in pairs))
        # The checks for line breaks only where the string table has one (hardly ever).
        good = series[-1][3].strip() and not broken
        problems.append(None if good else _series_problem(series[-1], tags[-1]))
    (n,) = rd.take(_U32)
    raw = rd.bytes(n * _READING.size)
    unpacked = list(_READING.iter_unpack(raw))
    total = sum(map(_VALUE, unpacked))  # not finite if a value is not (or if the sum overflows)
    invalid: list[tuple[Record, str]] = []
    if total - total == 0.0 and not any(problems):  # the common case: every reading is good
        records: list[Record] = [Reading(*series[sid], value, ts, tags[sid])  # type: ignore[call-arg]
                                 for sid, ts, value in unpacked]
    else:
        records = []
        for sid, ts, value in unpacked:
            r = Reading(*series[sid], value, ts, tags[sid])  # type: ignore[call-arg]
            why = problems[sid] or (None if value - value == 0.0 else f"value is {value}")  # finite?
            if why is None:
                records.append(r)
            else:
                invalid.append((r, why))
    (n,) = rd.take(_U16)
    for _ in range(n):
        s_i, g_i, ts, nfields = rd.take(_HEALTH)
        fields: dict[str, float | int] = {}
        for _ in range(nfields):
            name_i, kind, raw8 = rd.take(_FIELD)
            if kind == b"i":
                fields[strings[name_i]] = _I64.unpack(raw8)[0]
            elif kind == b"f":
                fields[strings[name_i]] = _F64.unpack(raw8)[0]
            else:
                raise ValueError(f"health field kind {kind!r}")
        h = HealthSample(strings[s_i], strings[g_i], ts, fields)
        why = _fields_problem("health", fields)
        if why is None:
            records.append(h)
        else:
            invalid.append((h, why))
    if version != VERSION:
        (n,) = rd.take(_U16)
        for _ in range(n):
            m_i, s_i, g_i, r_i, ts, ntags = rd.take(_POINT)
            pairs = [rd.take(_U16) + rd.take(_U16) for _ in range(ntags)]
            (nfields,) = rd.take(_U8)
            values: dict[str, FieldValue] = {}
            for _ in range(nfields):
                name_i, kind, raw8 = rd.take(_FIELD)
                (i64,) = _I64.unpack(raw8)
                if kind == b"i":
                    values[strings[name_i]] = i64
                elif kind == b"f":
                    values[strings[name_i]] = _F64.unpack(raw8)[0]
                elif kind == b"s":
                    if not 0 <= i64 < len(strings):
                        raise ValueError(f"string index {i64} out of range")
                    values[strings[name_i]] = strings[i64]
                elif kind == b"b":
                    values[strings[name_i]] = bool(i64)
                else:
                    raise ValueError(f"point field kind {kind!r}")
            point = Point(strings[m_i], strings[s_i], strings[g_i], strings[r_i], ts, values,
                          tuple((strings[k], strings[v]) for k, v in pairs))
            why = _fields_problem(point.measurement, values)
            if why is None:
                records.append(point)
            else:
                invalid.append((point, why))
    if rd.pos != len(body):
        raise ValueError(f"{len(body) - rd.pos} stray bytes at the end")
    return Frame(seq, sent_ns, site, gateway, records, invalid, epoch)
