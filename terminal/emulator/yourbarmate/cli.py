"""The sender's command line: ``python -m terminal.emulator.yourbarmate --url URL --password-file F``.

It runs a scripted scenario (default) or a steady rate against a webhook URL and prints one JSON
summary on stdout. The password comes from a file, never from the command line, where other users
could read it. Exit 0 when the run got HTTP answers, 1 when the receiver never answered at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from terminal.emulator.yourbarmate.scenario import SCENARIOS, ScenarioName, rate_event, run_scenario
from terminal.emulator.yourbarmate.sender import METHODS, Method, Sender, Sent


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME:VALUE, e.g. X-Venue:bar-1")
    return name.strip(), value.strip()


def parser() -> argparse.ArgumentParser:
    """The sender's command line (every option with its help, tested in tests/test_cli_help.py)."""
    p = argparse.ArgumentParser(
        prog="python -m terminal.emulator.yourbarmate",
        description="Send yourbarmate webhook events (request-delivery, cancel-delivery) to a URL as "
        "yourbarmate does, resending until 200/201; prints a JSON summary of every attempt.",
    )
    p.add_argument(
        "--url", required=True, help="the webhook URL, e.g. http://127.0.0.1:8470/hooks/yourbarmate"
    )
    p.add_argument("--username", default="ybm", help="HTTP Basic user name (default: %(default)s)")
    p.add_argument(
        "--password-file", type=Path, required=True, help="file holding the HTTP Basic password (UTF-8 text)"
    )
    p.add_argument("--method", choices=METHODS, default="POST", help="HTTP method (default: %(default)s)")
    p.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a custom header sent with every request, as yourbarmate's webhook settings allow (repeatable)",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="all",
        help="deliveries: every unit, a duplicate, a RETURN, a cancel, a cancel before its request; "
        "bad: spoilt bodies and a wrong password; all: both (default: %(default)s)",
    )
    what.add_argument(
        "--rate",
        type=_positive,
        metavar="EVENTS_PER_S",
        help="instead of a scenario, send this many delivery events per second for --duration-s",
    )
    p.add_argument(
        "--duration-s", type=_positive, default=10.0, help="how long --rate sends, s (default: %(default)s)"
    )
    p.add_argument(
        "--first-delivery-id",
        type=_count,
        help="delivery id of the first event; later ones count up (default: a random 9-digit id)",
    )
    p.add_argument(
        "--max-attempts",
        type=_count,
        default=6,
        help="sends of one event before giving up (default: %(default)s)",
    )
    p.add_argument(
        "--backoff-s",
        type=_positive,
        default=0.5,
        help="wait after the first failed attempt, s; doubles each time, plus up to 50%% jitter "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--backoff-cap-s",
        type=_positive,
        default=30.0,
        help="longest wait between attempts, s (default: %(default)s)",
    )
    p.add_argument(
        "--timeout-s",
        type=_positive,
        default=10.0,
        help="overall deadline of one attempt, s (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, help="seed for keys, ids and jitter, for a reproducible run (default: random)"
    )
    return p


def _password(cli: argparse.ArgumentParser, path: Path) -> str:
    try:
        password = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        cli.error(f"--password-file {path} cannot be read ({exc}); give a UTF-8 text file")
    if not password:
        cli.error(f"--password-file {path} is empty; put the webhook password in it")
    return password


def summary(sent: Sequence[Sent]) -> dict[str, Any]:
    """Totals over ``sent``: events, delivered, attempts, and how many attempts got each status."""
    statuses = Counter(str(a.status) if a.status is not None else "none" for s in sent for a in s.attempts)
    return {
        "events": len(sent),
        "delivered": sum(s.delivered for s in sent),
        "attempts": sum(len(s.attempts) for s in sent),
        "statuses": dict(sorted(statuses.items())),
    }


async def _run(args: argparse.Namespace, password: str) -> tuple[dict[str, Any], bool]:
    rng = random.Random(args.seed)
    first_id = args.first_delivery_id or rng.randrange(10**8, 10**9)
    method: Method = args.method
    async with Sender(
        args.url,
        args.username,
        password,
        method,
        max_attempts=args.max_attempts,
        backoff_s=args.backoff_s,
        backoff_cap_s=args.backoff_cap_s,
        timeout_s=args.timeout_s,
        headers=dict(args.header),
        rng=rng,
    ) as sender:
        out: dict[str, Any] = {"url": args.url, "method": method, "first_delivery_id": first_id}
        if args.rate is not None:
            report = await sender.send_rate(
                args.rate, args.duration_s, lambda i: rate_event(first_id + i, rng)
            )
            out["rate"] = report.to_json()
            sent = report.sent
        else:
            scenario: ScenarioName = args.scenario
            sent = await run_scenario(sender, scenario, first_id)
            out["scenario"] = scenario
            out["sent"] = [s.to_json() for s in sent]
    out["summary"] = summary(sent)
    answered = any(a.status is not None for s in sent for a in s.attempts)
    return out, answered


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.url.split("://", 1)[0] not in ("http", "https"):
        cli.error(f"--url {args.url!r} is not an http:// or https:// URL")
    password = _password(cli, args.password_file)
    out, answered = asyncio.run(_run(args, password))
    print(json.dumps(out), flush=True)
    return 0 if answered else 1
