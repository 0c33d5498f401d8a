"""Controllers (gateway.controllers): the registry of kinds, the site config's
[[controllers.<kind>]] blocks, and how a step's setpoints are split between controllers."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from gateway import registry
from gateway.config import parse_config
from gateway.controllers import ControllerError, build_controllers, route
from gateway.errors import ConfigError
from gateway.plugin import ControllerKind


class _FakeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    writes: list[str]

    def quantities(self) -> frozenset[str]:
        return frozenset(self.writes)


class _Fake:
    def __init__(self, cfg: _FakeConfig) -> None:
        self.name = cfg.name
        self.quantities = cfg.quantities()
        self.applied: list[dict[str, float]] = []

    async def apply(self, setpoints: dict[str, float]) -> None:
        self.applied.append(setpoints)

    async def set_running(self, on: bool) -> None:
        pass

    async def close(self) -> None:
        pass


FAKE = ControllerKind(name="fake", title="fake", config=_FakeConfig, build=_Fake, sample=Path("/dev/null"))


@pytest.fixture
def fake_kind() -> Iterator[None]:
    registry.register(FAKE)
    try:
        yield
    finally:
        registry.unregister(FAKE)


SPEC_EXAMPLE = (Path(__file__).parent / "spec_example.toml").read_text()


def _site(controllers: list[dict[str, Any]]) -> dict[str, Any]:
    return tomllib.loads(SPEC_EXAMPLE) | {"controllers": {"fake": controllers}}


def test_blocks_build_controllers_by_name(fake_kind: None) -> None:
    cfg = parse_config(_site([{"name": "chamber", "writes": ["temperature", "humidity"]}]))
    built = build_controllers(cfg)
    assert list(built) == ["chamber"] and built["chamber"].quantities == {"temperature", "humidity"}


def test_a_setpoint_written_by_two_controllers_or_a_name_used_twice_is_refused(fake_kind: None) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(_site([{"name": "a", "writes": ["temperature"]}, {"name": "b", "writes": ["temperature"]}]))
    assert exc.value.problems == ["controllers.fake[1]: writes the temperature setpoint, which "
                                  "controllers.fake[0] writes: one controller per setpoint"]
    with pytest.raises(ConfigError) as exc:
        parse_config(_site([{"name": "a", "writes": ["temperature"]}, {"name": "a", "writes": ["humidity"]}]))
    assert exc.value.problems == ["controllers.fake[1].name: 'a' is already the name of controllers.fake[0]"]


def test_an_unknown_controller_kind_is_named() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(_site([]) | {"controllers": {"fakeish": []}})
    assert exc.value.problems == ["controllers.fakeish: unknown key (a typo?)"]


def test_route_splits_setpoints_and_refuses_an_unwritten_one(fake_kind: None) -> None:
    t = _Fake(_FakeConfig(name="t", writes=["temperature"]))
    h = _Fake(_FakeConfig(name="h", writes=["humidity"]))
    assert route({"t": t, "h": h}, {"temperature": 23.0, "humidity": 50.0}) == {
        "t": {"temperature": 23.0}, "h": {"humidity": 50.0}}
    with pytest.raises(ControllerError, match="no controller writes the humidity setpoint"):
        route({"t": t}, {"temperature": 23.0, "humidity": 50.0})


def test_a_controller_needs_a_serial_port_of_its_own() -> None:
    site = tomllib.loads(SPEC_EXAMPLE)
    site["sources"]["modbus"][0]["url"] = "rtu:///dev/ttyUSB0?baudrate=19200"
    site["controllers"] = {"modbus": [{"name": "c", "url": "rtu:///dev/ttyUSB0?baudrate=9600",
                                       "setpoints": [{"quantity": "temperature", "address": 0}]}]}
    with pytest.raises(ConfigError) as exc:
        parse_config(site)
    assert exc.value.problems == ["controllers.modbus[0].url: serial port /dev/ttyUSB0 is used by "
                                  "sources.modbus[0] already: a controller needs a port of its own"]


def test_the_examples_agree_site_controller_sim_chamber_and_procedure() -> None:
    """deploy/examples: site.toml's controller writes the registers of sim.toml's controllable
    chamber (its profile), within its ranges, and every setpoint of procedure.toml is in them."""
    from firmware_bridge.profile import load_profile
    from firmware_bridge.simulate import load_sim_config
    from gateway.config import load_config
    from gateway.procedure import load_procedure

    examples = Path(__file__).parents[2] / "deploy" / "examples"
    site = load_config(examples / "site.toml")
    (ctl,) = site.controllers.blocks("modbus")
    sim = load_sim_config(examples / "sim.toml")
    (device,) = [d for d in sim.devices if d.listen == ctl.url]
    assert device.profile is not None
    profile = load_profile(device.profile)
    assert {(s.quantity, s.address, s.type, s.byte_order, s.scale, s.offset) for s in profile.setpoints} == \
        {(s.quantity, s.address, s.type, s.byte_order, s.scale, s.offset) for s in ctl.setpoints}
    assert ctl.run is not None and profile.run is not None and ctl.run.address == profile.run.address
    assert any(d.control and d.listen.endswith(":5026") for d in sim.devices)  # the commented-out SCPI one
    limits = {s.quantity: (s.min, s.max) for s in ctl.setpoints}
    for step in load_procedure(examples / "procedure.toml").steps:
        for q, v in step.setpoints.items():
            lo, hi = limits[q]
            assert (lo is None or lo <= v) and (hi is None or v <= hi), (step.name, q, v)
