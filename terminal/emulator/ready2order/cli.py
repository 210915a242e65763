"""The ready2order emulator's command line: ``python -m terminal.emulator.ready2order --port 0``.

It prints one JSON line (``base_url``, ``control_url``, ``rate_limit``) once listening and runs until
SIGTERM or SIGINT, then prints its stats on stderr. The tokens it accepts are read from files (or are the
demo tokens), never taken from the command line, where other users could read them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from terminal.emulator.faults import FaultConfigError, FaultInjector
from terminal.emulator.ready2order.server import (
    CONTROL_PREFIX,
    DEMO_ACCOUNT_TOKEN,
    DEMO_DEVELOPER_TOKEN,
    Ready2OrderEmulator,
)
from terminal.emulator.serving import tcp_port, wait_for_stop_signal


def parser() -> argparse.ArgumentParser:
    """The emulator's command line (every option with its help, tested in tests/test_cli_help.py)."""
    p = argparse.ArgumentParser(
        prog="python -m terminal.emulator.ready2order",
        description="Serve a ready2order API emulator on 127.0.0.1; prints one JSON line once listening.",
    )
    p.add_argument("--port", type=tcp_port, default=0, help="TCP port; 0 picks a free one")
    p.add_argument(
        "--account-token-file", type=Path, help="file holding the account token (default: the demo one)"
    )
    p.add_argument(
        "--developer-token-file", type=Path, help="file holding the developer token (default: the demo one)"
    )
    p.add_argument(
        "--rate-limit", type=int, default=60, help="requests per minute before 429 (default: %(default)s)"
    )
    p.add_argument("--day-closed", action="store_true", help="start with no daily report open")
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


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.rate_limit < 1:
        cli.error("--rate-limit must be 1 or more")
    faults = FaultInjector()
    if args.faults:
        try:
            faults.configure(json.loads(args.faults))
        except (ValueError, FaultConfigError) as exc:
            cli.error(f"--faults: {exc}")
    account = _token(cli, args.account_token_file, "--account-token-file")
    developer = _token(cli, args.developer_token_file, "--developer-token-file")
    emulator = Ready2OrderEmulator(
        port=args.port,
        account_token=account or DEMO_ACCOUNT_TOKEN,
        developer_token=developer or DEMO_DEVELOPER_TOKEN,
        rate_limit=args.rate_limit,
        day_open=not args.day_closed,
        latency=args.latency,
    )
    emulator.faults.configure({"rules": [r.to_json() for r in faults.rules()]})
    try:
        emulator.start()
    except OSError as exc:
        cli.error(f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc}); pick another --port or 0")
    try:
        control = f"http://127.0.0.1:{emulator.port}{CONTROL_PREFIX}"
        line = {"base_url": emulator.base_url, "control_url": control, "rate_limit": args.rate_limit}
        print(json.dumps(line), flush=True)
        wait_for_stop_signal()
        print(json.dumps({"stopped": True, **emulator.stats()}), file=sys.stderr, flush=True)
    finally:
        emulator.stop()
    return 0
