"""The ingest's checks: which frames are refused, with which reason; the replay window."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ingest.replay import ReplayGuard
from gateway.ingest.verify import FrameVerifier, Rejection
from gateway.keys import UplinkKey
from gateway.reading import Reading
from gateway.sinks.mqtt.frame import encode_frame, readings_topic, sign

PREFIX = "remotecal/v1"
A = UplinkKey("site A", "gw-a", b"a" * 32)
B = UplinkKey("site B", "gw-b", b"b" * 32)
VERIFIER = FrameVerifier(PREFIX, {("site A", "gw-a"): A, ("site B", "gw-b"): B})


def reading(site: str, gw: str, i: int = 0) -> Reading:
    return Reading(site, gw, "R", "c", "temperature", "degC", "dut", 20.0 + i, 10**18 + i)


def frame(key: UplinkKey, site: str, gw: str, seq: int = 1, recs: list[Reading] | None = None) -> bytes:
    return sign(key.secret, encode_frame(seq, 0, site, gw, recs or [reading(site, gw)]))


def topic(site: str, gw: str) -> str:
    return readings_topic(PREFIX, site, gw)


def test_a_good_frame_passes() -> None:
    f = VERIFIER.check(topic("site A", "gw-a"), frame(A, "site A", "gw-a", 7))
    assert (f.seq, f.site, len(f.records)) == (7, "site A", 1)


@pytest.mark.parametrize("case,kind", [
    ("tampered", "bad signature"),
    ("unsigned", "bad signature"),
    ("foreign key on B's topic", "bad signature"),
    ("A's key, A's identity, B's topic", "bad signature"),
    ("B's record in A's frame", "foreign"),
    ("unknown gateway", "unknown gateway"),
    ("json", "malformed"),
    ("bad topic", "malformed"),
])
def test_refused_frames(case: str, kind: str) -> None:
    t, payload = topic("site A", "gw-a"), frame(A, "site A", "gw-a")
    if case == "tampered":
        payload = payload.replace(b"site A", b"site Z")
    elif case == "unsigned":
        payload = encode_frame(1, 0, "site A", "gw-a", [reading("site A", "gw-a")]) + b"\0" * 32
    elif case == "foreign key on B's topic":
        t, payload = topic("site B", "gw-b"), frame(A, "site B", "gw-b")
    elif case == "A's key, A's identity, B's topic":
        t = topic("site B", "gw-b")
    elif case == "B's record in A's frame":
        payload = frame(A, "site A", "gw-a", recs=[reading("site A", "gw-a"), reading("site B", "gw-b")])
    elif case == "unknown gateway":
        t = topic("site C", "gw-c")
    elif case == "json":
        payload = b'{"t": 21.5, "seq": 1, "sig": "00"}'
    elif case == "bad topic":
        t = PREFIX + "/site A/gw-a/readings"
    with pytest.raises(Rejection) as err:
        VERIFIER.check(t, payload)
    assert err.value.kind == kind


async def test_replay_window_accepts_out_of_order_refuses_duplicates_and_old(tmp_path: Path) -> None:
    g = ReplayGuard(tmp_path / "replay.db", window=100)
    g.open()
    for seq in (5, 3, 200, 150, 101):  # out of order: all legitimate
        assert g.check("s", "g", seq) is None
        g.reserve("s", "g", seq)
        assert (g.check("s", "g", seq) or "").startswith("replayed")  # a copy while in flight
        g.accept("s", "g", seq)
    assert (g.check("s", "g", 150) or "").startswith("replayed")
    assert (g.check("s", "g", 100) or "").startswith("too old")
    assert g.check("s", "g", 199) is None
    assert g.check("other", "g", 5) is None
    g.reserve("s", "g", 199)
    g.release("s", "g", 199)  # the commit failed: the redelivery must get in
    assert g.check("s", "g", 199) is None
    await g.close()

    again = ReplayGuard(tmp_path / "replay.db", window=100)
    again.open()
    assert (again.check("s", "g", 200) or "").startswith("replayed")
    assert (again.check("s", "g", 101) or "").startswith("replayed")
    assert (again.check("s", "g", 50) or "").startswith("too old")
    assert again.check("s", "g", 201) is None
    await again.close()
