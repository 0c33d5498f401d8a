"""Benchmarks: `python -m bench` (or `make bench`) runs every module in `BENCHES` and prints its figures.

    modbus_poll   50 virtual Modbus TCP devices polled at 1 Hz by ModbusSource (issue 3)
    pipeline      plateaus + corrections of 10 channels x 7 days at 1 Hz in memory vs pandas (issue 4)
    read_path     1,000,000 readings read back from a real influxd by pipelines.source vs naive JSON (issue 4)
"""

BENCHES = ("bench.modbus_poll", "bench.pipeline", "bench.read_path")
