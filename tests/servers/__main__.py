"""Local services for development: the same servers the tests start, on fixed loopback ports.

    python -m tests.servers [--dir DIR] [--mqtt-port 1883] [--influx-port 8086]
                            [--victoria-port 8428] [--only mqtt influxdb victoria] [--for SECONDS]

(`deploy/dev/services.sh` runs it with the project's venv.)  Mosquitto (anonymous, persistent
sessions), influxd 1.x with the database `calibration`, and VictoriaMetrics (the InfluxDB v2
write path), each bound to 127.0.0.1 only, data and logs under DIR (default
`var/dev-services`, kept between starts).  The defaults are the ports the example configs in
`deploy/examples/` use, so `remotecal gateway run -c deploy/examples/site.toml` finds them.
Runs until Ctrl-C / SIGTERM (or `--for` seconds), then stops every server it started.  A port
that is taken is one line and exit 1; nothing is left running.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Protocol

from tests.servers.influx import InfluxD, ServerError, VictoriaMetrics
from tests.servers.mosquitto import Mosquitto

SERVICES = ("mqtt", "influxdb", "victoria")


class _Server(Protocol):
    def stop(self) -> None: ...


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.servers", description=__doc__.split("\n")[0])
    p.add_argument("--dir", default="var/dev-services", help="data and logs (default: %(default)s)")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--influx-port", type=int, default=8086)
    p.add_argument("--victoria-port", type=int, default=8428)
    p.add_argument("--only", nargs="+", choices=SERVICES, default=list(SERVICES))
    p.add_argument("--for", dest="duration", type=float, default=None, metavar="SECONDS",
                   help="stop by itself after this long (default: at Ctrl-C / SIGTERM)")
    args = p.parse_args(argv)
    root = Path(args.dir).resolve()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started: list[tuple[str, _Server]] = []
    try:
        for name, port in (("mqtt", args.mqtt_port), ("influxdb", args.influx_port),
                           ("victoria", args.victoria_port)):
            if name not in args.only:
                continue
            if _port_taken(port):
                print(f"{name}: 127.0.0.1:{port} is already in use (another server? choose another "
                      f"--{'influx' if name == 'influxdb' else name}-port)", file=sys.stderr)
                return 1
            if name == "mqtt":
                broker = Mosquitto(root / "mosquitto", port=port)
                broker.start()
                started.append((name, broker))
                print(f"mqtt      {broker.url}  (anonymous; log {broker.log_path})", flush=True)
            elif name == "influxdb":
                influx = InfluxD(root / "influxd")
                influx.port = port
                influx.start(keep_port=True)
                started.append((name, influx))
                influx.create_database("calibration")
                print(f"influxdb  {influx.url}  (v1 /write and /query, database 'calibration'; "
                      f"log {influx.log_path})", flush=True)
            else:
                vm = VictoriaMetrics(root / "victoria-metrics")
                vm.port = port
                vm.start(keep_port=True)
                started.append((name, vm))
                print(f"victoria  {vm.url}  (/api/v2/write, /write; log {vm.log_path})", flush=True)
        print(f"ready; data in {root}; Ctrl-C stops them", flush=True)
        stop.wait(args.duration)
        return 0
    except ServerError as exc:
        print(f"cannot start the services: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        for _, server in reversed(started):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
