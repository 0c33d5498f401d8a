"""Fuzzing run control's checks with `hypothesis`: whatever arrives on the command topic, the
verifier returns its verdict and the service its signed answer - no exception (one would be a
'failed' refusal with a traceback, or worse) - and nothing unsigned ever reaches the engine.

    random bytes              CommandVerifier.check, ControlService.remote
    signed random bodies      any JSON object signed with the installed key: a command or a
                              refusal naming its field, never an exception
    mutated good envelopes    a real command's bytes overwritten, cut, inserted

REMOTECAL_FUZZ_EXAMPLES=N runs N examples per property instead of 200.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gateway.control.envelope import REFUSALS, Command, command_payload, parse_answer
from gateway.control.keys import PrivateKey, PublicKey
from gateway.control.service import ControlService, ProcedureStore
from gateway.control.verify import CommandVerifier, MemoryReplayStore
from tests.gateway.control.test_service import FakeEngine, NotAllowed

pytestmark = pytest.mark.slow  # seconds each: `make test` runs them, `make unit` does not

EXAMPLES = int(os.environ.get("REMOTECAL_FUZZ_EXAMPLES", "200"))
NOW = 1_800_000_000_000_000_000


def fuzz() -> settings:
    return settings(max_examples=EXAMPLES, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def _pair(kind: str, owner: str, site: str = "", gateway: str = "") -> PrivateKey:
    sk = Ed25519PrivateKey.generate()
    return PrivateKey(PublicKey(kind, owner, sk.public_key().public_bytes_raw(), None, site, gateway),
                      sk.private_bytes_raw())


_KEY = _pair("institute", "nmc")
_GKEY = _pair("gateway", "lab1/gw01", "lab1", "gw01")


class _Rig:
    def __init__(self, tmp: Path) -> None:
        self.key, self.gpubs = _KEY, {_GKEY.key_id: _GKEY.public}
        self.engine = FakeEngine()

        class Journal:
            async def claim_command(self, key: str, seq: int, expires_ns: int) -> bool:
                return True

            async def log_command(self, row: Any) -> int:
                return 0

        async def emit(run: str, t: int, f: dict[str, Any]) -> None:
            json.dumps(f)  # what a point would carry is plain data

        self.verifier = CommandVerifier("lab1", "gw01", {_KEY.key_id: _KEY.public}, MemoryReplayStore(),
                                        clock=lambda: NOW)
        self.service = ControlService(site="lab1", gateway="gw01", default_run="idle", engine=self.engine,
                                      journal=Journal(), emit=emit, procedures=ProcedureStore(tmp / "p"),
                                      parse_procedure=lambda text, source: text, verifier=self.verifier,
                                      answer_key=_GKEY, not_allowed=(NotAllowed,),
                                      clock=lambda: NOW)

    def answer(self, payload: bytes) -> Any:
        out = asyncio.run(self.service.remote(payload))
        assert out is not None
        answer, signer = parse_answer(out, self.gpubs)
        assert signer is not None
        assert answer.accepted or answer.refusal in REFUSALS
        return answer


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=12)
fields = st.fixed_dictionaries({}, optional={
    "site": st.sampled_from(["lab1", "lab2"]) | json_values, "gateway": st.sampled_from(["gw01"]) | json_values,
    "command": st.sampled_from(["start", "pause", "resume", "skip", "abort", "status"]) | json_values,
    "run": st.sampled_from(["R1"]) | json_values, "actor": st.sampled_from(["alice"]) | json_values,
    "seq": st.integers(-(2**70), 2**70) | json_values, "issued_ns": st.just(NOW) | json_values,
    "expires_ns": st.just(NOW + 10**9) | json_values, "procedure": st.text() | json_values,
    "procedure_sha256": st.sampled_from(["0" * 64]) | json_values, "reason": json_values,
})


@fuzz()
@given(payload=st.binary(max_size=300))
def test_random_bytes_are_answered(tmp_path: Path, payload: bytes) -> None:
    rig = _Rig(tmp_path)
    answer = rig.answer(payload)
    assert not answer.accepted and rig.engine.calls == []


@fuzz()
@given(body=fields)
def test_any_signed_body_is_a_command_or_a_named_refusal(tmp_path: Path, body: dict[str, Any]) -> None:
    rig = _Rig(tmp_path)
    text = json.dumps(body)
    payload = json.loads(command_payload(Command("lab1", "gw01", "status", "a", 1, NOW, NOW + 1), rig.key))
    payload["body"] = text
    payload["sig"] = base64.b64encode(rig.key.sign(b"remotecal-command-v1\x00" + text.encode())).decode()
    answer = rig.answer(json.dumps(payload).encode())
    if answer.refusal == "malformed":
        assert answer.reason  # names what is wrong


@fuzz()
@given(data=st.data())
def test_mutated_envelopes_are_answered_and_never_obeyed(tmp_path: Path, data: st.DataObject) -> None:
    rig = _Rig(tmp_path)
    rig.engine.state, rig.engine.run = "settling", "R1"
    good = bytearray(command_payload(Command("lab1", "gw01", "pause", "alice", 7, NOW, NOW + 10**9,
                                             reason="x"), rig.key))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set", "cut", "insert"]))
        i = data.draw(st.integers(0, len(good) - 1))
        if op == "set":
            good[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del good[i:i + data.draw(st.integers(1, 8))]
        else:
            good[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        if not good:
            break
    answer = rig.answer(bytes(good))
    if answer.accepted:  # a mutation JSON ignores (whitespace, key order): the command as signed
        assert rig.engine.calls == [("pause", "alice", "x")]
    else:
        assert rig.engine.state == "settling"
