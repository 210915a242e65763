"""The Partybroker emulator's command line: ``python -m terminal.emulator.partybroker --port 0``.

It prints one JSON line (``url``, ``party_id``, ``username``, ``price_interval_s``, ``premium``) once
listening, runs until SIGTERM or SIGINT, and then prints its stats on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from terminal.emulator.faults import FaultConfigError, FaultInjector
from terminal.emulator.partybroker.server import PartybrokerEmulator
from terminal.emulator.serving import tcp_port, wait_for_stop_signal


def parser() -> argparse.ArgumentParser:
    """The emulator's command line (every option with its help, tested in tests/test_cli_help.py)."""
    p = argparse.ArgumentParser(
        prog="python -m terminal.emulator.partybroker",
        description="Serve a Partybroker API emulator on 127.0.0.1; prints one JSON line once listening.",
    )
    p.add_argument("--port", type=tcp_port, default=0, help="TCP port; 0 picks a free one")
    p.add_argument("--party-id", default="1234", help="the party id in the API path (default: %(default)s)")
    p.add_argument("--username", default="taptill", help="Basic-auth user name (default: %(default)s)")
    p.add_argument("--password-file", type=Path, help="file holding the password (default: demo)")
    p.add_argument(
        "--price-interval-s",
        type=float,
        default=60.0,
        help="the party's price calculation interval in s (default: %(default)s)",
    )
    p.add_argument(
        "--rise-cents", type=int, default=10, help="price rise per unit sold, cents (default: %(default)s)"
    )
    p.add_argument(
        "--fall-cents", type=int, default=10, help="price fall per interval, cents (default: %(default)s)"
    )
    p.add_argument("--no-premium", action="store_true", help="only the first three drinks exist")
    p.add_argument("--prices-as-strings", action="store_true", help='send "290" instead of 290')
    p.add_argument("--faults", help='fault configuration JSON, e.g. {"seed": 1, "rules": [...]}')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    password = "demo"
    if args.password_file:
        try:
            password = args.password_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            cli.error(f"--password-file {args.password_file} cannot be read ({exc}); give a UTF-8 text file")
    faults = FaultInjector()
    if args.faults:
        try:
            faults.configure(json.loads(args.faults))
        except (ValueError, FaultConfigError) as exc:
            cli.error(f"--faults: {exc}")
    try:
        emulator = PartybrokerEmulator(
            port=args.port,
            party_id=args.party_id,
            username=args.username,
            password=password,
            price_interval_s=args.price_interval_s,
            rise_cents=args.rise_cents,
            fall_cents=args.fall_cents,
            premium=not args.no_premium,
            prices_as_strings=args.prices_as_strings,
            faults=faults,
        )
    except ValueError as exc:
        cli.error(str(exc))
    try:
        emulator.start()
    except OSError as exc:
        cli.error(f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc}); pick another --port or 0")
    try:
        line = {
            "url": emulator.base_url,
            "party_id": emulator.party_id,
            "username": emulator.username,
            "price_interval_s": args.price_interval_s,
            "premium": emulator.premium,
        }
        print(json.dumps(line), flush=True)
        wait_for_stop_signal()
        print(json.dumps({"stopped": True, **emulator.stats()}), file=sys.stderr, flush=True)
    finally:
        emulator.stop()
    return 0
