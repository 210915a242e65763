"""Every command line a person runs explains itself: each argument has help, and defaults are stated."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from provisioning.provision import _parser as provision_parser
from terminal.cli import _parser as taptill_parser
from terminal.config import DEFAULT_CONFIG_PATH
from terminal.emulator.brink.cli import parser as brink_parser
from terminal.emulator.partybroker.cli import parser as partybroker_parser
from terminal.emulator.ready2order.cli import parser as ready2order_parser
from terminal.emulator.wallet.cli import parser as wallet_parser
from terminal.emulator.yourbarmate.cli import parser as yourbarmate_parser
from tests.terminal_lab import REPO

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "taptill": taptill_parser,
    "taptill-provision": provision_parser,
    "wallet emulator": wallet_parser,
    "partybroker emulator": partybroker_parser,
    "ready2order emulator": ready2order_parser,
    "brink emulator": brink_parser,
    "yourbarmate sender": yourbarmate_parser,
}


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and every subcommand's parser below it, each with its command path."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")


def _undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            # the one-line help shown for each subcommand in the parent's --help
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            missing += [f"{path} {name}" for name in action.choices if name not in helped]
        elif not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


@pytest.mark.parametrize("program", sorted(PARSERS))
def test_every_argument_has_help(program: str) -> None:
    missing = [m for path, p in _walk(PARSERS[program](), program) for m in _undocumented(p, path)]
    assert not missing, f"arguments without help text: {missing}"


def test_config_help_states_its_default() -> None:
    commands = [
        (path, p) for path, p in _walk(taptill_parser(), "taptill") if "--config" in p._option_string_actions
    ]
    assert len(commands) >= 8, [path for path, _ in commands]  # run, tap, press, journal, queue, settle, ...
    for path, parser in commands:
        assert str(DEFAULT_CONFIG_PATH) in parser.format_help(), f"{path} --help does not name the default"


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("status", ["--json", "JSON"]),
        ("run", ["--verbose", "DEBUG"]),
        ("press", ["BUTTON", "[select] buttons"]),
    ],
)
def test_help_says_what_an_option_does(command: str, words: list[str]) -> None:
    sub = dict(_walk(taptill_parser(), "taptill"))[f"taptill {command}"]
    text = " ".join(sub.format_help().split())  # argparse wraps lines; compare words, not layout
    for word in words:
        assert word in text, f"taptill {command} --help lacks {word!r}:\n{text}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("terminal.emulator.wallet_server", "terminal.emulator.wallet"),
        ("terminal.emulator.partybroker_server", "terminal.emulator.partybroker"),
    ],
)
def test_an_emulator_still_runs_under_its_old_module_name(old: str, new: str) -> None:
    """Notes and scripts written before the emulators became packages keep working: same command line."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    said = {
        name: subprocess.run(
            [sys.executable, "-m", name, "--help"], cwd=REPO, env=env, capture_output=True, text=True
        )
        for name in (old, new)
    }
    assert said[old].returncode == 0, said[old].stderr
    assert said[new].returncode == 0, said[new].stderr
    assert said[old].stdout == said[new].stdout
    assert f"usage: python -m {new} " in said[new].stdout
