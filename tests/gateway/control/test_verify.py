"""Signed commands: what a gateway takes and what it refuses, and why (issue 15, section 5)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from gateway.control.envelope import Answer, Command, answer_payload, command_payload, parse_answer
from gateway.control.keys import load_private_key, load_public_keys, new_key_pair
from gateway.control.verify import CommandVerifier, MemoryReplayStore
from gateway.errors import ConfigError
from gateway.journal import Journal

NOW = 1_800_000_000_000_000_000
S = 10**9


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    key, pub = new_key_pair("institute", tmp_path / "inst", institute="nmc")
    other_key, _ = new_key_pair("institute", tmp_path / "other", institute="mallory")
    gkey, gpub = new_key_pair("gateway", tmp_path / "gw", site="lab 1", gateway="gw01")
    return {"key": key, "pub": pub, "other": other_key, "gkey": gkey, "gpub": gpub}


def _cmd(**kw: object) -> Command:
    base: dict[str, object] = dict(site="lab 1", gateway="gw01", command="pause", actor="alice@nmc", seq=1,
                                   issued_ns=NOW, expires_ns=NOW + 60 * S, reason="door open")
    base.update(kw)
    return Command(**base)  # type: ignore[arg-type]


def _verifier(keys: dict[str, Path], **kw: object) -> CommandVerifier:
    return CommandVerifier("lab 1", "gw01", load_public_keys(keys["pub"].parent, "institute"),
                           MemoryReplayStore(), clock=lambda: NOW, **kw)  # type: ignore[arg-type]


def test_key_files(keys: dict[str, Path]) -> None:
    assert stat.S_IMODE(keys["key"].stat().st_mode) == 0o600
    assert keys["key"].name == "nmc.institute.key" and keys["pub"].name == "nmc.institute.pub"
    assert keys["gkey"].name == "lab%201+gw01.control.key"
    k = load_private_key(keys["key"], "institute")
    assert "private" not in repr(k) and k.seed.hex() not in repr(k)
    assert set(load_public_keys(keys["pub"], "institute")) == {k.key_id}
    assert "private_key" not in keys["pub"].read_text()
    with pytest.raises(ConfigError, match=r"a \.pub file"):
        load_private_key(keys["pub"])
    with pytest.raises(ConfigError, match="expected institute keys"):
        load_public_keys(keys["gpub"], "institute")
    with pytest.raises(ConfigError, match="already there"):
        new_key_pair("institute", keys["key"].parent, institute="nmc")


async def test_a_signed_command_for_this_gateway_is_taken(keys: dict[str, Path]) -> None:
    v = _verifier(keys)
    out = await v.check(command_payload(_cmd(), load_private_key(keys["key"])))
    assert out.refusal is None and out.command == _cmd() and out.key is not None and out.key.owner == "nmc"


async def test_forged_commands_are_refused(keys: dict[str, Path]) -> None:
    v = _verifier(keys)
    # signed by a key that is not installed
    out = await v.check(command_payload(_cmd(), load_private_key(keys["other"])))
    assert out.refusal is not None and out.refusal.kind == "bad signature"
    assert "not installed" in out.refusal.reason and out.key is None
    assert out.command is not None and out.command.actor == "alice@nmc"  # what it claims, for the log
    # the right key id, a body changed after signing
    good = json.loads(command_payload(_cmd(), load_private_key(keys["key"])))
    good["body"] = good["body"].replace("pause", "abort")
    out = await v.check(json.dumps(good).encode())
    assert out.refusal is not None and out.refusal.kind == "bad signature"
    # a signature over another command
    other = json.loads(command_payload(_cmd(command="abort"), load_private_key(keys["key"])))
    good = json.loads(command_payload(_cmd(), load_private_key(keys["key"])))
    good["sig"] = other["sig"]
    assert (await v.check(json.dumps(good).encode())).refusal.kind == "bad signature"  # type: ignore[union-attr]
    # an answer (signed by a gateway key) posing as a command under that key's id
    gk = load_private_key(keys["gkey"])
    v.keys[gk.key_id] = gk.public
    fake = json.loads(answer_payload(Answer("lab 1", "gw01", "pause", 1, None, "x", True, None, "", NOW), gk))
    fake["body"] = json.dumps(_cmd().body())
    fake["sig"] = base64.b64encode(gk.sign(b"remotecal-answer-v1\x00" + fake["body"].encode())).decode()
    assert (await v.check(json.dumps(fake).encode())).refusal.kind == "bad signature"  # type: ignore[union-attr]


@pytest.mark.parametrize("payload", [b"", b"garbage", b"[]", b'{"v": 2}', b'{"v":1,"key":"a","body":"{}","sig":"!!"}'])
async def test_malformed_envelopes_are_refused(keys: dict[str, Path], payload: bytes) -> None:
    out = await _verifier(keys).check(payload)
    assert out.refusal is not None and out.refusal.kind == "malformed"


async def test_a_signed_body_that_is_not_a_command_is_malformed(keys: dict[str, Path]) -> None:
    k = load_private_key(keys["key"])
    for cmd in (_cmd(command="reboot"), _cmd(command="start", run="R1"), _cmd(actor=""),
                _cmd(command="start", run="R1", procedure="x", procedure_sha256="0" * 64)):
        out = await _verifier(keys).check(command_payload(cmd, k))
        assert out.refusal is not None and out.refusal.kind == "malformed", cmd


async def test_a_command_for_another_gateway_is_refused(keys: dict[str, Path]) -> None:
    k = load_private_key(keys["key"])
    for cmd in (_cmd(gateway="gw02"), _cmd(site="lab 2")):
        out = await _verifier(keys).check(command_payload(cmd, k))
        assert out.refusal is not None and out.refusal.kind == "wrong gateway"
        assert "this is lab 1/gw01" in out.refusal.reason


async def test_expired_commands_are_refused(keys: dict[str, Path]) -> None:
    k = load_private_key(keys["key"])
    out = await _verifier(keys).check(command_payload(_cmd(expires_ns=NOW - 1), k))
    assert out.refusal is not None and out.refusal.kind == "expired"
    out = await _verifier(keys, max_ttl_s=600).check(command_payload(_cmd(expires_ns=NOW + 601 * S), k))
    assert out.refusal is not None and out.refusal.kind == "expired" and "max_ttl" in out.refusal.reason
    assert (await _verifier(keys, max_ttl_s=600).check(command_payload(_cmd(expires_ns=NOW + 599 * S), k))).refusal \
        is None


async def test_a_replayed_command_is_refused_even_one_refused_before(keys: dict[str, Path]) -> None:
    v = _verifier(keys)
    payload = command_payload(_cmd(), load_private_key(keys["key"]))
    assert (await v.check(payload)).refusal is None
    again = await v.check(payload)
    assert again.refusal is not None and again.refusal.kind == "replayed"
    # a new sequence number is a new command
    assert (await v.check(command_payload(_cmd(seq=2), load_private_key(keys["key"])))).refusal is None
    # refused for being disabled, still claimed: it cannot come back once remote control is on again
    v.allow_remote = False
    p3 = command_payload(_cmd(seq=3), load_private_key(keys["key"]))
    assert (await v.check(p3)).refusal.kind == "remote control disabled"  # type: ignore[union-attr]
    v.allow_remote = True
    assert (await v.check(p3)).refusal.kind == "replayed"  # type: ignore[union-attr]


async def test_remote_control_disabled(keys: dict[str, Path]) -> None:
    k = load_private_key(keys["key"])
    out = await _verifier(keys, allow_remote=False).check(command_payload(_cmd(), k))
    assert out.refusal is not None and out.refusal.kind == "remote control disabled"
    # forged ones are still told apart
    out = await _verifier(keys, allow_remote=False).check(command_payload(_cmd(), load_private_key(keys["other"])))
    assert out.refusal is not None and out.refusal.kind == "bad signature"
    # without any institute key installed
    v = CommandVerifier("lab 1", "gw01", {}, MemoryReplayStore(), allow_remote=False, clock=lambda: NOW)
    assert (await v.check(command_payload(_cmd(), k))).refusal.kind == "remote control disabled"  # type: ignore[union-attr]


async def test_a_key_installed_or_removed_while_running_counts_at_once(keys: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "installed"
    folder.mkdir()
    v = CommandVerifier("lab 1", "gw01", {}, MemoryReplayStore(), clock=lambda: NOW,
                        reload=lambda: load_public_keys(folder, "institute"),
                        fingerprint=lambda: sorted(p.name for p in folder.iterdir()))
    payload = command_payload(_cmd(), load_private_key(keys["key"]))
    assert (await v.check(payload)).refusal.kind == "bad signature"  # type: ignore[union-attr]
    (folder / "nmc.institute.pub").write_bytes(keys["pub"].read_bytes())
    assert (await v.check(payload)).refusal is None
    # revoked: removed from the folder, the next command signed with it is refused
    (folder / "nmc.institute.pub").unlink()
    again = await v.check(command_payload(_cmd(seq=2), load_private_key(keys["key"])))
    assert again.refusal is not None and again.refusal.kind == "bad signature"


async def test_the_replay_store_survives_a_restart(keys: dict[str, Path], tmp_path: Path) -> None:
    from gateway.control import _JournalReplay

    payload = command_payload(_cmd(seq=7), load_private_key(keys["key"]))
    pubs = load_public_keys(keys["pub"], "institute")
    async with Journal(tmp_path / "journal.db", ["s"]) as j:
        v = CommandVerifier("lab 1", "gw01", pubs, _JournalReplay(j), clock=lambda: NOW)
        assert (await v.check(payload)).refusal is None
    async with Journal(tmp_path / "journal.db", ["s"]) as j:
        v = CommandVerifier("lab 1", "gw01", pubs, _JournalReplay(j), clock=lambda: NOW)
        assert (await v.check(payload)).refusal.kind == "replayed"  # type: ignore[union-attr]
        # housekeeping keeps it until an hour past its expiry
        await j.housekeeping()
        assert (await v.check(payload)).refusal.kind == "replayed"  # type: ignore[union-attr]


def test_answers_are_verified(keys: dict[str, Path]) -> None:
    gk = load_private_key(keys["gkey"])
    pubs = load_public_keys(keys["gpub"], "gateway")
    a = Answer("lab 1", "gw01", "pause", 3, "k", "abc", False, "not allowed", "idle", NOW, {"state": "idle"})
    got, signer = parse_answer(answer_payload(a, gk), pubs)
    assert got == a and signer is not None and signer.owner == "lab 1/gw01"
    got, signer = parse_answer(answer_payload(a, gk), {})
    assert got == a and signer is None  # no key: read, but not verified
    tampered = json.loads(answer_payload(a, gk))
    tampered["body"] = tampered["body"].replace('"accepted":false', '"accepted":true')
    from gateway.control.envelope import Refusal

    with pytest.raises(Refusal, match="bad signature"):
        parse_answer(json.dumps(tampered).encode(), pubs)
    # signed by lab 1/gw01's key but claiming to be gw02
    with pytest.raises(Refusal, match="bad signature"):
        parse_answer(answer_payload(Answer("lab 1", "gw02", "pause", 3, "k", "abc", True, None, "", NOW), gk), pubs)


async def test_a_damaged_journal_keeps_its_replay_store_and_command_log(tmp_path: Path) -> None:
    """Recovery after damage (gateway.journal.recovery) carries the seen (key, seq) over: a
    replay must not get in because the journal was set aside."""
    from gateway.journal.control import CommandRow, read_command_log
    from tests.gateway.test_journal_recovery import _pages, _pending_journal, _smash

    path = tmp_path / "journal.db"
    await _pending_journal(path)
    async with Journal(path, ["a"]) as j:
        assert await j.claim_command("k1", 7, NOW)
        await j.log_command(CommandRow(NOW, "remote", "pause", "R1", "alice", True, "", "why", 7, "k1"))
    leaves = _pages(path, "records")
    _smash(path, leaves[len(leaves) // 2])
    async with Journal(path, ["a"]) as j:
        assert j.stats.damaged == 1
        assert not await j.claim_command("k1", 7, NOW)  # still known: a replay
        assert await j.claim_command("k1", 8, NOW)
    assert [(r.command, r.seq, r.actor) for r in read_command_log(path)] == [("pause", 7, "alice")]


async def test_what_a_forged_command_claims_is_kept_short_and_harmless(keys: dict[str, Path]) -> None:
    body = json.dumps({"site": "lab 1", "gateway": "gw01", "command": "abort", "actor": "x\n" * 100_000,
                       "seq": 10**30})
    payload = json.dumps({"v": 1, "key": "nope", "body": body, "sig": base64.b64encode(b"s" * 64).decode()})
    out = await _verifier(keys).check(payload.encode())
    assert out.refusal is not None and out.refusal.kind == "bad signature" and out.command is not None
    assert out.command.actor == "x?" * 50 and out.command.seq == 0
    nested = json.dumps({"v": 1, "key": "nope", "body": "[" * 100_000 + "]" * 100_000, "sig": ""})
    out = await _verifier(keys).check(nested.encode())
    assert out.refusal is not None and out.refusal.kind in ("bad signature", "malformed")


async def test_deeply_nested_json_is_malformed_not_a_failure(keys: dict[str, Path],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    out = await _verifier(keys).check(b"[" * 100_000 + b"]" * 100_000)
    assert out.refusal is not None and out.refusal.kind == "malformed"
    k = load_private_key(keys["key"])
    payload = json.loads(command_payload(_cmd(), k))
    payload["body"] = "[" * 100_000 + "]" * 100_000
    payload["sig"] = base64.b64encode(k.sign(b"remotecal-command-v1\x00" + payload["body"].encode())).decode()
    out = await _verifier(keys).check(json.dumps(payload).encode())
    assert out.refusal is not None and out.refusal.kind == "malformed"
