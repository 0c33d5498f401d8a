"""Modbus TCP/RTU polling source (config schema here; the poller arrives with issue 3)."""
