"""Procedures (gateway.procedure): expansion of up-down sweeps, repeats and the final step,
stability criteria by key over [defaults], and every problem named by its key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.procedure import load_procedure, parse_procedure
from gateway.stability import Criteria

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "procedure.toml"

HEAD = """
[procedure]
name = "p"
[defaults]
settle_min_s = 60
record_s = 120
max_s = 900
[defaults.stability]
window_s = 60
max_std = 0.05
max_slope_per_min = 0.02
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_procedure(text, "t.toml")
    return exc.value.problems


def test_example_expands_to_an_up_down_sweep_a_point_and_a_final_return() -> None:
    p = load_procedure(EXAMPLE)
    assert p.sha256 == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert [s.setpoints.get("humidity") for s in p.steps] == [30, 50, 70, 50, 30, 30, 50]
    assert [s.setpoints.get("temperature") for s in p.steps] == [23, 23, 23, 23, 23, 30, 23]
    assert [s.direction for s in p.steps] == ["up", "up", "up", "down", "down", "up", None]
    assert [s.index for s in p.steps] == list(range(7))
    assert [s.final for s in p.steps] == [False] * 6 + [True]
    assert p.final is p.steps[-1] and p.final.record_s == 0 and p.final.settle_min_s == 0
    assert p.steps[5].on_not_stable == "stop" and p.steps[0].on_not_stable == "continue"
    assert p.steps[5].record_s == 5 and p.steps[0].record_s == 10
    s = p.steps[0]
    assert s.stability == Criteria(window_s=10, max_std=0.05, max_slope_per_min=1.2)
    assert s.criteria("humidity") == Criteria(window_s=10, max_std=0.5, max_slope_per_min=12.0)
    assert s.criteria("temperature") == s.stability
    assert p.references == {"temperature": ["ref-t"], "humidity": ["ref-rh"]}


def test_repeats_of_an_entry_and_of_the_whole_list() -> None:
    p = parse_procedure(HEAD.replace('name = "p"', 'name = "p"\nrepeat = 2') + """
[[steps]]
temperature = [10, 20]
repeat = 2
[[steps]]
temperature = 15
""")
    assert [s.setpoints["temperature"] for s in p.steps] == [10, 20, 10, 20, 15] * 2
    assert [s.direction for s in p.steps] == ["up", "up", "down", "up", "down", "down", "up", "down", "up", "down"]
    assert len({s.name for s in p.steps}) == len(p.steps)  # every step tells where it is


def test_down_up_and_the_pipelines_direction_rule() -> None:
    p = parse_procedure(HEAD + """
[[steps]]
humidity = [80, 50, 20]
sequence = "down_up"
[[steps]]
humidity = 50
[[steps]]
humidity = 50
""")
    assert [s.setpoints["humidity"] for s in p.steps] == [80, 50, 20, 50, 80, 50, 50]
    # first "up", then by the change; an unchanged setpoint keeps the previous direction
    assert [s.direction for s in p.steps] == ["up", "down", "down", "up", "up", "down", "down"]


def test_a_step_overrides_defaults_key_by_key() -> None:
    p = parse_procedure(HEAD + """
[[steps]]
temperature = 20
max_s = 3600
stability = { max_std = 0.1, humidity = { max_std = 1.0 } }
""")
    s = p.steps[0]
    assert (s.settle_min_s, s.record_s, s.max_s) == (60, 120, 3600)
    assert s.stability == Criteria(window_s=60, max_std=0.1, max_slope_per_min=0.02)
    assert s.criteria("humidity") == Criteria(window_s=60, max_std=1.0, max_slope_per_min=0.02)


@pytest.mark.parametrize(("body", "problem"), [
    ('[[steps]]\ntemperature = 20\ntemprature = 3', "steps[0].temprature: unknown key (a typo?)"),
    ("[[steps]]\nhumidity = 120", "steps[0].humidity: 120.0 is outside 0..100 %rh"),
    ("[[steps]]\nhumidity = [10, 130]", "steps[0].humidity[1]: 130.0 is outside 0..100 %rh"),
    ("[[steps]]\nname = 'x'", "steps[0]: sets no setpoint"),
    ("[[steps]]\nhumidity = [30, 20]\nsequence = 'up_down'", "steps[0].humidity: a up_down sequence"),
    ("[[steps]]\nhumidity = 30\nsequence = 'up_down'", "steps[0].sequence: 'up_down' needs a list"),
    ("[[steps]]\nhumidity = [30]\ntemperature = [20]", "steps[0]: lists values for temperature and humidity"),
    ("[[steps]]\nhumidity = 30\nmax_s = 100", "steps[0].max_s: 100 s is shorter than settle_min_s + record_s"),
    ("[[steps]]\nhumidity = 30\nmax_s = 400\nstability = { humidity = { window_s = 300 } }",
     "steps[0].max_s: 400 s is shorter than stability window_s + record_s (420 s)"),
    ("[[steps]]\nhumidity = 30\non_not_stable = 'retry'", "steps[0].on_not_stable:"),
    ("[[steps]]\nhumidity = 30\nstability = { window_s = -1 }", "steps[0].stability.window_s:"),
    ("[[steps]]\nhumidity = 30\n[final]\nmax_s = 10", "final: sets no setpoint"),
    ("[[steps]]\nhumidity = 30\n[[steps]]\nhumidity = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]\nrepeat = 1000",
     "steps[1]: the procedure would expand to more than 10000 steps"),
])
def test_each_problem_is_named_by_its_key(body: str, problem: str) -> None:
    problems = _problems(HEAD + body)
    assert any(line.startswith(problem) for line in problems), problems


def test_every_problem_at_once_and_missing_keys_say_where_they_may_be() -> None:
    problems = _problems("""
[procedure]
name = "p"
references = { pressure = "p1" }
[[steps]]
temperature = 20
[[steps]]
humidity = 200
""")
    assert "procedure.references.pressure: unknown quantity (one of temperature, humidity)" in problems
    for k in ("settle_min_s", "record_s", "max_s"):
        assert f"steps[0].{k}: required (here or in [defaults])" in problems
    assert "steps[0].stability.window_s: required (here or in [defaults.stability])" in problems
    assert "steps[1].humidity: 200.0 is outside 0..100 %rh" in problems


def test_no_steps_bad_toml_and_unreadable_file(tmp_path: Path) -> None:
    assert _problems('[procedure]\nname = "p"') == ["steps: required key is missing"]
    assert _problems("[procedure\n")[0].startswith("t.toml: not valid TOML")
    with pytest.raises(ConfigError, match="cannot read the procedure"):
        load_procedure(tmp_path / "nope.toml")


def test_cli_check_prints_the_steps_or_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from remotecal.cli import main

    assert main(["procedure", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{EXAMPLE}: ok - 'Thermo-hygrometer") and "7 step(s) (6 recorded" in out[0]
    assert len(out) == 8 and out[4].startswith("  3  RH sweep 50 %rh -> temperature 23 degC, humidity 50 %rh [down]")
    bad = tmp_path / "p.toml"
    bad.write_text(HEAD + "[[steps]]\nhumidity = [10, 120]\nmax_s = 10\n")
    assert main(["procedure", "check", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{bad}: steps[0].max_s: 10 s is shorter than settle_min_s + record_s (180 s): the step "
                   "could never finish stable",
                   f"{bad}: steps[0].humidity[1]: 120.0 is outside 0..100 %rh"]


SITE_EXAMPLE = EXAMPLE.with_name("site.toml")


def test_against_a_site_references_controllers_and_ranges(tmp_path: Path) -> None:
    from gateway.config import load_config
    from gateway.procedure import site_problems

    site = load_config(SITE_EXAMPLE)
    assert site_problems(load_procedure(EXAMPLE), site) == []
    text = EXAMPLE.read_text().replace('humidity = "ref-rh"', 'humidity = ["ref-rh", "ref/rh"]')
    text = text.replace("humidity = [30.0, 50.0, 70.0]", "humidity = [5.0, 50.0, 70.0]")
    assert site_problems(parse_procedure(text), site) == [
        # "lab-1-rh" would be read (the MQTT source's channel {1}-rh); "ref/rh" cannot be
        "procedure.references.humidity: no source of the site reads channel 'ref/rh'",
        "steps[0].humidity: 5 (step 0) is outside the range of controllers.modbus[0] (chamber): 10..98",
    ]
    assert site_problems(parse_procedure(text), load_config(SITE_EXAMPLE).model_copy(
        update={"controllers": type(site.controllers)()})) == [
        "procedure.references.humidity: no source of the site reads channel 'ref/rh'",
        "the site has no [[controllers.*]]: nothing would write the setpoints"]


def test_cli_check_against_a_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from remotecal.cli import main

    assert main(["procedure", "check", str(EXAMPLE), "-c", str(SITE_EXAMPLE)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"; runs on {SITE_EXAMPLE}")
    proc = tmp_path / "p.toml"
    proc.write_text(EXAMPLE.read_text().replace("temperature = 30.0", "temperature = 300.0"))
    assert main(["procedure", "check", str(proc), "-c", str(SITE_EXAMPLE)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{proc}: steps[1].temperature: 300 (step 5) is outside the range of controllers.modbus[0] (chamber): "
        f"-40..180 (on {SITE_EXAMPLE})"]
    site = tmp_path / "site.toml"
    site.write_text("[gateway]\nsite = 's'\n")
    assert main(["procedure", "check", str(EXAMPLE), "-c", str(site)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith(f"{site}: ") for line in err)
