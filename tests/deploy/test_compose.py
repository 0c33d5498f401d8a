"""deploy/compose and deploy/influxdb.

Docker cannot run here, so the compose file is checked for what can go wrong without it:
it parses, every file it mounts exists once setup.sh has run (setup.sh runs for real, in a
copy of the tree), every `${VAR:?}` it needs is in the .env setup.sh writes, and Grafana gets
every variable the provisioned datasource reads.  The InfluxDB 1.x statements run against
the real influxd with authentication on; the InfluxDB 2 init script (no influx 2 CLI here)
is only checked by `bash -n`.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.influx import InfluxD

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"

yaml = pytest.importorskip("yaml")


def _compose() -> dict[str, Any]:
    model: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return model


def _bind_sources(model: dict[str, Any]) -> list[str]:
    sources = []
    for service in model["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                sources.append(source)
    return sources


def test_compose_has_the_three_services() -> None:
    model = _compose()
    assert set(model["services"]) == {"mosquitto", "influxdb", "grafana"}
    assert model["services"]["mosquitto"]["ports"] == ["8883:8883"]
    named = {v.split(":")[0] for s in model["services"].values() for v in s.get("volumes", [])
             if not v.startswith(".")}
    assert named == set(model["volumes"])


def test_mounted_repository_files_exist() -> None:
    missing = [s for s in _bind_sources(_compose())
               if not s.startswith("./secrets/") and not (COMPOSE.parent / s).exists()]
    assert not missing


@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None,
                    reason="setup.sh needs openssl and mosquitto_passwd (or docker)")
def test_after_setup_every_mount_and_variable_is_there(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    shutil.copytree(ROOT / "dashboards" / "json", tmp_path / "dashboards" / "json")
    compose_dir = tmp_path / "deploy" / "compose"
    shutil.rmtree(compose_dir / "secrets", ignore_errors=True)
    (compose_dir / ".env").unlink(missing_ok=True)
    setup = [str(compose_dir / "setup.sh")]
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "BROKER_HOST": "broker.example.org"}
    subprocess.run(setup, env=env, check=True, capture_output=True, timeout=120)
    first = (compose_dir / ".env").read_text()
    subprocess.run(setup, env=env, check=True, capture_output=True, timeout=120)
    assert (compose_dir / ".env").read_text() == first, "setup.sh must keep existing secrets"

    for source in _bind_sources(_compose()):
        assert (compose_dir / source).exists(), source
    defined = dict(re.findall(r"^(\w+)=(\S+)$", first, re.M))
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required <= defined.keys()
    acl = (compose_dir / "secrets/mosquitto/remotecal.acl").read_text()
    assert "user ingest" in acl
    assert (compose_dir / "secrets/mosquitto/remotecal.passwd").read_text().startswith("ingest:")


def test_grafana_gets_what_the_datasource_reads() -> None:
    grafana = _compose()["services"]["grafana"]
    datasource = (ROOT / "dashboards/json/provisioning/datasources/remotecal.yaml").read_text()
    needed = set(re.findall(r"\$(REMOTECAL_\w+)", datasource))
    assert needed and needed <= set(grafana["environment"])


def test_grafana_image_matches_the_sdk_flavour() -> None:
    """The dashboards are built with the SDK generated for one Grafana version; run that one."""
    image = _compose()["services"]["grafana"]["image"]
    sdk = importlib.metadata.version("grafana-foundation-sdk")
    flavour = sdk.split("!")[-1]
    assert image.endswith(":" + flavour), (image, sdk)


def test_influxdb2_init_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "deploy/influxdb/init-remotecal.sh")], check=True)


@pytest.mark.integration
def test_influxdb1_statements_give_each_user_its_rights(tmp_path: Path) -> None:
    statements = [line for line in (ROOT / "deploy/influxdb/influxdb1.iql").read_text().splitlines()
                  if line.strip() and not line.startswith("#")]
    with InfluxD(tmp_path / "influxd", auth=True) as influx:
        for statement in statements:
            influx.query(statement)
        passwords = dict(re.findall(r"CREATE USER \"(\w+)\" WITH PASSWORD '([^']+)'", "\n".join(statements)))
        assert set(passwords) == {"gateway", "grafana", "pipeline"}

        def write(user: str) -> int:
            r = httpx.post(f"{influx.url}/write", params={"db": "calibration"}, auth=(user, passwords[user]),
                           content=b"reading,channel=ref-t value=23.4 1700000000000000000", trust_env=False)
            return r.status_code

        def read(user: str) -> bool:
            r = httpx.post(f"{influx.url}/query", auth=(user, passwords[user]), trust_env=False,
                           data={"db": "calibration", "q": 'SELECT * FROM "reading"'})
            return r.status_code == 200 and "error" not in r.text

        assert write("gateway") == 204 and not read("gateway")
        assert write("grafana") == 403 and read("grafana")
        assert write("pipeline") == 204 and read("pipeline")
