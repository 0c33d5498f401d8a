"""The base install is an edge gateway's (pyproject.toml); `pipeline`, `dashboards` and `demo`
bring the rest, and a command whose extra is missing says which one, in one line."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from remotecal.cli import main

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Distribution -> the module it brings, for the extras' packages.
EXTRA_ONLY = {"scipy": "scipy", "matplotlib": "matplotlib", "qrcode": "qrcode", "lxml": "lxml",
              "grafana-foundation-sdk": "grafana_foundation_sdk", "grafana-client": "grafana_client",
              "rich": "rich", "amqtt": "amqtt"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_the_base_install_has_none_of_the_extras_packages() -> None:
    base = {_name(r) for r in PROJECT["dependencies"]}
    assert base.isdisjoint(EXTRA_ONLY), sorted(base & set(EXTRA_ONLY))
    extras = PROJECT["optional-dependencies"]
    assert {"pipeline", "dashboards", "demo", "all", "test"} <= set(extras)
    assert extras["all"] == ["remotecal[pipeline,dashboards,demo]"]


def test_gateway_and_firmware_bridge_import_no_extra_package() -> None:
    # `remotecal gateway run` and `simulate` on a base install: no module of theirs needs an extra.
    wrong = []
    for package in ("gateway", "firmware_bridge"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                wrong += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                          if n.partition(".")[0] in EXTRA_ONLY.values()]
    assert wrong == []


def test_every_requirement_has_a_minimum_and_0x_ones_an_upper_bound() -> None:
    requirements = [*PROJECT["dependencies"]] + [r for extra in PROJECT["optional-dependencies"].values()
                                                 for r in extra if not r.startswith("remotecal[")]
    for r in requirements:
        assert re.search(r">=|==", r), f"{r}: no minimum version"
        minimum = re.search(r"(?:>=|==)(?:\d+!)?(\d+)\.", r)
        if minimum and minimum.group(1) == "0":
            assert "<" in r, f"{r}: a 0.x package needs an upper bound"


@pytest.mark.parametrize(("argv", "extra", "module"), [
    (["pipeline", "run", "-c", "p.toml"], "pipeline", "scipy"),
    (["dashboards", "build", "--out", "OUT"], "dashboards", "grafana_foundation_sdk"),
    (["demo", "--out", "OUT"], "demo", "rich"),
    (["demo", "--out", "OUT"], "demo", "lxml"),
])
def test_a_command_whose_extra_is_missing_names_it_in_one_line(
        argv: list[str], extra: str, module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == module else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    argv = [str(tmp_path / a) if a == "OUT" else a for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"remotecal {argv[0]}: needs the '{extra}' extra ({module} not installed): "
                   f"pip install 'remotecal[{extra}]'"]
    assert not (tmp_path / "OUT").exists()


def _third_party_imports(folder: Path) -> dict[str, str]:
    """Top-level module -> where it is first imported, for the modules of ``folder`` that are
    neither the standard library's nor this project's (nor the test suite's)."""
    own = {"remotecal", "gateway", "firmware_bridge", "pipelines", "dashboards", "bench", "tests"}
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for n in names:
                top = n.partition(".")[0]
                if top and top not in sys.stdlib_module_names and top not in own:
                    found.setdefault(top, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_package_the_benchmarks_import_is_a_requirement_of_what_make_bench_installs() -> None:
    # A fresh `make bench` stopped at bench.pipeline: pandas (its baseline) was in no extra.
    extras = PROJECT["optional-dependencies"]
    installed = {_name(r) for r in [*PROJECT["dependencies"], *extras["pipeline"], *extras["dashboards"],
                                    *extras["demo"], *extras["test"], *extras.get("bench", [])]}
    distributions = importlib.metadata.packages_distributions()
    missing = {module: where for module, where in _third_party_imports(ROOT / "bench").items()
               if not {_name(d).replace("_", "-") for d in distributions.get(module, [module])} & installed}
    assert missing == {}
    assert "pandas" in {_name(r) for r in extras["bench"]}


def test_make_bench_installs_the_bench_extra_and_make_test_does_not() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")

    def commands(target: str) -> list[str]:
        # -n: print the recipes only; -B: as on a fresh checkout (every target out of date)
        out = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
        return out.splitlines()

    bench = commands("bench")
    installs = [i for i, line in enumerate(bench) if "pip install" in line and "[all,test,bench]" in line]
    runs = [i for i, line in enumerate(bench) if "-m bench" in line]
    assert installs and runs and installs[0] < runs[0], bench
    assert not any("bench]" in line for line in commands("test"))
