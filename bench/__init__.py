"""Benchmarks: `python -m bench` (or `make bench`) runs every module in `BENCHES`, prints its
figures beside its baseline, and writes them all to `bench/RESULTS.md`.

    modbus_poll   50 virtual Modbus TCP devices polled at 1 Hz by ModbusSource (issue 3)
    pipeline      plateaus + corrections of 10 channels x 7 days at 1 Hz in memory vs pandas (issue 4)
    read_path     1,000,000 readings read back from a real influxd by pipelines.source vs naive JSON (issue 4)
    encode        line-protocol encoding vs influxdb-client's Point (issue 6)
    journal       durable appends/s and deliveries/s per fsync policy (issue 6)
    uplink        signed frames: codec, PUBACK round trips, 1..3 ingest workers into influxd (issue 6)
    ingest        one ingest worker draining a backlog of signed frames into influxd (issue 6)
    gateway_ingest  JSON sensor messages through a gateway into influxd vs a bare subscriber and a
                  naive script (issue 6)
    mqtt_layers   CPU per message of the mqtt5 link and of paho with manual acks (issue 12)
    soak          chaos soak, 30 min: good and bad MQTT input while the gateway, the broker and
                  influxd are SIGKILLed and the disk fills; published vs InfluxDB, exact (issue 11)
"""

import contextlib
import os
import platform
from pathlib import Path

BENCHES = (
    "bench.encode",
    "bench.journal",
    "bench.pipeline",
    "bench.read_path",
    "bench.uplink",
    "bench.ingest",
    "bench.gateway_ingest",
    "bench.mqtt_layers",
    "bench.modbus_poll",
    "bench.soak",
)



def machine() -> str:
    """The machine a benchmark ran on: CPUs, CPU model, Python, OS - for every results table."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}; "
            f"Python {platform.python_version()} ({platform.python_implementation()}), "
            f"{platform.system()} {platform.release()}")
