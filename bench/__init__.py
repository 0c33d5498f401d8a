"""Benchmarks: `python -m bench` (or `make bench`) runs every module in `BENCHES` and prints its figures.

    modbus_poll   50 virtual Modbus TCP devices polled at 1 Hz by ModbusSource (issue 3)
"""

BENCHES = ("bench.modbus_poll",)
