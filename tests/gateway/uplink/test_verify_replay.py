"""The ingest's checks: which frames are refused, with which reason; the replay window."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

import gateway.keys
from gateway.errors import ConfigError
from gateway.ingest.replay import MAX_EPOCHS, ReplayGuard
from gateway.ingest.verify import FrameVerifier, Rejection
from gateway.keys import (
    LISTING_MIN_S,
    LISTING_S,
    KeyFolder,
    UplinkKey,
    key_file_name,
    keys_fingerprint,
    load_key_file,
    load_keys,
    new_key_file,
    read_keys,
)
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


async def test_each_epoch_has_its_own_window_and_few_epochs_are_kept(tmp_path: Path) -> None:
    # Issue 11, item 5: a re-provisioned gateway numbers from 1 again, in a new epoch.
    g = ReplayGuard(tmp_path / "replay.db", window=100)
    g.open()
    for seq in range(1, 300):
        g.accept("s", "g", seq, epoch=7)
    assert (g.check("s", "g", 1, epoch=7) or "").startswith("too old")
    assert (g.check("s", "g", 250, epoch=7) or "").startswith("replayed")
    assert g.check("s", "g", 1, epoch=8) is None  # the new epoch's first frame
    g.accept("s", "g", 1, epoch=8)
    assert (g.check("s", "g", 1, epoch=8) or "").startswith("replayed")
    assert g.check("s", "g", 1) is None  # epoch 0: frames from before epochs, a window of their own
    await g.close()
    again = ReplayGuard(tmp_path / "replay.db", window=100)
    again.open()
    assert (again.check("s", "g", 250, epoch=7) or "").startswith("replayed")
    assert (again.check("s", "g", 1, epoch=8) or "").startswith("replayed")
    for e in range(100, 100 + MAX_EPOCHS):  # as many re-provisionings again: 7 and 8 are forgotten
        again.accept("s", "g", 1, epoch=e)
    assert again.check("s", "g", 250, epoch=7) is None and again.check("s", "g", 1, epoch=8) is None
    assert (again.check("s", "g", 1, epoch=100) or "").startswith("replayed")
    await again.close()
    db = sqlite3.connect(tmp_path / "replay.db")
    assert db.execute("SELECT COUNT(DISTINCT epoch) FROM frames").fetchone()[0] == MAX_EPOCHS
    db.close()


async def test_a_replay_state_from_before_epochs_is_epoch_0(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "replay.db")
    db.executescript("CREATE TABLE accepted(site TEXT NOT NULL, gateway TEXT NOT NULL, seq INTEGER NOT NULL, "
                     "PRIMARY KEY(site, gateway, seq)) WITHOUT ROWID; INSERT INTO accepted VALUES('s', 'g', 5);")
    db.close()
    g = ReplayGuard(tmp_path / "replay.db", window=100)
    g.open()
    assert (g.check("s", "g", 5) or "").startswith("replayed")
    assert g.check("s", "g", 5, epoch=1) is None
    await g.close()


def _verifier(folder: Path) -> FrameVerifier:
    keys = KeyFolder(folder)
    keys.load()
    return FrameVerifier(PREFIX, keys)


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    reads = [0]
    real = gateway.keys.read_keys

    def counting(path: str | Path) -> tuple[dict[tuple[str, str], UplinkKey], list[str]]:
        reads[0] += 1
        return real(path)

    monkeypatch.setattr(gateway.keys, "read_keys", counting)
    return reads


def test_keys_are_read_again_for_a_new_gateway_a_replaced_key_and_a_removed_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "keys"
    a_file = new_key_file("site A", "gw-a", folder)
    key_a = load_key_file(a_file)
    v = _verifier(folder)
    assert v.refresh(list_files=True) is False  # nothing new
    # A gateway provisioned after the start: its first frame finds it.
    c_file = new_key_file("site C", "gw-c", folder)
    key_c = load_key_file(c_file)
    with caplog.at_level(logging.INFO, logger="remotecal.ingest"):
        assert v.check(topic("site C", "gw-c"), frame(key_c, "site C", "gw-c")).site == "site C"
    assert any("new site C/gw-c" in r.getMessage() for r in caplog.records)
    # An unknown gateway's frames re-read the folder only when it changed.
    reads = _count_reads(monkeypatch)
    for _ in range(50):
        with pytest.raises(Rejection, match="unknown gateway"):
            v.check(topic("site X", "gw-x"), frame(A, "site X", "gw-x"))
    assert reads == [0]
    # A replaced key: frames under the new key verify, under the old one no more.
    a_file.unlink()
    new_a = load_key_file(new_key_file("site A", "gw-a", folder))
    assert new_a.secret != key_a.secret
    assert v.check(topic("site A", "gw-a"), frame(new_a, "site A", "gw-a")).site == "site A"
    with pytest.raises(Rejection, match="bad signature"):
        v.check(topic("site A", "gw-a"), frame(key_a, "site A", "gw-a"))
    assert reads[0] >= 1
    # A removed key stops verifying at the next frame, with nothing else called.
    c_file.unlink()
    with pytest.raises(Rejection, match="unknown gateway"):
        v.check(topic("site C", "gw-c"), frame(key_c, "site C", "gw-c"))


def test_a_key_rewritten_in_place_is_found_by_the_listing(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    a_file = new_key_file("site A", "gw-a", folder)
    key_a = load_key_file(a_file)
    clock = [0.0]
    keys = KeyFolder(folder, clock=lambda: clock[0])
    keys.load()
    v = FrameVerifier(PREFIX, keys)
    clock[0] += LISTING_MIN_S  # listings are at most this often: a flood of forged frames is cheap
    other = load_key_file(new_key_file("site A", "gw-a", tmp_path / "elsewhere"))
    a_file.write_bytes((tmp_path / "elsewhere" / a_file.name).read_bytes())  # same name, same folder time
    assert v.check(topic("site A", "gw-a"), frame(other, "site A", "gw-a")).site == "site A"
    with pytest.raises(Rejection, match="bad signature"):
        v.check(topic("site A", "gw-a"), frame(key_a, "site A", "gw-a"))


def test_revocation_never_depends_on_the_other_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Issue 11, item 8: a malformed key file kept every loaded key in force (a removed one went
    # on verifying), and removing the last key was taken for a mistake and ignored.
    folder = tmp_path / "keys"
    a_file = new_key_file("site A", "gw-a", folder)
    b_file = new_key_file("site B", "gw-b", folder)
    key_a, key_b = load_key_file(a_file), load_key_file(b_file)
    v = _verifier(folder)
    with caplog.at_level(logging.ERROR, logger="remotecal.keys"):
        (folder / "broken.key").write_text("not a key file")
        a_file.unlink()
        with pytest.raises(Rejection, match="unknown gateway"):
            v.check(topic("site A", "gw-a"), frame(key_a, "site A", "gw-a"))
        assert v.check(topic("site B", "gw-b"), frame(key_b, "site B", "gw-b")).site == "site B"
        b_file.unlink()  # the last good key
        with pytest.raises(Rejection, match="unknown gateway"):
            v.check(topic("site B", "gw-b"), frame(key_b, "site B", "gw-b"))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "broken.key" in errors[0]  # once, not at every frame
    (folder / "broken.key").unlink()
    (folder / "none.key").write_text("")
    assert v.keys == {}
    assert _verifier(folder).keys == {}  # at start too: the ingest starts, the error logged


def test_two_keys_of_one_gateway_cost_that_gateway_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "keys"
    key_a = load_key_file(new_key_file("site A", "gw-a", folder))
    key_b = load_key_file(new_key_file("site B", "gw-b", folder))
    v = _verifier(folder)
    second = load_key_file(new_key_file("site A", "gw-a", tmp_path / "other"))
    with caplog.at_level(logging.ERROR, logger="remotecal.keys"):
        (folder / "copy.key").write_bytes((tmp_path / "other" / key_file_name("site A", "gw-a")).read_bytes())
        for k in (key_a, second):
            with pytest.raises(Rejection, match="unknown gateway"):
                v.check(topic("site A", "gw-a"), frame(k, "site A", "gw-a"))
    assert v.check(topic("site B", "gw-b"), frame(key_b, "site B", "gw-b")).site == "site B"
    assert any("2 keys for site A/gw-a" in r.getMessage() for r in caplog.records)
    keys, problems = read_keys(folder)
    assert set(keys) == {("site B", "gw-b")} and len(problems) == 1


def test_the_folder_listing_changes_with_a_key_s_mode_or_owner(tmp_path: Path) -> None:
    # A key found before `chmod`/`chown` made it readable must be tried again after them.
    folder = tmp_path / "keys"
    path = new_key_file("site A", "gw-a", folder)
    before = keys_fingerprint(folder)
    time.sleep(0.01)
    path.chmod(0o640)
    assert keys_fingerprint(folder) != before
    assert keys_fingerprint(path) != () and keys_fingerprint(tmp_path / "none") == ()


def test_a_keys_folder_that_cannot_be_listed_has_no_key_until_it_can(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "keys"
    key_a = load_key_file(new_key_file("site A", "gw-a", folder))
    clock = [0.0]
    keys = KeyFolder(folder, clock=lambda: clock[0])
    keys.load()
    v = FrameVerifier(PREFIX, keys)
    import os

    def denied(path: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as m:  # as root, chmod would not stop us: the refusal itself
        m.setattr(os, "scandir", denied)
        with pytest.raises(ConfigError, match="cannot read the keys folder: Permission denied"):
            load_keys(folder)
        with pytest.raises(ConfigError, match="cannot read the keys folder: Permission denied"):
            KeyFolder(folder).load()  # at start: a wrong path, one line
        clock[0] += LISTING_S  # the next listing (the folder's time did not change)
        # fails closed; no exception escapes
        with caplog.at_level(logging.ERROR, logger="remotecal.keys"), pytest.raises(Rejection, match="unknown"):
            v.check(topic("site A", "gw-a"), frame(key_a, "site A", "gw-a"))
        assert any("cannot read the keys folder" in r.getMessage() for r in caplog.records)
    clock[0] += LISTING_S
    assert v.check(topic("site A", "gw-a"), frame(key_a, "site A", "gw-a")).site == "site A"


async def test_a_replay_state_that_cannot_be_saved_is_kept_and_saved_later(tmp_path: Path) -> None:
    # The save task ran in the ingest's TaskGroup: an error there ended the worker.
    import sqlite3

    g = ReplayGuard(tmp_path / "replay.db", window=100)
    g.open()
    g.accept("s", "g", 5)
    real = g._save_sync

    def full(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    g._save_sync = full  # type: ignore[method-assign,assignment]
    await g.save()  # must not raise
    g._save_sync = real  # type: ignore[method-assign]
    g.accept("s", "g", 6)
    await g.close()
    again = ReplayGuard(tmp_path / "replay.db", window=100)
    again.open()
    assert (again.check("s", "g", 5) or "").startswith("replayed")
    assert (again.check("s", "g", 6) or "").startswith("replayed")
    await again.close()
