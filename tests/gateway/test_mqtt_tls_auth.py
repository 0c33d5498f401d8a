"""The MQTT source's credentials and TLS options against a real Mosquitto that requires both."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.gateway.harness import GatewayProcess, site_config
from tests.gateway.test_end_to_end import count_readings, v1_sink, wait_until
from tests.servers.influx import InfluxD
from tests.servers.mosquitto import Mosquitto

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates")
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "gw01")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem", cwd=d)
    return d


def test_tls_client_certificate_and_password(tmp_path: Path, pki: Path, influxd: InfluxD) -> None:
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "gw01", "s3cret pw"], check=True, timeout=30)
    conf = (f"allow_anonymous false\npassword_file {pwfile}\ncafile {pki}/ca.pem\ncertfile {pki}/server.pem\n"
            f"keyfile {pki}/server.key\nrequire_certificate true\n")
    broker = Mosquitto(tmp_path / "broker", extra_conf=conf)
    broker.conf_path.write_text(broker.conf_path.read_text().replace("allow_anonymous true\n", ""))
    (tmp_path / "mqtt.pw").write_text("s3cret pw\n")
    with broker:
        cfg = site_config(tmp_path / "data", broker.port, v1_sink(influxd)).replace(
            f'url = "mqtt://127.0.0.1:{broker.port}"',
            f'url = "mqtts://127.0.0.1:{broker.port}"\nusername = "gw01"\npassword = "file:{tmp_path}/mqtt.pw"\n'
            f'tls = {{ ca_file = "{pki}/ca.pem", cert_file = "{pki}/client.pem", key_file = "{pki}/client.key" }}')
        with GatewayProcess(tmp_path / "gw", cfg) as gw:
            wait_until(lambda: "connected" in gw.log(), 30, "a TLS connection", gw)
            subprocess.run(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-u", "gw01", "-P", "s3cret pw",
                 "--cafile", f"{pki}/ca.pem", "--cert", f"{pki}/client.pem", "--key", f"{pki}/client.key",
                 "-t", "lab/tls/raw", "-m", "21.5"], check=True, timeout=30)
            wait_until(lambda: count_readings(influxd) == 1, 30, "the reading over TLS", gw)
            assert gw.terminate() == 0
        assert "s3cret" not in gw.log()
        wrong = cfg.replace(f'password = "file:{tmp_path}/mqtt.pw"', 'password = "wrong"')
        with GatewayProcess(tmp_path / "gw-wrong", wrong) as bad:
            wait_until(lambda: "refused by the broker" in bad.log(), 30, "the broker's refusal", bad)
            time.sleep(1.0)
            assert bad.log().count("refused by the broker") == 1, "a state change is logged once"
            assert "wrong" not in bad.log().replace("gw-wrong", "")
            assert bad.terminate() == 0
