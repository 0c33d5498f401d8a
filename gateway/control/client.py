"""The institute's side: sign a command, send it to one gateway through the central broker,
wait for its signed answer.

One connection on remotecal's MQTT layer (`gateway.mqtt.MqttLink`, MQTT 5), one attempt:

    subscribe {prefix}/{site}/{gateway}/control/answer (before sending, so no answer is missed)
    publish   {prefix}/{site}/{gateway}/control/command, QoS 1, MQTT 5
              PUBACK "no matching subscribers": the gateway is not connected - said at once
    wait      for the answer naming this command's SHA-256, up to `timeout`

Sequence numbers: `max(last + 1, now in microseconds)`, the last kept per key in
`state_dir/<key id>.seq` (under a lock): never the same twice from one machine, and from two
machines sharing the key, the same only if both send within the same microsecond.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from gateway.control.config import ControlBroker, InstituteConfig
from gateway.control.envelope import Answer, Command, Refusal, command_payload, open_envelope, parse_answer
from gateway.control.keys import PrivateKey, PublicKey, load_private_key, load_public_keys
from gateway.control.remote import answer_topic, command_topic
from gateway.errors import ConfigError, RemotecalError
from gateway.mqtt import (
    NO_MATCHING_SUBSCRIBERS,
    BrokerRefused,
    MqttLink,
    Subscription,
    link_settings,
    puback_reason,
)

__all__ = ["NoAnswer", "Reply", "next_seq", "send_command"]


_quiet = logging.getLogger("remotecal.run.mqtt")
"""The link's own state lines: muted - `send_command` names every failure in one exception."""
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


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
    return asyncio.run(_exchange(cfg.broker, cmd, payload, gateway_keys, wait))


async def _exchange(b: ControlBroker, cmd: Command, payload: bytes, gateway_keys: dict[str, PublicKey],
                    wait: float) -> Reply:
    """Connect, subscribe to the answers, publish the command, wait for its answer: each step
    up to `wait` s; a failure is one exception naming the step."""
    site, gateway = cmd.site, cmd.gateway
    sha = open_envelope(payload).sha256
    ctopic, atopic = command_topic(b.topic_prefix, site, gateway), answer_topic(b.topic_prefix, site, gateway)
    where = f"{b.host}:{b.port}"
    wake = asyncio.Event()
    # A client id of its own each time (not [broker] client_id: two people sending at once
    # would take each other's session).
    link = MqttLink(link_settings(b.model_copy(update={"client_id": None}),
                                  client_id=f"remotecal-run-{uuid.uuid4().hex[:12]}",
                                  subscriptions=[Subscription(atopic, qos=1)]),
                    name=f"remotecal run ({where})", log=_quiet, wake=wake.set)
    try:
        try:
            await asyncio.wait_for(link.connect_once(), wait)
        except BrokerRefused as exc:
            raise RemotecalError(f"the broker {where} refused the connection: {exc}") from None
        except TimeoutError:
            raise NoAnswer(f"the broker {where} did not accept the connection within {wait:g} s") from None
        except OSError as exc:  # refused, reset, TLS, not an MQTT broker
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise RemotecalError(f"broker.url: cannot reach the broker {where}: {reason}") from None
        try:
            await asyncio.wait_for(link.subscription_answered.wait(), wait)
        except TimeoutError:
            raise NoAnswer(f"the broker {where} did not confirm the subscription to {atopic}") from None
        if link.refused_subscriptions:
            why = link.refused_subscriptions[0][1]
            raise RemotecalError(f"the broker {where} refused the subscription to {atopic} ({why}): "
                                 "does this account's ACL allow reading the answers?")
        try:
            code = await asyncio.wait_for(link.publish(ctopic, payload), wait)
        except (TimeoutError, ConnectionError):
            raise NoAnswer(f"the broker {where} did not acknowledge the command within {wait:g} s") from None
        if code == NO_MATCHING_SUBSCRIBERS:
            raise NoAnswer(
                f"gateway {site}/{gateway} is not connected to the broker {where} (nobody takes {ctopic})")
        if code >= 0x80:
            raise RemotecalError(f"the broker {where} refused the command ({puback_reason(code)}): does this "
                                 "account's ACL allow writing it?")
        bad: list[str] = []
        try:
            async with asyncio.timeout(wait):
                while True:
                    for m in link.take():
                        link.ack(m)
                        try:
                            answer, signer = parse_answer(m.payload, gateway_keys)
                        except Refusal as exc:
                            bad.append(str(exc))
                            continue
                        if answer.command_sha256 == sha and (answer.site, answer.gateway) == (site, gateway):
                            return Reply(answer, signer, cmd)
                    wake.clear()
                    if not link.waiting:
                        await wake.wait()
        except TimeoutError:
            more = f"; answers refused: {'; '.join(bad)}" if bad else ""
            raise NoAnswer(f"no answer from gateway {site}/{gateway} within {wait:g} s{more}") from None
    finally:
        await link.stop()
