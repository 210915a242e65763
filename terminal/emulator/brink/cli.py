"""The Brink emulator's command line: ``python -m terminal.emulator.brink --port 0``.

It prints one JSON line (``url``, ``control_url``, ``business_date``, ``style``, and the token files'
paths ``access_token_file``/``location_token_file`` when it was given or wrote them, never their values)
once listening and runs until SIGTERM or SIGINT, then prints its stats on stderr. The tokens it accepts
are read from files (or are the demo tokens, which ``--demo-token-dir`` writes into 0600 files for a
terminal's ``[brink]``), never taken from the command line, where other users could read them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from terminal.emulator.brink.answers import STYLES
from terminal.emulator.brink.server import (
    DEMO_ACCESS_TOKEN,
    DEMO_LOCATION_TOKEN,
    BrinkEmulator,
    business_date_now,
)
from terminal.emulator.faults import FaultConfigError, FaultInjector
from terminal.emulator.serving import stop_signal, tcp_port, wait_for_stop_signal


def parser() -> argparse.ArgumentParser:
    """The emulator's command line (every option with its help, tested in tests/test_cli_help.py)."""
    p = argparse.ArgumentParser(
        prog="python -m terminal.emulator.brink",
        description="Serve a PAR Brink Ordering service emulator (GetParty, ApplyPayment) on 127.0.0.1 "
        "with demo tables 1..12; prints one JSON line once listening.",
    )
    p.add_argument("--port", type=tcp_port, default=0, help="TCP port; 0 picks a free one")
    p.add_argument(
        "--access-token-file", type=Path, help="file holding the AccessToken (default: the demo one)"
    )
    p.add_argument(
        "--location-token-file", type=Path, help="file holding the LocationToken (default: the demo one)"
    )
    p.add_argument(
        "--demo-token-dir",
        type=Path,
        help="write the demo tokens to brink.access.token and brink.location.token (0600) in this "
        "folder for a terminal's [brink] *_token_file; their paths are in the JSON line",
    )
    p.add_argument(
        "--business-date",
        type=date.fromisoformat,
        help="business date (YYYY-MM-DD) of the demo parties (default: today's, the day starting 06:00)",
    )
    p.add_argument(
        "--style",
        choices=STYLES,
        default="seed",
        help="answer as the seed document prints it, or as a real WCF service (default: %(default)s)",
    )
    p.add_argument(
        "--latency",
        choices=("fast", "real"),
        default="fast",
        help="answer at once, or as slowly as a real server under load (default: %(default)s)",
    )
    p.add_argument("--faults", help='fault configuration JSON, e.g. {"seed": 1, "rules": [...]}')
    return p


def _token(cli: argparse.ArgumentParser, path: Path | None, option: str) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        cli.error(f"{option} {path} cannot be read ({exc}); give a UTF-8 text file")
    if not token:
        cli.error(f"{option} {path} is empty; put the token in it")
    return token


def _write_demo_tokens(cli: argparse.ArgumentParser, folder: Path) -> dict[str, Path | None]:
    """The demo tokens in 0600 files in ``folder`` (made if missing): {JSON name: path}."""
    out: dict[str, Path | None] = {}
    for name, file, token in (
        ("access_token_file", "brink.access.token", DEMO_ACCESS_TOKEN),
        ("location_token_file", "brink.location.token", DEMO_LOCATION_TOKEN),
    ):
        path = folder / file
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(token + "\n")
            path.chmod(0o600)  # an older file keeps its mode through O_CREAT
        except OSError as exc:
            why = exc.strerror or exc
            cli.error(f"--demo-token-dir: cannot write {path} ({why}); give a writable folder")
        out[name] = path
    return out


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    faults = FaultInjector()
    if args.faults:
        try:
            faults.configure(json.loads(args.faults))
        except (ValueError, FaultConfigError) as exc:
            cli.error(f"--faults: {exc}")
    access = _token(cli, args.access_token_file, "--access-token-file")
    location = _token(cli, args.location_token_file, "--location-token-file")
    files = {"access_token_file": args.access_token_file, "location_token_file": args.location_token_file}
    if args.demo_token_dir is not None:
        if access is not None or location is not None:
            cli.error("--demo-token-dir writes the demo tokens; leave out --access/--location-token-file")
        files = _write_demo_tokens(cli, args.demo_token_dir)
    emulator = BrinkEmulator(
        port=args.port,
        access_token=access or DEMO_ACCESS_TOKEN,
        location_token=location or DEMO_LOCATION_TOKEN,
        business_date=args.business_date,
        style=args.style,
        latency=args.latency,
    )
    emulator.faults.configure({"rules": [r.to_json() for r in faults.rules()]})
    try:
        emulator.start()
    except OSError as exc:
        cli.error(f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc}); pick another --port or 0")
    try:
        day = args.business_date or business_date_now(emulator.clock.now())
        line = {
            "url": emulator.url,
            "control_url": emulator.control_url,
            "business_date": day.isoformat(),
            "style": emulator.style,
            **{name: str(path.resolve()) for name, path in files.items() if path is not None},
        }
        stop = stop_signal()  # before the line: a signal right after it stops the emulator cleanly
        print(json.dumps(line), flush=True)
        wait_for_stop_signal(stop)
        print(json.dumps({"stopped": True, **emulator.stats()}), file=sys.stderr, flush=True)
    finally:
        emulator.stop()
    return 0
