"""Issue 11 item 4: finiteness is checked after scale and offset, in every source.  A value that
overflows to inf (or nan) once scaled is a rejected reading with its reason - never an inf in
the journal, which the uplink would encode and the ingest refuse with its whole frame."""

from __future__ import annotations

import re

from gateway.sources import SourceBatch
from gateway.sources.instrument.source import _Channel, parse_line
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.source import ModbusSource
from gateway.sources.mqtt.config import TopicMapping
from gateway.sources.mqtt.parse import MessageParser

NOW = 1_795_000_000_000_000_000
CH = {"quantity": "temperature", "unit": "degC", "role": "dut"}
TAGS = {"site": "s", "gateway": "g", "run": "r"}


def test_mqtt_a_value_overflowed_by_scale_is_rejected_and_its_neighbour_kept() -> None:
    p = MessageParser([TopicMapping.model_validate({"topic": "lab/+/state", "fields": [
        {"path": "t", "channel": "{1}-t", "scale": 1e300, **CH},
        {"path": "rh", "channel": "{1}-rh", "offset": -1e308, **CH},
        {"path": "ok", "channel": "{1}-ok", "scale": 2.0, **CH}]})], site="s", gateway="g", run="r",
        max_payload=1024)
    out = p.parse("lab/a/state", b'{"t": 1e10, "rh": -1.7e308, "ok": 1.5}', NOW)
    assert [(r.channel, r.value) for r in out.readings] == [("a-ok", 3.0)]
    assert out.errors == ["path 't' is inf after scale = 1e+300, offset = 0 (raw 10000000000.0)",
                          "path 'rh' is -inf after scale = 1, offset = -1e+308 (raw -1.7e+308)"]


def test_mqtt_value_format_overflowed_by_scale() -> None:
    p = MessageParser([TopicMapping.model_validate({"topic": "raw", "format": "value", "fields": [
        {"channel": "x", "scale": -1e300, **CH}]})], site="s", gateway="g", run="r", max_payload=1024)
    out = p.parse("raw", b"1e9", NOW)
    assert out.readings == [] and out.errors == ["payload is -inf after scale = -1e+300, offset = 0 (raw 1000000000.0)"]


def test_instrument_a_value_overflowed_by_scale_is_the_line_problem() -> None:
    channels = [_Channel(0, re.compile(r"A=(?P<value>\S+)"), 1e300, 0.0),
                _Channel(1, re.compile(r"B=(?P<value>\S+)"), 1.0, 0.0)]
    values, problem = parse_line(channels, "A=1e10 B=21.5")
    assert values == [(1, 21.5)]
    assert problem == "value '1e10' is inf after scale = 1e+300, offset = 0"


def test_modbus_an_integer_register_overflowed_by_scale_is_rejected() -> None:
    """Only float types were checked: a uint32 times a large scale reached the journal as inf."""
    cfg = ModbusSourceConfig.model_validate({
        "name": "dev", "url": "tcp://127.0.0.1:5020", "unit_id": 1, "registers": [
            {"channel": "big", "address": 0, "type": "uint32", "scale": 1e305, **CH},
            {"channel": "ok", "address": 2, "type": "int16", "scale": 0.5, **CH}]})
    [src] = ModbusSource.for_configs([cfg], **TAGS)
    dev = src.devices[0]
    [block] = dev.blocks
    batch = SourceBatch()
    src._decoded(dev, block, [0xFFFF, 0xFFFF, 8], 5, batch)
    assert [(r.channel, r.value) for r in batch.readings] == [("ok", 4.0)]
    [rej] = batch.rejected
    assert (rej.topic, rej.reason) == ("modbus:1:holding:0", "uint32 value is inf after scale = 1e+305, offset = 0")
