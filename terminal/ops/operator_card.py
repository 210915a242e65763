"""`taptill operator add NAME`: registers an operator card (and PIN) as keyed hashes and prints the
[topup.operators] line; creates the terminal's operator key (0600) on first use and never prints it."""

from __future__ import annotations

import getpass
import os
import tomllib
from pathlib import Path
from typing import TextIO

from terminal.config import OPERATOR_NAME, ConfigError, pin_space_problem
from terminal.controller.operators import (
    OperatorKeyError,
    card_entry,
    new_operator_key,
    parse_operator_key,
    pin_entry,
)
from terminal.service.credentials import OPERATOR_KEY, service_source
from terminal.service.secret import read_secret
from terminal.uid import InvalidUid, normalise_uid


def add_operator(
    config_path: Path, name: str, *, with_pin: bool, stdin: TextIO, out: TextIO, err: TextIO
) -> None:
    """Read the card's UID (and with ``with_pin`` the PIN, button names separated by spaces) from
    ``stdin``, one per line (hidden prompts on a terminal); print the config line to ``out``.
    Raises ConfigError (or SecretError) with one line saying what to fix."""
    if not OPERATOR_NAME.fullmatch(name):
        raise ConfigError(f"operator name {name[:40]!r} is not usable; use up to 32 letters, digits, _ . -")
    topup = _topup_table(config_path)
    key = _operator_key(config_path, topup, err)
    raw_uid = _ask(stdin, "operator card UID (hex): ")
    try:
        uid = normalise_uid(raw_uid)
    except InvalidUid as exc:
        raise ConfigError(f"{exc}") from None
    card = card_entry(key, uid)
    if not with_pin:
        print(f'{name} = "{card}"', file=out)
    else:
        pin = _ask(stdin, "PIN (button names separated by spaces): ").split()
        _check_pin(pin, topup)
        print(f'{name} = {{ card = "{card}", pin = "{pin_entry(key, name, pin)}" }}', file=out)
    print(f"add the line above under [topup.operators] in {config_path}", file=err)


def _ask(stdin: TextIO, prompt: str) -> str:
    if stdin.isatty():
        return getpass.getpass(prompt)  # neither the UID nor the PIN stays on the screen
    line = stdin.readline()
    if not line.strip():
        raise ConfigError(f"nothing on standard input for the {prompt.split(' (')[0]}; give one per line")
    return line.strip()


def _topup_table(config_path: Path) -> dict[str, object]:
    """[topup] of the config as TOML gave it: a config with no operators yet must still be usable."""
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {config_path} does not exist; pass --config PATH") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {config_path} cannot be read: {exc}") from None
    topup = data.get("topup", {})
    return topup if isinstance(topup, dict) else {}


def _operator_key(config_path: Path, topup: dict[str, object], err: TextIO) -> bytes:
    """The key the service uses: its credential inside the unit; else the file the installed unit loads
    it from, which on a provisioned terminal is [topup] operator_key_file (created 0600 if absent);
    without a unit for this config (an answers file, a checkout) the file the config names."""
    raw_path = topup.get("operator_key_file")
    configured = None
    if isinstance(raw_path, str) and raw_path:
        configured = Path(raw_path) if Path(raw_path).is_absolute() else config_path.parent / raw_path
    source = service_source(OPERATOR_KEY, configured, config_path)
    if source.problem is not None:
        print(f"warning: {source.problem}", file=err)
    if source.unreadable is not None:
        raise ConfigError(f"{source.unreadable}; run: sudo taptill operator add")
    path = source.path
    if path is None:
        raise ConfigError(
            f"[topup] operator_key_file is not set in {config_path}; add operator_key_file = "
            '"operator.key" (created 0600 beside it on first use)'
        )
    if not source.credential and create_operator_key(path):
        print(f"created the operator key {path} (mode 0600); back it up apart from the config", file=err)
    try:
        return parse_operator_key(read_secret(path, OPERATOR_KEY.credential).reveal())
    except OperatorKeyError as exc:
        raise ConfigError(f"{source.where}: {exc}") from None


def create_operator_key(path: Path) -> bool:
    """Write a fresh operator key to ``path`` (mode 0600 from the start); False if it exists already.
    Raises ConfigError when it cannot be created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise ConfigError(
            f"cannot create the operator key {path} ({exc.strerror}); run as its owner"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(new_operator_key() + "\n")
    return True


def operator_line(key_path: Path, name: str, uid: str) -> str:
    """The [topup.operators] line for card ``uid`` (normalised) under the key in ``key_path``."""
    key = parse_operator_key(read_secret(key_path, OPERATOR_KEY.credential).reveal())
    return f'{name} = "{card_entry(key, uid)}"'


def _check_pin(pin: list[str], topup: dict[str, object]) -> None:
    """A PIN is ``pin_length`` presses of the kiosk's own buttons, so it can be entered at the kiosk, and
    there are enough of them that a cloned card cannot try them all (the config refuses it too)."""
    length = topup.get("pin_length", 4)
    if isinstance(length, int) and len(pin) != length:
        raise ConfigError(f"the PIN has {len(pin)} presses; [topup] pin_length wants {length}")
    buttons = topup.get("buttons")
    names = set(buttons) if isinstance(buttons, dict) else set()
    if isinstance(clear := topup.get("clear_button"), str):
        names.add(clear)
    unknown = sorted(set(pin) - names) if names else []
    if unknown:
        raise ConfigError(
            f"the PIN presses button {unknown[0]!r}, which the kiosk does not have; "
            f"use: {', '.join(sorted(names))}"
        )
    attempts, lockout_s = topup.get("pin_attempts", 3), topup.get("pin_lockout_s", 300.0)
    if names and isinstance(attempts, int) and isinstance(lockout_s, int | float) and attempts > 0:
        weak = pin_space_problem(len(names), len(pin), attempts, float(lockout_s))
        if weak is not None:
            raise ConfigError(f"[topup] {weak}")
