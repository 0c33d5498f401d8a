"""Remote run control (issue 15, SPEC section 8): commands signed by the institute (Ed25519),
checked, carried out on the run engine, recorded and answered by the gateway.

    keys       the institute's command key pair, each gateway's answer key pair
    envelope   the signed command and answer, on the wire
    verify     signature, address, expiry, replay (the journal keeps the store), allow_remote
    service    carry a command out on the engine, record it (journal + run_event), answer it;
               also the control socket's run.* operations (local commands)
    remote     the gateway's subscription on the central broker
    client     the institute's side: sign, send, wait for the answer (`remotecal run ...`)
    config     `[control]` of the site config, and the institute's CONTROL.toml

`build_control` wires them for a gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from gateway.control.config import ANSWER_KEY_NAME, ControlBroker, ControlConfig
from gateway.control.keys import (
    PrivateKey,
    keys_fingerprint,
    load_private_key,
    load_public_keys,
    new_key_pair,
)
from gateway.control.service import CommandJournal, ControlService, Emit, Engine, NoEngine, ProcedureStore
from gateway.control.verify import CommandVerifier, ReplayStore
from gateway.errors import ConfigError
from gateway.mqtt_broker import BrokerConnection

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.control.remote import RemoteControl
    from gateway.journal import Journal

__all__ = ["answer_key", "broker_of", "build_control", "check_control", "control_status", "serve_control"]

log = logging.getLogger("remotecal.control")


class _JournalReplay:
    def __init__(self, journal: CommandJournal) -> None:
        self.journal = journal

    async def claim(self, key: str, seq: int, expires_ns: int) -> bool:
        return await self.journal.claim_command(key, seq, expires_ns)


def broker_of(cfg: GatewayConfig) -> ControlBroker | None:
    """`[control.broker]`, or else the first `[[sinks.mqtt]]`'s broker and topic prefix."""
    c = cfg.control
    if c is None:
        return None
    if c.broker is not None:
        return c.broker
    uplinks = cfg.sinks.blocks("mqtt")
    if not uplinks:
        return None
    u = uplinks[0]
    # Every key of the shared broker model but the client id (run control has its own).
    shared = {k: getattr(u, k) for k in BrokerConnection.model_fields if k != "client_id"}
    return ControlBroker(**shared, topic_prefix=u.topic_prefix)


def answer_key(cfg: GatewayConfig) -> PrivateKey:
    """This gateway's answer key: `[control] answer_key`, else DATA_DIR/control-answer.key - made
    (with its .pub beside it) when missing, and logged, so the institute can be given the .pub."""
    g = cfg.gateway
    c = cfg.control or ControlConfig()
    path = c.answer_key or g.data_dir / ANSWER_KEY_NAME
    if not path.exists():
        _, pub = new_key_pair(
            "gateway",
            path.parent,
            site=g.site,
            gateway=g.id,
            names=(path.name, path.with_suffix(".pub").name),
        )
        log.warning(
            "run control: made this gateway's answer key %s; give %s to the institute "
            "(CONTROL.toml gateway_keys) so it can check this gateway's answers",
            path,
            pub,
        )
    key = load_private_key(path, "gateway")
    if (key.public.site, key.public.gateway) != (g.site, g.id):
        raise ConfigError(
            f"control.answer_key: {path} is the key of {key.public.owner}, this gateway is {g.site}/{g.id}"
        )
    return key


def build_control(
    cfg: GatewayConfig,
    *,
    engine: Engine,
    journal: CommandJournal,
    emit: Emit,
    parse_procedure: Callable[[str, str], Any],
    not_allowed: tuple[type[BaseException], ...] = (),
) -> tuple[ControlService, RemoteControl | None]:
    """The control service of a gateway (local commands always), and its remote side when
    `[control]` is configured (commands are then answered, refused if allow_remote = false)."""
    g = cfg.gateway
    c = cfg.control
    verifier: CommandVerifier | None = None
    key: PrivateKey | None = None
    if c is not None:
        replay: ReplayStore = _JournalReplay(journal)
        keys = load_public_keys(c.keys, "institute") if c.keys is not None else {}
        institute_keys = c.keys
        verifier = CommandVerifier(
            g.site,
            g.id,
            keys,
            replay,
            allow_remote=c.allow_remote,
            max_ttl_s=c.max_ttl,
            reload=(lambda: load_public_keys(institute_keys, "institute")) if institute_keys else None,
            fingerprint=keys_fingerprint(institute_keys) if institute_keys else None,
        )
        key = answer_key(cfg)
    service = ControlService(
        site=g.site,
        gateway=g.id,
        default_run=g.run,
        engine=engine,
        journal=journal,
        emit=emit,
        procedures=ProcedureStore(g.data_dir / "procedures", c.procedures if c else None),
        parse_procedure=parse_procedure,
        verifier=verifier,
        answer_key=key,
        not_allowed=not_allowed,
    )
    remote = None
    broker = broker_of(cfg)
    if c is not None and broker is not None:
        from gateway.control.remote import RemoteControl

        remote = RemoteControl(service, broker, g.site, g.id)
    return service, remote


class _Registry(Protocol):
    def register(self, op: str, handler: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None: ...


def serve_control(
    cfg: GatewayConfig,
    journal: Journal,
    local: _Registry,
    engine: Engine | None,
    *,
    not_allowed: tuple[type[BaseException], ...] = (),
) -> tuple[ControlService, RemoteControl | None]:
    """What the gateway runtime calls: run control on `engine` (None: the gateway has no
    controllers, every run command is refused saying so), its operations registered on the
    control socket `local`, its command points written through `journal`; the remote side
    (to run as a task) when `[control]` is configured."""
    from gateway.procedure import Procedure, parse_procedure, site_problems
    from gateway.reading import Point

    g = cfg.gateway

    def parse(text: str, source: str) -> Procedure:
        """A procedure this site can run: its references read, its setpoints written, within
        their controllers' ranges (else ConfigError: refused as a bad procedure, before any
        setpoint is written - not a run whose steps all end not_stable)."""
        procedure = parse_procedure(text, source)
        if engine is not None and (problems := site_problems(procedure, cfg)):
            raise ConfigError(problems)
        return procedure

    async def emit(run: str, time_ns: int, fields: dict[str, Any]) -> None:
        await journal.append([Point("run_event", g.site, g.id, run, time_ns, fields)])

    service, remote = build_control(
        cfg,
        engine=engine if engine is not None else NoEngine(),
        journal=journal,
        emit=emit,
        parse_procedure=parse,
        not_allowed=not_allowed,
    )
    for op, handler in service.local_handlers().items():
        local.register(op, handler)
    return service, remote


def check_control(cfg: GatewayConfig) -> str:
    """`gateway check`'s look at `[control]`: the institute keys and an answer key that is there
    can be read (ConfigError naming the key otherwise); one line saying what remote control
    will do."""
    c = cfg.control
    assert c is not None
    keys: dict[str, Any] = {}
    if c.keys is not None:
        try:
            keys = load_public_keys(c.keys, "institute")
        except ConfigError as exc:
            raise ConfigError([f"control.keys: {p}" for p in exc.problems]) from None
        if not keys and c.allow_remote:
            raise ConfigError(f"control.keys: no institute key (*.pub) in {c.keys}")
    answer = c.answer_key or cfg.gateway.data_dir / ANSWER_KEY_NAME
    if answer.exists():
        try:
            load_private_key(answer, "gateway")
        except ConfigError as exc:
            raise ConfigError([f"control.answer_key: {p}" for p in exc.problems]) from None
    broker = broker_of(cfg)
    where = f"{broker.host}:{broker.port} ({broker.topic_prefix})" if broker else "no broker"
    if not c.allow_remote:
        return f"remote control: OFF (allow_remote = false): remote commands are refused; via {where}"
    owners = ", ".join(sorted(f"{k.owner} ({kid})" for kid, k in keys.items()))
    return (f"remote control: on, commands signed by {owners} via {where}; answer key {answer}"
            + ("" if answer.exists() else " (made at first start)"))


def control_status(
    cfg: GatewayConfig, service: ControlService, remote: RemoteControl | None
) -> dict[str, Any]:
    """Run control in `gateway status`: remote or local only, allowed, the broker and whether
    commands can reach the gateway now, commands taken and refused since start."""
    c = cfg.control
    out: dict[str, Any] = {"remote": c is not None, "allow_remote": bool(c is not None and c.allow_remote),
                           "accepted": service.counts["accepted"], "refused": service.counts["refused"]}
    if remote is not None:
        s = remote.link.settings
        out["broker"] = f"{s.host}:{s.port}"
        out["connected"] = bool(remote.link.connected and remote.subscribed.is_set())
    return out
