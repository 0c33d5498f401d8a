"""The schema of an instrument source: URLs, patterns, channels."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.sources.instrument.config import InstrumentSourceConfig, serial_settings

CH = {"channel": "ref-t", "quantity": "temperature", "unit": "degC", "role": "reference",
      "pattern": r"(?P<value>[-+0-9.eE]+)"}


def make(**kw: Any) -> InstrumentSourceConfig:
    return InstrumentSourceConfig.model_validate({"name": "ref", "url": "tcp://127.0.0.1:5025",
                                                  "channels": [CH], **kw})


def test_defaults() -> None:
    cfg = make()
    assert (cfg.mode, cfg.query, cfg.interval, cfg.timeout, cfg.terminator) == ("query", "FETC?\n", 1.0, 2.0, "\n")


def test_durations_and_serial_url() -> None:
    cfg = make(url="serial:///dev/ttyUSB0?baudrate=19200&parity=E", interval="500ms", mode="stream",
               idle_timeout="10s")
    assert cfg.interval == 0.5 and cfg.idle_timeout == 10.0
    assert serial_settings(cfg.url) == ("/dev/ttyUSB0", {"baudrate": 19200, "parity": "E", "stopbits": 1,
                                                         "bytesize": 8})


@pytest.mark.parametrize(("kw", "message"), [
    ({"url": "udp://127.0.0.1:5025"}, "expected tcp://"),
    ({"url": "tcp://127.0.0.1"}, "needs a port"),
    ({"url": "tcp://:5025"}, "no host"),
    ({"url": "serial://"}, "device path"),
    ({"url": "serial:///dev/ttyS0?speed=9600"}, "unknown serial:// option"),
    ({"url": "serial:///dev/ttyS0?parity=X"}, "parity"),
    ({"url": "serial:///dev/ttyS0?baudrate=fast"}, "whole number"),
    ({"interval": 0}, "interval must be positive"),
    ({"timeout": "0s"}, "timeout must be positive"),
    ({"mode": "poll"}, "query"),
    ({"query": ""}, "needs a query"),
    ({"encoding": "klingon"}, "unknown encoding"),
    ({"channels": []}, "at least 1"),
    ({"channels": [{**CH, "pattern": "(?P<value>"}]}, "not a regular expression"),
    ({"channels": [{**CH, "pattern": r"([0-9.]+)"}]}, "(?P<value>"),
    ({"channels": [CH, CH]}, "used twice"),
    ({"channels": [{**CH, "unit": "K2"}]}, "not a unit of temperature"),
    ({"extra": 1}, "Extra inputs"),
])
def test_refused(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("?", r"\?")):
        make(**kw)
