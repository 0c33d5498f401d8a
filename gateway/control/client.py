"""The institute's side: sign a command, send it to one gateway through the central broker,
wait for its signed answer.

    subscribe {prefix}/{site}/{gateway}/control/answer (before sending, so no answer is missed)
    publish   {prefix}/{site}/{gateway}/control/command, QoS 1, MQTT 5
              PUBACK "no matching subscribers": the gateway is not connected - said at once
    wait      for the answer naming this command's SHA-256, up to `timeout`

Sequence numbers: `max(last + 1, now in microseconds)`, the last kept per key in
`state_dir/<key id>.seq` (under a lock): never the same twice from one machine, and from two
machines sharing the key, the same only if both send within the same microsecond.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.control.config import ControlBroker, InstituteConfig
from gateway.control.envelope import Answer, Command, Refusal, command_payload, open_envelope, parse_answer
from gateway.control.keys import PrivateKey, PublicKey, load_private_key, load_public_keys
from gateway.control.remote import answer_topic, command_topic
from gateway.errors import ConfigError, RemotecalError

__all__ = ["NoAnswer", "Reply", "next_seq", "send_command"]

_NO_SUBSCRIBERS = 0x10


class NoAnswer(RemotecalError):
    """The gateway did not answer (not connected, or not within the timeout)."""


@dataclass(frozen=True, slots=True)
class Reply:
    answer: Answer
    verified_by: PublicKey | None
    """The gateway key that signed the answer; None: no key of this gateway is known here."""
    command: Command


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "remotecal"


def next_seq(state_dir: Path, key_id: str, now_us: int | None = None) -> int:
    """The next sequence number of `key_id` (see the module docstring)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / f"{key_id}.seq"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"{state_dir}: cannot keep the command sequence number there: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "r+", encoding="ascii") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            last = int(f.read().strip() or 0)
        except ValueError:
            last = 0
        seq = max(last + 1, now_us if now_us is not None else time.time_ns() // 1000)
        f.seek(0)
        f.truncate()
        f.write(str(seq))
        f.flush()
        os.fsync(f.fileno())
    return seq


def _client(broker: ControlBroker) -> mqtt.Client:
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"remotecal-run-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )
    if broker.username is not None:
        c.username_pw_set(broker.username, broker.password.get() if broker.password else None)
    if broker.uses_tls:
        t = broker.tls
        c.tls_set(
            ca_certs=t.ca_file if t else None,
            certfile=t.cert_file if t else None,
            keyfile=t.key_file if t else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        if t and t.insecure:
            c.tls_insecure_set(True)
    return c


def send_command(
    cfg: InstituteConfig,
    *,
    site: str,
    gateway: str,
    command: str,
    actor: str,
    run: str | None = None,
    procedure: str | None = None,
    procedure_sha256: str | None = None,
    reason: str | None = None,
    timeout: float | None = None,
    key: PrivateKey | None = None,
    gateway_keys: dict[str, PublicKey] | None = None,
) -> Reply:
    """Sign `command` for `site`/`gateway`, send it, return the gateway's answer; NoAnswer when
    there is none, RemotecalError for a broker that cannot be reached, ConfigError for keys."""
    i = cfg.institute
    if key is None:
        key = load_private_key(i.key_file, "institute")
    if gateway_keys is None:
        gateway_keys = load_public_keys(i.gateway_keys, "gateway") if i.gateway_keys is not None else {}
    wait = i.timeout if timeout is None else timeout
    now = time.time_ns()
    cmd = Command(
        site=site,
        gateway=gateway,
        command=command,
        actor=actor,
        seq=next_seq(i.state_dir or default_state_dir(), key.key_id),
        issued_ns=now,
        expires_ns=now + int(i.ttl * 1e9),
        run=run,
        procedure=procedure,
        procedure_sha256=procedure_sha256,
        reason=reason,
    )
    payload = command_payload(cmd, key)
    sha = open_envelope(payload).sha256
    b = cfg.broker
    ctopic, atopic = command_topic(b.topic_prefix, site, gateway), answer_topic(b.topic_prefix, site, gateway)

    connected, subscribed, published, answered = (threading.Event() for _ in range(4))
    state: dict[str, object] = {}
    bad: list[str] = []
    found: list[Reply] = []
    c = _client(b)

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason_code: mqtt.ReasonCode, _p: object) -> None:
        state["connect"] = reason_code
        connected.set()

    def on_subscribe(
        _c: mqtt.Client, _u: object, _mid: int, codes: list[mqtt.ReasonCode], _p: object
    ) -> None:
        state["subscribe"] = codes
        subscribed.set()

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, reason_code: mqtt.ReasonCode, _p: object) -> None:
        state["publish"] = reason_code
        published.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            answer, signer = parse_answer(bytes(msg.payload), gateway_keys)
        except Refusal as exc:
            bad.append(str(exc))
            return
        if answer.command_sha256 == sha and (answer.site, answer.gateway) == (site, gateway):
            found.append(Reply(answer, signer, cmd))
            answered.set()

    c.on_connect, c.on_subscribe, c.on_publish, c.on_message = (
        on_connect,
        on_subscribe,
        on_publish,
        on_message,
    )
    where = f"{b.host}:{b.port}"
    try:
        c.connect(b.host, b.port, keepalive=int(b.keepalive))
    except (OSError, ssl.SSLError) as exc:
        raise RemotecalError(f"broker.url: cannot reach the broker {where}: {exc.strerror or exc}") from None
    c.loop_start()
    try:
        if not connected.wait(wait):
            raise NoAnswer(f"the broker {where} did not accept the connection within {wait:g} s")
        rc = state.get("connect")
        if isinstance(rc, mqtt.ReasonCode) and rc.is_failure:
            raise RemotecalError(f"the broker {where} refused the connection: {rc}")
        c.subscribe(atopic, qos=1)
        if not subscribed.wait(wait):
            raise NoAnswer(f"the broker {where} did not confirm the subscription to {atopic}")
        codes = state.get("subscribe")
        if isinstance(codes, list) and codes and codes[0].is_failure:
            raise RemotecalError(
                f"the broker {where} refused the subscription to {atopic} ({codes[0]}): "
                "does this account's ACL allow reading the answers?"
            )
        c.publish(ctopic, payload, qos=1)
        if not published.wait(wait):
            raise NoAnswer(f"the broker {where} did not acknowledge the command within {wait:g} s")
        prc = state.get("publish")
        if isinstance(prc, mqtt.ReasonCode):
            if prc.value == _NO_SUBSCRIBERS:
                raise NoAnswer(
                    f"gateway {site}/{gateway} is not connected to the broker {where} (nobody takes {ctopic})"
                )
            if prc.is_failure:
                raise RemotecalError(
                    f"the broker {where} refused the command ({prc}): does this account's "
                    "ACL allow writing it?"
                )
        if not answered.wait(wait):
            more = f"; answers refused: {'; '.join(bad)}" if bad else ""
            raise NoAnswer(f"no answer from gateway {site}/{gateway} within {wait:g} s{more}")
        return found[0]
    finally:
        with contextlib.suppress(Exception):
            c.disconnect()
        c.loop_stop()
