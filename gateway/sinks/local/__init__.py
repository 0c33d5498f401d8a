"""The local store: readings in one SQLite file, for the demo and for sites without InfluxDB."""

from gateway.sinks.local.store import LocalStoreConfig, LocalStoreSink, read_run

__all__ = ["LocalStoreConfig", "LocalStoreSink", "read_run"]
