"""The `remotecal` command line as a person meets it: every option says what it is for and
what it defaults to; `-V`/`--version` names the version and the commit."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import __version__
from remotecal.cli import parser

ROOT = Path(__file__).resolve().parents[1]


def _parsers(p: argparse.ArgumentParser, name: str = "remotecal") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


PARSERS = dict(_parsers(parser()))


def test_every_command_is_covered() -> None:
    assert {"remotecal gateway run", "remotecal pipeline run", "remotecal demo", "remotecal dashboards push",
            "remotecal certificate verify", "remotecal keys new"} <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_help_and_its_default(name: str) -> None:
    p = PARSERS[name]
    formatter = p._get_formatter()
    for action in p._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        option = action.option_strings[-1]
        assert action.help, f"{name} {option}: no help text"
        if action.default not in (None, False, argparse.SUPPRESS, []):
            shown = formatter._expand_help(action)
            said = {str(action.default), "the current one"} | (
                {f"{action.default:g}"} if isinstance(action.default, float) else set())
            assert "default" in shown and any(s in shown for s in said), (
                f"{name} {option}: its default {action.default!r} is not in its help: {shown!r}")


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_prints_the_version_and_the_commit(flag: str) -> None:
    done = subprocess.run([sys.executable, "-m", "remotecal", flag], capture_output=True, text=True,
                          timeout=60, check=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    match = re.fullmatch(r"remotecal (\S+) \(commit ([0-9a-f]{12})(-dirty)?\)\n", done.stdout)
    assert match, done.stdout
    assert match[1] == __version__
    assert match[2] == head[:12]  # this checkout (an editable install) is what runs
