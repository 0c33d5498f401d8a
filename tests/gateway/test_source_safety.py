"""Issue 11: no exception raised while handling one message, line or register may end the
process.  Each source has a safety net around its parser: whatever the parser raises becomes
that input's quarantine reason (and an ERROR line with the traceback: it is a bug)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gateway.mqtt.message import Message
from gateway.sources import SourceBatch
from gateway.sources.instrument import source as instrument_source
from gateway.sources.instrument.config import InstrumentSourceConfig
from gateway.sources.instrument.source import InstrumentSource
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.source import ModbusSource
from gateway.sources.mqtt.config import MqttSourceConfig
from gateway.sources.mqtt.source import MqttSource

TAGS = {"site": "s", "gateway": "g", "run": "r"}
CH = {"quantity": "temperature", "unit": "degC", "role": "dut"}


def _mqtt() -> MqttSource:
    cfg = MqttSourceConfig.model_validate({
        "name": "b", "url": "mqtt://127.0.0.1:1", "topics": [
            {"topic": "lab/+/state", "fields": [{"path": "t", "channel": "{1}-t", **CH}]}]})
    return MqttSource(cfg, **TAGS)


def _message(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, 1, 1, False, 1, 1_795_000_000_000_000_000)


def test_a_5000_digit_json_number_is_a_reason_not_an_exception() -> None:
    src = _mqtt()
    batch = src._batch(_message("lab/a/state", b'{"t": ' + b"1" * 5000 + b"}"))
    assert batch.readings == []
    [rej] = batch.rejected
    assert rej.reason.startswith("malformed JSON: Exceeds the limit (4300 digits)"), rej.reason
    assert batch.on_committed is not None  # acknowledged once the quarantine row is committed


def test_whatever_the_mqtt_parser_raises_quarantines_that_message(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    src = _mqtt()

    def broken(*_: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(src.parser, "parse", broken)
    with caplog.at_level(logging.ERROR):
        batch = src._batch(_message("lab/a/state", b'{"t": 1}'))
    [rej] = batch.rejected
    assert rej.reason == "the parser failed: RuntimeError: a bug"
    assert rej.payload == b'{"t": 1}' and rej.topic == "lab/a/state"
    assert "RuntimeError: a bug" in caplog.text and "Traceback" in caplog.text


def test_whatever_the_instrument_line_parser_raises_quarantines_that_line(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = InstrumentSourceConfig.model_validate({
        "name": "ref", "url": "tcp://127.0.0.1:5025",
        "channels": [{"channel": "ref-t", "pattern": r"(?P<value>[-+0-9.eE]+)", **CH}]})
    src = InstrumentSource(cfg, **TAGS)

    def broken(*_: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(instrument_source, "parse_line", broken)
    batch = src._batch(b"21.5", 1)
    assert batch.readings == []
    [rej] = batch.rejected
    assert rej.reason == "the line parser failed: ZeroDivisionError: a bug" and rej.payload == b"21.5"


def test_registers_the_decoder_cannot_read_are_rejected_and_the_others_kept() -> None:
    """A word outside 0..65535 makes `struct.pack` raise: that register is rejected, its
    neighbour in the same block is read."""
    cfg = ModbusSourceConfig.model_validate({
        "name": "dev", "url": "tcp://127.0.0.1:5020", "unit_id": 1, "registers": [
            {"channel": "a", "address": 0, "type": "uint16", **CH},
            {"channel": "b", "address": 1, "type": "float32", **CH}]})
    [src] = ModbusSource.for_configs([cfg], **TAGS)
    dev = src.devices[0]
    [block] = dev.blocks
    batch = SourceBatch()
    src._decoded(dev, block, [7, 70_000, 0], 5, batch)
    assert [(r.channel, r.value) for r in batch.readings] == [("a", 7.0)]
    [rej] = batch.rejected
    assert rej.topic == "modbus:1:holding:1"
    assert rej.reason.startswith("cannot decode float32 from [70000, 0]: error:"), rej.reason


def test_a_disconnect_0x8e_is_a_session_takeover_named_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    """Brokers that say why (DISCONNECT 0x8E, "session taken over") are believed at once."""
    import mqtt5

    from gateway.sources.mqtt.source import mqtt5_link

    src = _mqtt()
    link = mqtt5_link(src.cfg, "gw-id", buffer=10, wake=lambda: None)
    with caplog.at_level(logging.INFO, logger="remotecal.source.mqtt"):
        for _ in range(3):
            link.server_disconnect(mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "session taken over (DISCONNECT 0x8E): another client connected with the same MQTT client id 'gw-id'" \
        in lines[0]
    assert link.in_takeover_episode
