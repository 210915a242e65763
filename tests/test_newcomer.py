"""The newcomer check: every command README documents runs from the checkout, or fails with one line.

The commands are read from README.md itself, so a command added there is run here without anyone
editing this file. What counts as a documented command: an indented code line, or an inline code span,
whose program is ``taptill``, ``taptill-provision``, ``python -m terminal…|hw…|provisioning…`` or
``curl`` (``make`` targets are left out: they install packages and run the whole suite, which is
what runs this test). In a table row of commands, the flag-only spans of the same row (``--hold``)
are run as variants of the row's command.

How a README command becomes a runnable one (``runnable``):
- ``[--flag X]`` optional parts: the command without them, and with each one alone;
- ``a|b`` (``a\\|b`` in tables): one command per alternative;
- placeholders: ``PATH``, ``config.toml`` and ``/etc/taptill/config.toml`` are this test's terminal
  config; ``UID`` a demo card; ``BUTTON`` a button of that config; ``NAME`` an operator's name;
  ``KEY`` an idempotency key no sale has; ``FILE``/``F``/``DIR`` paths in a temporary folder;
  ``M`` the mode ``select``; ``PRODUCT``, ``AMOUNT`` and ``DELIVERY_ID`` a product, a count and a
  yourbarmate delivery (``taptill stock``);
  ``docs/screens`` a temporary folder (nothing is written into the checkout); the provisioning
  command's ``<…>`` answers are the README's wallet emulator, its token and product 1;
- ports 8000 and 8001 (the README's emulators) are free ports picked here, 8002 (the Brink emulator's)
  is 0; ``taptill`` is
  ``python -m terminal`` and ``taptill-provision`` ``python -m provisioning.provision`` of this
  checkout; a ``taptill`` command shown without ``--config`` gets this test's config;
- ``taptill-provision`` runs with ``--root TMP --dry-run`` added and without ``sudo``: it must not
  touch this machine;
- long-running commands run in the background: the README's wallet and Partybroker emulator commands
  are started first (everything else talks to them), then ``taptill run`` (the other commands run while
  it is up), and each must stop with exit 0 on SIGTERM; ``taptill recover`` runs after the terminal has
  stopped.

What each must do: exit 0, or exit non-zero with one line on stderr (argparse's usage lines before
its one ``error:`` line are allowed); never print a traceback.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from terminal.cli import _parser as taptill_parser

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PROGRAMS = ("taptill", "taptill-provision", "python", "curl")
PYTHON_PACKAGES = ("terminal", "hw", "provisioning")
WALLET_EMULATOR = "terminal.emulator.wallet"
PARTYBROKER_EMULATOR = "terminal.emulator.partybroker"
BRINK_EMULATOR = "terminal.emulator.brink"
CARD = "04A1B2C3D4E5F6"  # a demo wallet with 20 €
COMMAND_TIMEOUT_S = 120.0  # only against a hang: no command here takes more than a few seconds


@dataclass(frozen=True)
class Documented:
    text: str  # as README shows it
    line: int


# --- reading README --------------------------------------------------------------------------------


def _is_command(text: str) -> bool:
    words = _words(text)
    if not words or words[0] not in PROGRAMS:
        return False
    if words[0] == "python":
        return len(words) > 2 and words[1] == "-m" and words[2].split(".")[0] in PYTHON_PACKAGES
    return True


def _words(text: str) -> list[str]:
    """The command's words after ``sudo`` and ``NAME=value`` environment assignments."""
    text = re.sub(r"<[^>]*>", lambda m: m.group(0).replace(" ", "_"), text)  # <terminal API token>
    words = text.replace("\\|", "|").split()
    while words and (words[0] == "sudo" or re.fullmatch(r"[A-Z_]+=\S*", words[0])):
        words = words[1:]
    return words


def readme_commands(text: str) -> list[Documented]:
    """Every documented command, in README order (see the module docstring for what counts)."""
    found: list[Documented] = []
    in_fence = False
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        i += 1
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if line.startswith("    ") and line.strip():
            command = line.strip()
            while command.endswith("\\") and i < len(lines):  # a shell line continued
                command = command[:-1].rstrip() + " " + lines[i].strip()
                i += 1
            command = re.sub(r"\s+#\s.*$", "", command)  # a comment after the command
            if _is_command(command):
                found.append(Documented(command, number))
            continue
        spans = re.findall(r"`([^`]+)`", line)
        commands = [s for s in spans if _is_command(s)]
        found += [Documented(c, number) for c in commands]
        if line.startswith("|") and len(commands) == 1:
            flags = [s for s in spans if re.fullmatch(r"--[a-z-]+", s)]
            found += [Documented(f"{commands[0]} {flag}", number) for flag in flags]
    return found


# --- from a README command to what runs ---------------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    tmp: Path
    config: Path
    wallet_port: int
    partybroker_port: int
    wallet_url: str
    token: str


def _expand(text: str) -> list[str]:
    """Optional ``[…]`` parts (none, or each alone) and ``a|b`` alternatives, as plain commands."""
    text = text.replace("\\|", "|")
    optional = re.findall(r"\[(--[^\]]+)\]", text)
    base = re.sub(r"\s*\[--[^\]]+\]", "", text)
    variants = [base] + [f"{base} {part}" for part in optional]
    out: list[str] = []
    for variant in variants:
        words = variant.split()
        choice = next((w for w in words if "|" in w and not w.startswith(("http", "'", '"'))), None)
        if choice is None:
            out.append(variant)
            continue
        for alternative in choice.split("|"):
            out += _expand(variant.replace(choice, alternative, 1))
    return out


def _config_commands() -> set[str]:
    parser = taptill_parser()
    subs = next(a for a in parser._actions if a.dest == "command")
    return {name for name, sub in subs.choices.items() if "--config" in sub._option_string_actions}  # type: ignore[union-attr]


def runnable(text: str, lab: Lab) -> list[list[str]]:
    """The argv lists a README command stands for (module docstring: the mapping)."""
    # One pass: replacing 8000 and then 8001 turned a wallet port of 58001 into "5" + Partybroker's port.
    ports = {"8000": str(lab.wallet_port), "8001": str(lab.partybroker_port), "8002": "0"}  # Brink: no line
    text = re.sub(r"(?<![0-9])800[012](?![0-9])", lambda m: ports[m.group()], text)  # talks to Brink's
    text = re.sub(r"https://pretix\.example/\S*/wallet", lab.wallet_url, text)
    text = text.replace("<product id>[,<id>...]", "1").replace("<terminal API token>", lab.token)
    values = {
        "PATH": str(lab.config),
        "config.toml": str(lab.config),
        "/etc/taptill/config.toml": str(lab.config),
        "UID": CARD,
        "BUTTON": "espresso",
        "NAME": "olga",
        "KEY": "tNoSaleHasThisKey000000000",
        "FILE": str(lab.tmp / "moved-aside.sqlite3"),
        "F": str(lab.tmp / "screens.gif"),
        "DIR": str(lab.tmp / "dir"),
        "M": "select",
        "PRODUCT": "espresso",  # taptill stock set: this config keeps no stock, which it says in one line
        "AMOUNT": "20l",
        "DELIVERY_ID": "123456789",
        "T": "2026-12-01T06:00",  # taptill journal --csv --since T (a time)
        "S": "pending",  # taptill journal --state S
        "QUARANTINE_ID": "1",  # taptill stock replay: no stock kept here either, said in one line
        "docs/screens": str(lab.tmp / "screens"),
    }
    commands = []
    for variant in _expand(text):
        words = [values.get(w, w) for w in shlex.split(variant)]
        env = [w for w in words if re.fullmatch(r"[A-Z_]+=.*", w)]
        words = [w for w in words if w != "sudo" and w not in env]
        upper = re.compile(r"[A-Z]{1,8}" if words[0] != "curl" else r"(?!GET|POST|DELETE)[A-Z]{1,8}")
        left = [w for w in words if upper.fullmatch(w) or "<" in w or "…" in w]
        assert not left, f"README command {text!r}: no value for {left}; add one to runnable()"
        program, args = words[0], words[1:]
        if program == "taptill":
            argv = [sys.executable, "-m", "terminal", *args]
            if args and args[0] in _config_commands() and "--config" not in args:
                argv += ["--config", str(lab.config)]
        elif program == "taptill-provision":
            argv = [sys.executable, "-m", "provisioning.provision", *args]
            argv += ["--root", str(lab.tmp / "root"), "--dry-run"]
        elif program == "python":
            argv = [sys.executable, *args]
        else:
            argv = words
        commands.append(["env", *env, *argv] if env else argv)
    return commands


# --- running and judging ------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)  # this checkout, whatever the cwd
    env.pop("TAPTILL_CRASHPOINT", None)
    return env


def problem(argv: list[str], code: int, stdout: str, stderr: str) -> str | None:
    """None when a newcomer is served: exit 0, or one line on stderr saying what is wrong."""
    if "Traceback" in stdout + stderr:
        return f"printed a traceback:\n{stderr[-2000:] or stdout[-2000:]}"
    if code == 0:
        return None
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage:"):
        lines = [line for line in lines if not line.startswith(("usage:", " "))]  # argparse's usage
    if len(lines) != 1:
        return f"exit {code} with {len(lines)} line(s) on stderr, not one:\n{stderr[-2000:]}\n{stdout[-500:]}"
    return None


def run_once(argv: list[str], cwd: Path) -> str | None:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_S,
    )
    return problem(argv, proc.returncode, proc.stdout, proc.stderr)


class Background:
    """A long-running documented command; stopped with SIGTERM, which must end it with exit 0."""

    def __init__(self, argv: list[str], cwd: Path, name: str) -> None:
        self.argv = argv
        self.out = (cwd / f"{name}.out").open("w+")
        self.err = (cwd / f"{name}.err").open("w+")
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=_env(), stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL
        )

    def text(self) -> tuple[str, str]:
        self.out.flush()
        self.err.flush()
        return Path(self.out.name).read_text(), Path(self.err.name).read_text()

    def wait_for(self, what: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out, err = self.text()
            if what in out + err:
                return out
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv} exited {self.proc.returncode}:\n{err[-2000:]}")
            time.sleep(0.05)
        raise AssertionError(f"{self.argv} did not say {what!r} in {timeout} s")

    def start_and_stop(self, ready: str) -> str | None:
        """Once it says ``ready``, stop it (stop()); if it exits before, judge that exit (problem())."""
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while time.monotonic() < deadline:
            out, err = self.text()
            if ready in out + err:
                return self.stop()
            code = self.proc.poll()
            if code is not None:
                out, err = self.text()
                return problem(self.argv, code, out, err)
            time.sleep(0.05)
        return f"did not say {ready!r} in {COMMAND_TIMEOUT_S} s"

    def stop(self) -> str | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=COMMAND_TIMEOUT_S)
        out, err = self.text()
        if code != 0:
            return f"exit {code} on SIGTERM:\n{err[-2000:]}"
        return problem(self.argv, code, out, err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def test_the_readme_ports_become_the_tests_ports_whatever_digits_those_hold(tmp_path: Path) -> None:
    lab = Lab(tmp_path, tmp_path / "config.toml", 58001, 38000, "", "")
    cmd = "python -m terminal.emulator.wallet --port 8000 & curl http://127.0.0.1:8001/x --port 8002"
    assert runnable(cmd, lab)[0][1:] == [
        "-m", "terminal.emulator.wallet", "--port", "58001", "&", "curl",
        "http://127.0.0.1:38000/x", "--port", "0",
    ]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(tmp: Path, wallet_url: str, token: str, partybroker_port: int) -> Path:
    """A select-mode terminal (so BUTTON means something) on the README's two emulators."""
    (tmp / "wallet.token").write_text(token)
    (tmp / "wallet.token").chmod(0o600)
    (tmp / "partybroker.password").write_text("demo")
    (tmp / "partybroker.password").chmod(0o600)
    config = tmp / "config.toml"
    config.write_text(
        f"""
[terminal]
mode = "select"
state_dir = "state"
products = [1]
description = "Kaffee"
screen_hold_s = 0.2

[wallet]
base_url = "{wallet_url}"
token_file = "wallet.token"

[reader]
socket = "state/tap.sock"

[display]
kind = "none"

[select]
buttons = {{ espresso = 1, cappuccino = 2 }}
cancel_button = "cancel"

[partybroker]
base_url = "http://127.0.0.1:{partybroker_port}/api"
party_id = "1234"
username = "taptill"
password_file = "partybroker.password"
[partybroker.drinks]
1 = {{ id = 145 }}
"""
    )
    return config


def _module(argv: list[str]) -> str | None:
    return argv[argv.index("-m") + 1] if "-m" in argv else None


def test_readme_documents_the_commands_this_check_runs() -> None:
    """The reading of README finds the commands a newcomer is told about (the check is not empty)."""
    commands = [c.text for c in readme_commands(README.read_text(encoding="utf-8"))]
    for expected in (
        "taptill run",
        "taptill tap",
        "taptill press",
        "taptill demo",
        "taptill status",
        "taptill doctor",
        "taptill recover",
        "taptill-provision",
        WALLET_EMULATOR,
        PARTYBROKER_EMULATOR,
        BRINK_EMULATOR,
        "curl",
    ):
        assert any(expected in c for c in commands), f"no README command with {expected!r}"


def test_every_readme_command_runs_or_says_why_in_one_line(tmp_path: Path) -> None:
    documented = readme_commands(README.read_text(encoding="utf-8"))
    wallet_port, partybroker_port = _free_port(), _free_port()
    lab = Lab(tmp_path, tmp_path / "config.toml", wallet_port, partybroker_port, "", "")
    # The emulators first: the commands README shows for them, started as documented.
    emulator_lines = {  # the one on README's port, which its curl lines talk to
        module: next(d for d in documented if module in d.text and f"--port {port}" in d.text)
        for module, port in ((WALLET_EMULATOR, 8000), (PARTYBROKER_EMULATOR, 8001))
    }
    started: list[Background] = []
    failures: list[str] = []
    ran: set[tuple[str, ...]] = set()
    try:
        wallet = Background(runnable(emulator_lines[WALLET_EMULATOR].text, lab)[0], tmp_path, "wallet")
        started.append(wallet)
        ready = json.loads(wallet.wait_for("control_url").splitlines()[0])
        partybroker = Background(
            runnable(emulator_lines[PARTYBROKER_EMULATOR].text, lab)[0], tmp_path, "partybroker"
        )
        started.append(partybroker)
        partybroker.wait_for('"premium"')
        lab = Lab(
            tmp_path,
            _write_config(tmp_path, ready["base_url"], ready["api_token"], partybroker_port),
            wallet_port,
            partybroker_port,
            ready["base_url"],
            ready["api_token"],
        )
        emulators = {tuple(b.argv) for b in started}

        plan = [(d, argv) for d in documented for argv in runnable(d.text, lab)]
        runs = [(d, a) for d, a in plan if a[1:3] == ["-m", "terminal"] and a[3:4] == ["run"]]
        recovers = [(d, a) for d, a in plan if a[1:3] == ["-m", "terminal"] and a[3:4] == ["recover"]]
        others = [
            (d, a)
            for d, a in plan
            if (d, a) not in runs and (d, a) not in recovers and tuple(a) not in emulators
        ]
        assert runs, "README documents no `taptill run`"

        terminal = Background(runs[0][1], tmp_path, "run")
        started.append(terminal)
        terminal.wait_for("taptill ready")
        ran.add(tuple(runs[0][1]))
        for doc, argv in others:
            if tuple(argv) in ran:
                continue
            ran.add(tuple(argv))
            module = _module(argv)
            if module in (WALLET_EMULATOR, PARTYBROKER_EMULATOR, BRINK_EMULATOR):
                # another emulator command: it must start and stop cleanly on its own ports
                other = Background(argv, tmp_path, f"emulator-{len(ran)}")
                started.append(other)
                said = other.start_and_stop("{")
            else:
                said = run_once(argv, tmp_path)
            if said:
                failures.append(f"README line {doc.line}: `{doc.text}`\n  ran {shlex.join(argv)}\n  {said}")
        said = terminal.stop()
        if said:
            failures.append(f"`taptill run` (README line {runs[0][0].line}): {said}")
        for doc, argv in runs[1:] + recovers:
            if tuple(argv) in ran:
                continue
            ran.add(tuple(argv))
            if doc in [d for d, _ in runs]:
                variant = Background(argv, tmp_path, f"run-{len(ran)}")
                started.append(variant)
                variant.wait_for("taptill ready")
                said = variant.stop()
            else:
                said = run_once(argv, tmp_path)
            if said:
                failures.append(f"README line {doc.line}: `{doc.text}`\n  ran {shlex.join(argv)}\n  {said}")
        for emulator in started[:2]:
            said = emulator.stop()
            if said:
                failures.append(f"{shlex.join(emulator.argv)}: {said}")
    finally:
        for process in started:
            process.kill()
    assert len(ran) >= 20, f"only {len(ran)} commands ran"
    assert not failures, "\n\n".join(failures)
