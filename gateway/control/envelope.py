"""Signed command envelopes and signed answers (acknowledgements or refusals).

On the wire (MQTT payload, UTF-8 JSON) both are one object:

    {"v": 1, "key": "<key id>", "body": "<the body: a JSON object, as a string>",
     "sig": "<base64 Ed25519 signature>"}

The signature covers a domain tag and the body's exact bytes (`remotecal-command-v1` NUL body,
or `remotecal-answer-v1` NUL body), so no re-encoding of JSON is ever signed or checked, and an
answer can never be passed off as a command or the other way round.

A command's body:

    site, gateway        the one gateway it is for
    command              start | pause | resume | skip | abort | status
    run                  the run id (start: required; others: optional, then it must be the
                         gateway's current run)
    procedure            start: the procedure file's text, or
    procedure_sha256     start: the SHA-256 of a procedure already on the gateway
    actor                who sends it (the engineer's identity), required
    reason               optional words (pause, skip, abort)
    seq                  the signer's sequence number: never the same twice for one key
    issued_ns, expires_ns   ns since the Unix epoch, UTC

An answer's body: site, gateway, command, seq, key (the command's key id), command_sha256 (of
the command's body bytes), accepted (bool), refusal (one of `REFUSALS`, or null), reason
(words), result (the engine's answer: the run started, the status ...), time_ns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from gateway.control.keys import PrivateKey, PublicKey

__all__ = [
    "COMMANDS",
    "MAX_PAYLOAD",
    "REFUSALS",
    "Answer",
    "Command",
    "Envelope",
    "Refusal",
    "answer_payload",
    "command_payload",
    "open_envelope",
    "parse_answer",
    "parse_command",
]

COMMANDS = ("start", "pause", "resume", "skip", "abort", "status")
REFUSALS = (
    "malformed",  # not an envelope, or its body is not a command
    "bad signature",  # no installed institute key signed it (forged, or a key not installed)
    "wrong gateway",  # addressed to another site/gateway
    "expired",  # past its expiry (or its expiry is further ahead than [control] max_ttl)
    "replayed",  # its key and sequence number were seen already
    "remote control disabled",  # [control] allow_remote = false
    "not allowed",  # not allowed in the run's current state
    "bad procedure",  # the procedure's text is not a valid procedure
    "unknown procedure",  # a procedure_sha256 the gateway does not hold
    "failed",  # the run engine failed to carry it out
)
MAX_PAYLOAD = 4 * 1024 * 1024
"""Bytes of an envelope at most: a command carries at most a procedure's text."""
_COMMAND_TAG = b"remotecal-command-v1\x00"
_ANSWER_TAG = b"remotecal-answer-v1\x00"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TEXT_MAX = 200


class Refusal(Exception):
    """A command refused: `kind` is one of REFUSALS, `reason` the words for it."""

    def __init__(self, kind: str, reason: str) -> None:
        assert kind in REFUSALS, kind
        self.kind = kind
        self.reason = reason
        self.by_engine = False
        """The run engine refused it (and recorded it)."""
        super().__init__(f"{kind}: {reason}")


@dataclass(frozen=True, slots=True)
class Command:
    site: str
    gateway: str
    command: str
    actor: str
    seq: int
    issued_ns: int
    expires_ns: int
    run: str | None = None
    procedure: str | None = None
    procedure_sha256: str | None = None
    reason: str | None = None

    def body(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("site", self.site),
                ("gateway", self.gateway),
                ("command", self.command),
                ("run", self.run),
                ("procedure", self.procedure),
                ("procedure_sha256", self.procedure_sha256),
                ("actor", self.actor),
                ("reason", self.reason),
                ("seq", self.seq),
                ("issued_ns", self.issued_ns),
                ("expires_ns", self.expires_ns),
            )
            if v is not None
        }


@dataclass(frozen=True, slots=True)
class Answer:
    site: str
    gateway: str
    command: str
    seq: int | None
    key: str | None
    command_sha256: str
    accepted: bool
    refusal: str | None
    reason: str
    time_ns: int
    result: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "gateway": self.gateway,
            "command": self.command,
            "seq": self.seq,
            "key": self.key,
            "command_sha256": self.command_sha256,
            "accepted": self.accepted,
            "refusal": self.refusal,
            "reason": self.reason,
            "result": self.result,
            "time_ns": self.time_ns,
        }


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded envelope, its signature not checked yet."""

    key: str
    body: bytes
    signature: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def _seal(tag: bytes, body: dict[str, Any], key: PrivateKey) -> bytes:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
    raw = text.encode()
    return json.dumps(
        {"v": 1, "key": key.key_id, "body": text, "sig": base64.b64encode(key.sign(tag + raw)).decode()},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def command_payload(cmd: Command, key: PrivateKey) -> bytes:
    """The MQTT payload of `cmd`, signed with the institute's key."""
    return _seal(_COMMAND_TAG, cmd.body(), key)


def answer_payload(answer: Answer, key: PrivateKey) -> bytes:
    """The MQTT payload of an answer, signed with the gateway's answer key."""
    return _seal(_ANSWER_TAG, answer.body(), key)


def open_envelope(payload: bytes) -> Envelope:
    """The envelope in `payload`; Refusal("malformed") unless it is one."""
    if len(payload) > MAX_PAYLOAD:
        raise Refusal("malformed", f"{len(payload)} bytes, more than {MAX_PAYLOAD}")
    try:
        outer = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refusal("malformed", "not a JSON envelope") from None
    if not isinstance(outer, dict) or outer.get("v") != 1:
        raise Refusal("malformed", "not a version 1 envelope")
    key, body, sig = outer.get("key"), outer.get("body"), outer.get("sig")
    if not isinstance(key, str) or not isinstance(body, str) or not isinstance(sig, str):
        raise Refusal("malformed", "an envelope needs key, body and sig (strings)")
    try:
        signature = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal("malformed", "sig is not base64") from None
    return Envelope(key[:64], body.encode(), signature)


def verify_command(env: Envelope, keys: dict[str, PublicKey]) -> PublicKey:
    """The institute key that signed `env`; Refusal("bad signature") if none did."""
    k = keys.get(env.key)
    if k is None:
        raise Refusal(
            "bad signature",
            f"signed with key {env.key!r}, which is not installed on this gateway "
            f"([control] keys holds {', '.join(sorted(keys)) or 'none'})",
        )
    if not k.verify(env.signature, _COMMAND_TAG + env.body):
        raise Refusal("bad signature", f"the signature does not verify under key {env.key} ({k.owner})")
    return k


def _text(body: dict[str, Any], name: str, *, required: bool = True, limit: int = _TEXT_MAX) -> str | None:
    v = body.get(name)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v.strip() or len(v) > limit or (limit == _TEXT_MAX and "\n" in v):
        raise Refusal("malformed", f"{name} must be one line of text, at most {limit} characters")
    return v


def _int(body: dict[str, Any], name: str) -> int:
    v = body.get(name)
    if type(v) is not int or v < 0:
        raise Refusal("malformed", f"{name} must be a non-negative integer")
    return v


def parse_command(body: bytes) -> Command:
    """The command of a body; Refusal("malformed") naming the field that is wrong."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refusal("malformed", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refusal("malformed", "the body is not an object")
    command = data.get("command")
    if command not in COMMANDS:
        raise Refusal("malformed", f"command must be one of {', '.join(COMMANDS)}")
    sha = data.get("procedure_sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha)):
        raise Refusal("malformed", "procedure_sha256 must be 64 lower-case hex digits")
    cmd = Command(
        site=str(_text(data, "site")),
        gateway=str(_text(data, "gateway")),
        command=command,
        actor=str(_text(data, "actor")),
        seq=_int(data, "seq"),
        issued_ns=_int(data, "issued_ns"),
        expires_ns=_int(data, "expires_ns"),
        run=_text(data, "run", required=command == "start"),
        procedure=_text(data, "procedure", required=False, limit=MAX_PAYLOAD),
        procedure_sha256=sha,
        reason=_text(data, "reason", required=False, limit=1000),
    )
    if command == "start" and (cmd.procedure is None) == (cmd.procedure_sha256 is None):
        raise Refusal("malformed", "start needs the procedure's text or its procedure_sha256 (one of them)")
    if command != "start" and (cmd.procedure is not None or cmd.procedure_sha256 is not None):
        raise Refusal("malformed", f"{command} takes no procedure")
    return cmd


def parse_answer(payload: bytes, keys: dict[str, PublicKey]) -> tuple[Answer, PublicKey | None]:
    """An answer and the gateway key that signed it (None: no key of it is known, so it is not
    verified); Refusal("malformed") / Refusal("bad signature") if it is not a good one."""
    env = open_envelope(payload)
    k = keys.get(env.key)
    if k is not None and not k.verify(env.signature, _ANSWER_TAG + env.body):
        raise Refusal(
            "bad signature", f"the answer's signature does not verify under key {env.key} ({k.owner})"
        )
    try:
        d = json.loads(env.body)
        answer = Answer(
            site=d["site"],
            gateway=d["gateway"],
            command=d["command"],
            seq=d["seq"],
            key=d["key"],
            command_sha256=d["command_sha256"],
            accepted=bool(d["accepted"]),
            refusal=d["refusal"],
            reason=d["reason"],
            time_ns=int(d["time_ns"]),
            result=dict(d.get("result") or {}),
        )
    except (ValueError, KeyError, TypeError, RecursionError):
        raise Refusal("malformed", "the answer's body is not an answer") from None
    if k is not None and (k.site, k.gateway) != (answer.site, answer.gateway):
        raise Refusal(
            "bad signature", f"an answer of {answer.site}/{answer.gateway} signed with the key of {k.owner}"
        )
    return answer, k
