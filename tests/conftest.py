"""Shared fixtures: real servers on loopback (see tests/servers/)."""

pytest_plugins = ["tests.servers.influx", "tests.servers.mosquitto"]
