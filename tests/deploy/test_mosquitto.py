"""deploy/mosquitto on the real Mosquitto: TLS, passwords, per-gateway ACLs.

The broker runs deploy/mosquitto/remotecal.conf as shipped, except for what a test must
change: the listener moves from 8883 on every interface to a free port on 127.0.0.1, the
certificate, password and ACL paths point into the test's folder, and persistence and the
log go there too.  The certificates are throw-away ones made with openssl; the ACL is the
shipped file, extended by the shipped add-gateway.sh for two gateways.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.servers.influx import free_port
from tests.servers.mosquitto import Mosquitto

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
# What gateway.ingest subscribes to, and where gateway.sinks.mqtt publishes (MQTT 5 both).
INGEST_FILTER = "$share/remotecal-ingest/remotecal/v1/+/+/readings"
PASSWORDS = {"ingest": "ingest-secret", "lab1.gw01": "gw-one-secret", "lab2.gw01": "gw-two-secret",
             "control": "control-secret"}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("mosquitto_passwd") is None or shutil.which("openssl") is None,
                       reason="needs mosquitto_passwd and openssl"),
]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, valid for a day."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
             "-subj", "/CN=remotecal test CA", cwd=folder)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "1", "-extfile", "san.ext", cwd=folder)
    return {"cafile": folder / "ca.crt", "certfile": folder / "server.crt", "keyfile": folder / "server.key"}


def derive_config(shipped: str, port: int, paths: dict[str, Path], workdir: Path) -> str:
    """The shipped config with only the listener and file locations replaced."""
    lines = shipped.splitlines()
    replaced: set[str] = set()
    out = []
    for line in lines:
        key = line.split(maxsplit=1)[0] if line.strip() and not line.startswith("#") else ""
        if key == "listener":
            line = f"listener {port} 127.0.0.1"
            replaced.add(key)
        elif key in paths:
            line = f"{key} {paths[key]}"
            replaced.add(key)
        out.append(line)
    assert replaced == {"listener", *paths}, f"remotecal.conf lacks {({'listener', *paths}) - replaced}"
    out += [
        f"user {getpass.getuser()}",
        f"persistence_location {workdir}/",
        f"log_dest file {workdir / 'mosquitto.log'}",
    ]
    return "\n".join(out) + "\n"


class Broker(Mosquitto):
    """tests.servers.mosquitto.Mosquitto, started on the derived config instead of its own."""

    def __init__(self, workdir: Path, conf: str, port: int) -> None:
        super().__init__(workdir, port=port)
        self.conf_path.write_text(conf)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Path]]:
    work = Path(tmp_path_factory.mktemp("mosquitto"))
    certs = make_certificates(work)
    acl = work / "remotecal.acl"
    shutil.copy(DEPLOY / "remotecal.acl", acl)
    passwd = work / "remotecal.passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "ingest", PASSWORDS["ingest"]],
                   check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "control", PASSWORDS["control"]],  # deploy/README.md
                   check=True, capture_output=True)
    env = {**os.environ, "MOSQUITTO_PASSWD": str(passwd), "MOSQUITTO_ACL": str(acl)}
    for user in ("lab1.gw01", "lab2.gw01"):
        site, gateway = user.split(".")
        subprocess.run([str(DEPLOY / "add-gateway.sh"), site, gateway, PASSWORDS[user]],
                       env=env, check=True, capture_output=True, text=True)
    port = free_port()
    conf = derive_config((DEPLOY / "remotecal.conf").read_text(), port,
                         {**certs, "password_file": passwd, "acl_file": acl}, work)
    server = Broker(work, conf, port)
    server.start()
    try:
        yield server, certs["cafile"]
    finally:
        server.stop()


class Client:
    """A paho client over TLS that records CONNACK and the messages it receives."""

    def __init__(self, broker: tuple[Broker, Path], client_id: str, user: str | None = None,
                 password: str | None = None) -> None:
        server, ca = broker
        self.messages: queue.Queue[str] = queue.Queue()
        self._connack = threading.Event()
        self._subscribed = threading.Event()
        self.refused: bool | None = None
        self.mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.mqtt.tls_set(ca_certs=str(ca))
        if user is not None:
            self.mqtt.username_pw_set(user, password)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_subscribe = lambda *args: self._subscribed.set()
        self.mqtt.on_message = lambda client, userdata, msg: self.messages.put(msg.topic)
        self.mqtt.connect("127.0.0.1", server.port)
        self.mqtt.loop_start()
        assert self._connack.wait(10), "no CONNACK"

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                    properties: object) -> None:
        self.refused = bool(getattr(reason, "is_failure", False))
        self._connack.set()

    def subscribe(self, topic: str) -> None:
        self.mqtt.subscribe(topic, qos=1)
        assert self._subscribed.wait(10), "no SUBACK"

    def publish(self, topic: str) -> None:
        self.mqtt.publish(topic, b'{"t": 23.4}', qos=1).wait_for_publish(10)

    def subscribe_many(self, *topics: str) -> None:
        for t in topics:
            self._subscribed.clear()
            self.subscribe(t)

    def received(self, wait_for: str | None = None, timeout: float = 10.0) -> list[str]:
        """Every topic received so far, waiting up to `timeout` s for `wait_for` to be among them."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while wait_for is not None and wait_for not in seen and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                seen.append(self.messages.get(timeout=0.1))
        time.sleep(0.5)  # anything that was to follow it has had time to arrive
        while not self.messages.empty():
            seen.append(self.messages.get())
        return seen

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def test_a_gateway_publishes_only_under_its_own_prefix(broker: tuple[Broker, Path]) -> None:
    ingest = Client(broker, "ingest", "ingest", PASSWORDS["ingest"])
    other = Client(broker, "lab2-gw01", "lab2.gw01", PASSWORDS["lab2.gw01"])
    gw = Client(broker, "lab1-gw01", "lab1.gw01", PASSWORDS["lab1.gw01"])
    try:
        assert not (ingest.refused or other.refused or gw.refused)
        ingest.subscribe(INGEST_FILTER)
        other.subscribe("remotecal/v1/#")  # allowed to ask, but may only read its own prefix
        gw.publish("remotecal/v1/lab2/gw01/readings")  # another site's gateway: denied
        gw.publish("remotecal/v1/lab1/gw02/readings")  # another gateway of its site: denied
        gw.publish("remotecal/v1/lab1/gw01/readings")  # its own: delivered
        assert ingest.received(wait_for="remotecal/v1/lab1/gw01/readings") == ["remotecal/v1/lab1/gw01/readings"]
        assert other.received() == []
    finally:
        for c in (gw, other, ingest):
            c.close()


def test_anonymous_and_wrong_passwords_are_refused(broker: tuple[Broker, Path]) -> None:
    anonymous = Client(broker, "anonymous")
    wrong = Client(broker, "intruder", "lab1.gw01", "guess")
    try:
        assert anonymous.refused is True
        assert wrong.refused is True
    finally:
        anonymous.close()
        wrong.close()


def test_add_gateway_refuses_names_that_would_escape_the_topic_level(tmp_path: Path) -> None:
    env = {**os.environ, "MOSQUITTO_PASSWD": str(tmp_path / "p"), "MOSQUITTO_ACL": str(tmp_path / "a")}
    for site, gateway in (("lab1/x", "gw01"), ("lab1", "#"), ("lab1", "gw+1"), ("", "gw01")):
        done = subprocess.run([str(DEPLOY / "add-gateway.sh"), site, gateway, "pw"], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 2, (site, gateway, done.stderr)
    assert not (tmp_path / "a").exists()


def test_queue_limits_hold_hours_of_backlog() -> None:
    """The arithmetic in the comment holds: 8 h of 10 frames/s (10 gateways) of ~1 KB."""
    conf = (DEPLOY / "remotecal.conf").read_text()
    values = dict(re.findall(r"^(max_queued_messages|max_queued_bytes|max_inflight_messages) (\d+)$", conf, re.M))
    messages = 10 * 3600 * 8
    assert int(values["max_queued_messages"]) >= messages
    assert int(values["max_queued_bytes"]) >= messages * 1024
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    assert re.search(r"^persistence true$", conf, re.M)


def test_the_institutes_control_account_reaches_commands_and_answers_only(broker: tuple[Broker, Path]) -> None:
    """The ACL's `user control` (remote run control, deploy/README.md): it may send any gateway
    a command and read every answer, and nothing else; a gateway takes its own commands only."""
    control = Client(broker, "control", "control", PASSWORDS["control"])
    gw = Client(broker, "lab1-gw01", "lab1.gw01", PASSWORDS["lab1.gw01"])
    other = Client(broker, "lab2-gw01", "lab2.gw01", PASSWORDS["lab2.gw01"])
    try:
        assert not (control.refused or gw.refused or other.refused)
        gw.subscribe("remotecal/v1/lab1/gw01/control/command")
        other.subscribe("remotecal/v1/+/+/control/command")  # may ask; gets only its own
        control.subscribe_many("remotecal/v1/+/+/control/answer", "remotecal/v1/+/+/readings")
        control.publish("remotecal/v1/lab1/gw01/control/command")
        assert gw.received(wait_for="remotecal/v1/lab1/gw01/control/command") == [
            "remotecal/v1/lab1/gw01/control/command"]
        assert other.received() == []
        control.publish("remotecal/v1/lab1/gw01/readings")  # not a gateway: denied
        gw.publish("remotecal/v1/lab1/gw01/readings")  # readings are not the control account's
        gw.publish("remotecal/v1/lab1/gw01/control/answer")
        assert control.received(wait_for="remotecal/v1/lab1/gw01/control/answer") == [
            "remotecal/v1/lab1/gw01/control/answer"]
    finally:
        for c in (control, gw, other):
            c.close()
