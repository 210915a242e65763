"""The wallet emulator's command line: ``python -m terminal.emulator.wallet --flavour real --demo``.

It prints one JSON line (``flavour``, ``base_url``, ``api_token``, ``control_url``) once listening and runs
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from terminal.emulator.serving import tcp_port, wait_for_stop_signal
from terminal.emulator.wallet.flavours import FLAVOURS
from terminal.emulator.wallet.ledger import LedgerError
from terminal.emulator.wallet.server import DEFAULT_API_TOKEN, DEFAULT_PREFIX, WalletEmulator


def parser() -> argparse.ArgumentParser:
    """The emulator's command line (every option with its help, tested in tests/test_cli_help.py)."""
    p = argparse.ArgumentParser(
        prog="python -m terminal.emulator.wallet",
        description="Run the local wallet API emulator on loopback; prints one JSON line once listening.",
    )
    p.add_argument(
        "--flavour",
        choices=FLAVOURS,
        default="doc",
        help="doc: the API document; real: as real pretix answers (default: %(default)s)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=tcp_port, default=0, help="TCP port; 0 picks a free port")
    p.add_argument("--ledger", type=Path, default=None, help="JSON file that keeps wallets across restarts")
    p.add_argument("--demo", action="store_true", help="seed the demo wallets and products")
    p.add_argument(
        "--api-token", default=DEFAULT_API_TOKEN, help="the Bearer token it accepts (default: %(default)s)"
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="the API's path prefix (default: %(default)s)")
    p.add_argument(
        "--permission",
        choices=("debit", "credit", "all"),
        default=None,
        help="doc flavour: what this terminal may do (default: debit; all with --demo)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the fault dice (default: %(default)s)")
    p.add_argument(
        "--latency",
        choices=("fast", "real"),
        default="fast",
        help="real: GET 20-60 ms, POST 150-400 ms, like a real pretix server (switchable at run time)",
    )
    p.add_argument(
        "--unsellable",
        type=int,
        action="append",
        default=[],
        metavar="ITEM_ID",
        help="real flavour: a listed item in no quota (POSTs with it answer 500); repeatable",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.unsellable and args.flavour != "real":
        cli.error("--unsellable needs --flavour real: the document has no quotas")

    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "ledger_path": args.ledger,
        "api_token": args.api_token,
        "prefix": args.prefix,
        "seed": args.seed,
        "latency": args.latency,
        "unsellable": args.unsellable,
    }
    if args.permission is not None:
        options["permission"] = args.permission
    try:
        emulator = (
            WalletEmulator.demo(args.flavour, **options)
            if args.demo
            else WalletEmulator(args.flavour, **options)
        )
    except (ValueError, LedgerError) as exc:
        cli.error(str(exc))
    except OSError as exc:  # the ledger's folder is missing or not writable
        cli.error(f"--ledger {args.ledger}: {exc.strerror or exc}; give a file in a writable folder")
    try:
        emulator.start()
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        cli.error(f"cannot listen on {where} ({exc.strerror or exc}); pick another --port or 0")
    try:
        ready = {
            "flavour": emulator.flavour,
            "base_url": emulator.base_url,
            "api_token": emulator.api_token,
            "control_url": emulator.control_url,
        }
        print(json.dumps(ready), flush=True)
        wait_for_stop_signal()
    finally:
        emulator.stop()
    return 0
