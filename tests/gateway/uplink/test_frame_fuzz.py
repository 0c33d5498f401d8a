"""Fuzzing the uplink frame decoder and the ingest's checks with `hypothesis` (issue 11, items 1 and 9).

Whatever bytes arrive, on whatever topic, the decoder returns a frame or raises PayloadError,
and the verifier returns a frame or raises Rejection: no other exception, which would end the
ingest and make it crash-loop on the redelivered message.  Four properties:

    random bytes             decode_frame / frame_header / split_topic
    mutated real frames      bytes overwritten, cut, inserted - then decoded
    signed mutated frames    the same, re-signed, so that they pass the signature and reach
                             the decoder through FrameVerifier.check, on any topic
    round trip               any readings the encoder takes come back equal, bit for bit (those
                             that cannot be written - no channel - set apart in `invalid`)

Each property runs a fixed number of examples, `EXAMPLES` (x the factor of its decorator);
REMOTECAL_FUZZ_EXAMPLES=N runs N instead, for a long fuzzing session.  A failing example is
printed, and `--hypothesis-seed` replays a run.  No example database is written into the tree.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gateway.errors import PayloadError
from gateway.ingest.verify import FrameVerifier, Rejection
from gateway.keys import UplinkKey
from gateway.reading import HealthSample, Reading, Record
from gateway.sinks.mqtt.frame import (
    SEQ_MAX,
    Frame,
    decode_frame,
    encode_frame,
    frame_header,
    readings_topic,
    sign,
    split_topic,
)

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not

PREFIX = "remotecal/v1"
SITE, GW = "lab 1", "gw,01"
KEY = bytes(range(32))
VERIFIER = FrameVerifier(PREFIX, {(SITE, GW): UplinkKey(SITE, GW, KEY)})
TOPIC = readings_topic(PREFIX, SITE, GW)

EXAMPLES = int(os.environ.get("REMOTECAL_FUZZ_EXAMPLES", "300"))


def fuzz(factor: int = 1) -> settings:
    return settings(max_examples=EXAMPLES * factor, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


text = st.text(max_size=12)
int64 = st.integers(-(2**63), 2**63 - 1)
u64 = st.one_of(st.integers(0, SEQ_MAX), st.integers(SEQ_MAX + 1, 2**64 - 1))  # both halves as often
readings = st.builds(
    Reading, st.just(SITE), st.just(GW), text, text, text, text, text,
    st.floats(allow_nan=False, allow_infinity=False), int64,
    st.lists(st.tuples(text, text), max_size=3).map(tuple))
health = st.builds(
    HealthSample, st.just(SITE), st.just(GW), int64,
    st.dictionaries(text, st.one_of(int64, st.floats(allow_nan=False, allow_infinity=False)), max_size=4))
records = st.lists(st.one_of(readings, readings, health), max_size=8)


def _valid(frame: Frame) -> None:
    """What the ingest relies on in a frame the decoder returns."""
    assert 0 <= frame.seq <= SEQ_MAX and 0 <= frame.epoch <= SEQ_MAX
    for r in frame.records:
        if isinstance(r, Reading):
            assert math.isfinite(r.value)


def _decode(body: bytes) -> None:
    with contextlib.suppress(PayloadError):
        _valid(decode_frame(body))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real frame body with a few bytes overwritten, a piece cut out, bytes inserted, or
    another sequence number (any u64) in its header."""
    body = bytearray(encode_frame(draw(st.integers(0, SEQ_MAX)), draw(int64), SITE, GW, draw(records),
                                  epoch=draw(st.integers(0, SEQ_MAX))))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["set", "cut", "insert", "truncate", "seq"]))
        at = draw(st.integers(0, len(body)))
        if how == "seq" and len(body) >= 29:
            struct.pack_into("<Q", body, draw(st.sampled_from([5, 21])), draw(u64))  # seq, or a v3 epoch
        elif how == "set" and at < len(body):
            body[at] = draw(st.integers(0, 255))
        elif how == "cut":
            del body[at:at + draw(st.integers(1, 16))]
        elif how == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del body[at:]
    return bytes(body)


@fuzz(4)
@given(st.binary(max_size=600))
def test_random_bytes_decode_or_raise_payload_error(data: bytes) -> None:
    _decode(data)
    with contextlib.suppress(PayloadError):
        frame_header(data)
    # a random header in front of the magic, so that the decoder gets past its first check
    _decode(b"RCU1\x01" + data)


@fuzz()
@given(mutated())
def test_mutated_frames_decode_or_raise_payload_error(body: bytes) -> None:
    _decode(body)


# a topic level: text, and percent escapes of any byte (UTF-8 or not)
level = st.lists(st.one_of(st.text(max_size=4), st.integers(0, 255).map(lambda b: f"%{b:02X}")),
                 max_size=6).map("".join)
topics = st.one_of(st.just(TOPIC), st.text(max_size=60),
                   st.builds(lambda s, g: f"{PREFIX}/{s}/{g}/readings", level, level))


@fuzz()
@given(topics, st.one_of(mutated(), st.binary(max_size=200)))
def test_signed_mutated_frames_on_any_topic_are_a_frame_or_a_rejection(topic: str, body: bytes) -> None:
    try:
        _valid(VERIFIER.check(topic, sign(KEY, body)))
    except Rejection as exc:
        assert exc.kind in {"malformed", "unknown gateway", "bad signature", "foreign"}
    with contextlib.suppress(PayloadError):
        split_topic(PREFIX, topic)


@fuzz()
@given(st.integers(0, SEQ_MAX), int64, records, st.one_of(st.just(0), st.integers(1, SEQ_MAX)))
def test_whatever_the_encoder_takes_comes_back_equal(seq: int, sent_ns: int, recs: list[Record], epoch: int) -> None:
    try:
        body = encode_frame(seq, sent_ns, SITE, GW, recs, epoch=epoch)
    except (ValueError, struct.error):
        return  # does not fit the format: the uplink sends such a record alone, or drops it
    frame = VERIFIER.check(TOPIC, sign(KEY, body))
    assert (frame.seq, frame.sent_ns, frame.epoch) == (seq, sent_ns, epoch)
    # readings first, then health samples, each in its order (see encode_frame)
    want = [r for r in recs if isinstance(r, Reading)] + [r for r in recs if isinstance(r, HealthSample)]
    # a reading without a channel or with a line break in a tag is set apart, with its reason
    invalid = [r for r, _ in frame.invalid]
    assert frame.records == [r for r in want if r not in invalid]
    assert all(r in want for r in invalid)
    assert all("channel is empty" in why or "line break" in why for _, why in frame.invalid)
    bits = [struct.pack("<d", r.value) for r in frame.records if isinstance(r, Reading)]
    assert bits == [struct.pack("<d", r.value) for r in recs if isinstance(r, Reading) and r not in invalid]
