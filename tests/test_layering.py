"""The layering of SPEC section 1, read from the source (AST, nothing imported or started).

    remotecal/                       the composition root: may import every package
    pipelines/ dashboards/ firmware_bridge/
                                     import from gateway/ only its ground floor (GROUND_FLOOR)
    gateway/                         imports none of the packages above

and no cycle, neither between packages nor between modules.  Every import counts: at the top
of a module, inside a function, or under `if TYPE_CHECKING:` - a lazy import still ties the
two modules together.  `from a.b import c` is an import of the module `a.b.c` when there is
one, else of `a.b`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("remotecal", "gateway", "pipelines", "dashboards", "firmware_bridge")

# What the packages share (SPEC section 1), and why each is here.
GROUND_FLOOR = frozenset({
    "gateway",                              # __version__
    "gateway.errors",                       # the exception tree
    "gateway.config_types",                 # durations, sizes, secrets, host:port checks
    "gateway.configfile",                   # TOML reading, validation errors by key path
    "gateway.reading",                      # Reading, HealthSample, Record
    "gateway.records",                      # the records' column form
    "gateway.quantities",                   # quantities, units, roles, the channel schema
    "gateway.backoff",                      # capped, jittered exponential backoff
    "gateway.stability",                    # the plateau criterion: the pipeline's, and a remote
                                            # run's live judgement of a step
    # Small codecs that both ends of a wire share:
    "gateway.sources",                      # (package: the Source protocol and SourceBatch)
    "gateway.sources.modbus",               # (package)
    "gateway.sources.modbus.decode",        # Modbus register codec: the gateway decodes, the
                                            # virtual devices of firmware_bridge encode
    "gateway.sinks",                        # (package: the Sink protocol)
    "gateway.sinks.influxdb",               # (package)
    "gateway.sinks.influxdb.lineprotocol",  # line protocol: readings, and the pipeline's
                                            # calibration_point points
    "gateway.sinks.local",                  # (package)
    "gateway.sinks.local.store",            # the local store's file: the sink writes it,
                                            # the pipeline reads it ([source] kind = "local")
})

# Which packages each package may import (besides itself).
ALLOWED = {
    "remotecal": {"gateway", "pipelines", "dashboards", "firmware_bridge"},
    "pipelines": {"gateway"},
    "dashboards": {"gateway"},
    "firmware_bridge": {"gateway"},
    "gateway": set(),
}


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module of this code base, line) for every import statement in the file."""
    known = modules()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name, node.lineno


@cache
def graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}."""
    edges: dict[str, dict[str, int]] = {}
    for module, path in modules().items():
        edges[module] = {}
        for target, line in _imported(module, path):
            edges[module].setdefault(target, line)
    return edges


def _top(module: str) -> str:
    return module.split(".")[0]


def _where(module: str, target: str) -> str:
    return f"{modules()[module].relative_to(ROOT)}:{graph()[module][target]} imports {target}"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_graph_is_read() -> None:
    # A parser that finds nothing would pass every rule below.
    assert {"remotecal.cli", "gateway.runtime", "pipelines.run", "dashboards.build",
            "firmware_bridge.simulate"} <= set(modules())
    assert "gateway.config" in graph()["gateway.runtime"]
    assert "gateway.errors" in graph()["remotecal.cli"]


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "remotecal"])
def test_no_upward_import(package: str) -> None:
    wrong = [_where(m, t) for m, targets in graph().items() if _top(m) == package
             for t in targets if _top(t) != package and _top(t) not in ALLOWED[package]]
    assert wrong == []


@pytest.mark.parametrize("package", ["pipelines", "dashboards", "firmware_bridge"])
def test_other_packages_use_only_the_ground_floor_of_gateway(package: str) -> None:
    wrong = [_where(m, t) for m, targets in graph().items() if _top(m) == package
             for t in targets if _top(t) == "gateway" and t not in GROUND_FLOOR]
    assert wrong == []


def test_the_ground_floor_stands_on_itself() -> None:
    """Importing a ground-floor module loads only the ground floor (its packages' __init__
    files are in GROUND_FLOOR too), so the pipeline never loads the gateway's runtime."""
    assert set(modules()) >= GROUND_FLOOR, sorted(GROUND_FLOOR - set(modules()))
    for module in GROUND_FLOOR:
        parts = module.split(".")
        missing = [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in GROUND_FLOOR]
        assert missing == [], f"{module}: its package {missing} is not in GROUND_FLOOR"
    wrong = [_where(m, t) for m in GROUND_FLOOR for t in graph()[m] if t not in GROUND_FLOOR]
    assert wrong == []


def test_no_cycle_between_packages() -> None:
    edges: dict[str, set[str]] = {}
    for m, targets in graph().items():
        edges.setdefault(_top(m), set()).update(_top(t) for t in targets if _top(t) != _top(m))
    assert _cycles(edges) == []


def test_no_cycle_between_modules() -> None:
    cycles = _cycles({m: set(targets) for m, targets in graph().items()})
    described = [" <-> ".join(c) + ": " + "; ".join(_where(m, t) for m in c for t in graph()[m] if t in c)
                 for c in cycles]
    assert described == []


def test_the_rules_catch_what_they_are_for() -> None:
    # The checks on a graph with the faults this test exists for.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    upward = {("gateway", "pipelines"), ("pipelines", "remotecal"), ("dashboards", "firmware_bridge")}
    assert all(b not in ALLOWED[a] for a, b in upward)


# What remotecal's MQTT layer (gateway/mqtt/) stands on: the ground floor and the small
# connection helpers its users share - never one of its users (a source, a sink, the ingest).
MQTT_LAYER_MAY_IMPORT = GROUND_FLOOR | {"gateway.mqtt_broker", "gateway.netprobe", "gateway.ratelimit",
                                        "gateway.takeover"}


def test_the_mqtt_layer_imports_none_of_its_users() -> None:
    layer = {m for m in graph() if m == "gateway.mqtt" or m.startswith("gateway.mqtt.")}
    assert "gateway.mqtt.link" in layer
    wrong = [_where(m, t) for m in sorted(layer) for t in graph()[m] if t not in MQTT_LAYER_MAY_IMPORT | layer]
    assert wrong == []
