"""The ``taptill`` command line: run, tap, press, demo, journal, report, queue, settle, stock, status,
doctor, recover, operator add."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terminal.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from terminal.journal import (
    BOOKED_ELSEWHERE_REASON,
    Journal,
    JournalDamaged,
    JournalError,
    JournalMissing,
    SaleRecord,
)
from terminal.model import SaleState, printable
from terminal.money import format_cents
from terminal.service.log_setup import setup_logging
from terminal.service.secret import SecretError
from terminal.service.state_lock import StateLock, StateLockError

if TYPE_CHECKING:
    from terminal.outbox.view import Backlog
    from terminal.report.period import Period

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_NO_TERMINAL = 3  # tap/press: no terminal listens on the sim reader's socket (not a decline)
EXIT_BROKEN_PIPE = 128 + 13  # 141: killed by SIGPIPE, as a shell reports `cat` cut short by `head`
EXIT_MISSING = 6  # a library the configuration needs is not installed (as taptill-provision says it)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="taptill", description="NFC cashless terminal for pretix wallets")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--config",
            type=Path,
            default=DEFAULT_CONFIG_PATH,
            metavar="PATH",
            help="the terminal's config file (TOML; default: %(default)s)",
        )
        return sp

    run = with_config(sub.add_parser("run", help="run the terminal (what the systemd service starts)"))
    run.add_argument(
        "--verbose", "-v", action="store_true", help="log DEBUG lines too (default: INFO and up, to stderr)"
    )
    run.add_argument("--gif", type=Path, help="also record every screen into this animated GIF")

    tap = with_config(
        sub.add_parser(
            "tap",
            help="tap a card on a running terminal's sim reader and print its decision "
            f"(exit 0 approved, 1 declined or no answer, {EXIT_NO_TERMINAL} no terminal listening)",
        )
    )
    tap.add_argument(
        "uid", nargs="?", metavar="UID", help="card UID in hex (separators allowed; not with --remove)"
    )
    hold = tap.add_mutually_exclusive_group()
    hold.add_argument("--hold", action="store_true", help="leave the card on the reader (prints no decision)")
    hold.add_argument("--remove", action="store_true", help="take the held card away (no UID needed)")
    hold.add_argument(
        "--no-wait", action="store_true", help="only hand the tap over; do not wait for the decision"
    )

    press = with_config(
        sub.add_parser(
            "press",
            help="press a button through the sim reader and print its outcome (exit 1 if the terminal "
            "refused it or the mode has no such button, "
            f"{EXIT_NO_TERMINAL} if no terminal is listening)",
        )
    )
    press.add_argument(
        "button",
        metavar="BUTTON",
        help="a button name: a key of [select] buttons or [topup] buttons, the cancel/clear button, "
        "or next, prev, ok in table mode",
    )

    demo = sub.add_parser("demo", help="play a scenario against the local emulator (no hardware, no network)")
    demo.add_argument("--interactive", action="store_true", help="type card UIDs yourself")
    demo.add_argument(
        "--mode",
        choices=("tap", "select", "topup", "table"),
        default="tap",
        help="tap: one product per tap; select: buttons fill a cart; topup: the kiosk (default: %(default)s)",
    )
    demo.add_argument("--gif", type=Path, help="write an animated GIF of every screen")
    demo.add_argument("--out", type=Path, default=Path("demo-out"), help="where config, journal and PNGs go")

    jr = with_config(sub.add_parser("journal", help="print the journal"))
    as_format = jr.add_mutually_exclusive_group()
    as_format.add_argument("--json", action="store_true", help="JSON Lines, one sale per line")
    as_format.add_argument(
        "--csv", action="store_true", help="CSV with a header row: the same fields as --json, one sale a row"
    )
    _period_arguments(jr)
    jr.add_argument(
        "--state",
        action="append",
        choices=[str(s) for s in SaleState],
        help="only sales in this state (repeat for several; default: all)",
    )

    report = with_config(
        sub.add_parser(
            "report",
            help="a shift report: sold per product, money, online/offline, confirmed/pending, rejected, "
            "held, not served, declined, per hour, and what the wallet server should show",
        )
    )
    _period_arguments(report)
    report.add_argument(
        "--format",
        choices=("text", "csv", "json"),
        default="text",
        help="text for a person, csv for a spreadsheet, json for scripts (cents as integers; "
        "default: %(default)s)",
    )
    report.add_argument(
        "--chart",
        type=Path,
        metavar="FILE.png",
        help="also draw sales and money per hour into this PNG (needs the taptill[chart] extra)",
    )

    q = with_config(
        sub.add_parser(
            "queue", help="sales and other outbox records still pending, held, ambiguous or rejected"
        )
    )
    q.add_argument(
        "--rejected",
        action="store_true",
        help="list rejected sales and records (after-the-fact refusals; sales refused while the guest waited "
        "are marked declined at the tap: nothing owed)",
    )

    se = with_config(
        sub.add_parser(
            "settle",
            help="settle a held sale (or another destination's held record) by hand, or close a sale "
            "charged but never served",
        )
    )
    se.add_argument(
        "key",
        metavar="KEY",
        help="the sale's idempotency key, or an outbox record's ref or #id (taptill queue shows them)",
    )
    how = se.add_mutually_exclusive_group(required=True)
    how.add_argument("--booked", action="store_true", help="the wallet (or system) shows it: mark it done")
    how.add_argument("--not-booked", action="store_true", help="it does not: send it again")
    how.add_argument(
        "--refunded",
        action="store_true",
        help="a sale to refund (taptill queue): the guest got the money back in pretix; close it (or give "
        "up a held record, e.g. a table's POS payment, refunded instead)",
    )
    how.add_argument(
        "--served", action="store_true", help="a sale to refund (taptill queue): the guest was served by hand"
    )

    op = sub.add_parser("operator", help="register a top-up kiosk's operator cards")
    op_sub = op.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    op_add = with_config(
        op_sub.add_parser(
            "add",
            help="read the card's UID (and --pin) from standard input and print its [topup.operators] line",
        )
    )
    op_add.add_argument("name", metavar="NAME", help="the operator's name, sent with every top-up they do")
    op_add.add_argument(
        "--pin",
        action="store_true",
        help="also read a PIN: button names separated by spaces, on the next line",
    )

    stock = with_config(
        sub.add_parser(
            "stock",
            help="the yourbarmate stock: ordered / on hand / sold / servings left per product; "
            "receive a delivery or record a count",
        )
    )
    stock.add_argument("--json", action="store_true", help="one JSON object (products and deliveries)")
    stock.add_argument(
        "--all",
        action="store_true",
        help="list every delivery (or quarantined body), not only the open ones (newest first)",
    )
    stock.add_argument(
        "--quarantine",
        action="store_true",
        help="list the webhook bodies quarantined and not applied since, with the id replay takes",
    )
    stock_sub = stock.add_subparsers(dest="stock_command", metavar="ACTION")

    def config_here(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        # given after the action too; SUPPRESS keeps the action's default from replacing `stock --config`
        sp.add_argument(
            "--config",
            type=Path,
            default=argparse.SUPPRESS,
            metavar="PATH",
            help=f"the terminal's config file (TOML; default: {DEFAULT_CONFIG_PATH})",
        )
        return sp

    receive = config_here(
        stock_sub.add_parser("receive", help="a delivery arrived: its ordered amounts move to on hand")
    )
    receive.add_argument(
        "delivery_id", metavar="DELIVERY_ID", help="yourbarmate's delivery id (taptill stock)"
    )
    again = config_here(
        stock_sub.add_parser(
            "replay",
            help="after a config fix: validate a quarantined body again and apply it once",
        )
    )
    again.add_argument(
        "quarantine_id", metavar="QUARANTINE_ID", help="its id, as taptill stock --quarantine lists it"
    )
    count = config_here(stock_sub.add_parser("set", help="record a count: on hand is AMOUNT from now"))
    count.add_argument(
        "product", metavar="PRODUCT", help="the wallet product id, as in [yourbarmate.products]"
    )
    count.add_argument("amount", metavar="AMOUNT", help="e.g. 20l, 500ml, 3kg, 250g, or 12 for pieces")
    # `-1l` is not a number to argparse, so it would be taken for an unknown option and AMOUNT reported
    # missing; any word starting with `-` and a digit is an AMOUNT here (the stock parser refuses it).
    count._negative_number_matcher = re.compile(r"^-[\d.,]")

    st = with_config(sub.add_parser("status", help="counts and totals of the journal"))
    st.add_argument("--json", action="store_true", help="one JSON object (the same counts, for scripts)")

    doc = with_config(sub.add_parser("doctor", help="check config, secrets, servers, clock, hardware, queue"))
    doc.add_argument("--json", action="store_true", help="a JSON list of {name, status, detail}")

    rec = with_config(
        sub.add_parser("recover", help="salvage the sales of a damaged journal (stop the terminal first)")
    )
    rec.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="salvage this file (e.g. a journal.sqlite3.corrupt-* moved aside earlier) into the journal",
    )
    return p


def _period_arguments(sp: argparse.ArgumentParser) -> None:
    """--since and --until: a sale belongs to the time its tap was journaled (``created_at``)."""
    when = (
        "an ISO date (its midnight) or date-time, in local time unless it has an offset "
        "(e.g. 2025-06-01T18:00 or 2025-06-01T18:00+02:00), today or yesterday"
    )
    sp.add_argument(
        "--since",
        metavar="TIME",
        help=f"only sales whose tap was journaled at or after TIME: {when} (default: the first sale)",
    )
    sp.add_argument(
        "--until",
        metavar="TIME",
        help="only sales journaled before TIME (excluded; same forms as --since; default: now)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problem = _not_utf8(args)
    if problem is not None:
        _problem(problem)
        return EXIT_CONFIG
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        return _reader_gone()
    except (ConfigError, SecretError) as exc:
        _problem(str(exc))
        return EXIT_CONFIG
    except (JournalError, StateLockError) as exc:
        _problem(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _reader_gone() -> int:
    """Whoever read the output went away (``taptill journal | head -1``): stop quietly, as ``cat`` does.
    Python ignores SIGPIPE, so the write raised instead; stdout goes to /dev/null so the interpreter's
    last flush cannot raise again. The exit code is a shell's for a process killed by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _problem(text: str) -> None:
    """One line on stderr saying what is wrong, made printable: it may quote a server (a redirect's
    target, a refusal) or a journal row, whose escape sequences must not reach the person's terminal."""
    print(f"taptill: {printable(text)}", file=sys.stderr)


def _not_utf8(args: argparse.Namespace) -> str | None:
    """What is wrong with the first text argument (a UID, a button, a key) that was not UTF-8 on the
    command line, or None. Python keeps such bytes as lone surrogates, which would otherwise be
    reported as control characters or fail deep inside (SQLite, the socket)."""
    for name, value in vars(args).items():
        if isinstance(value, str) and any("\udc80" <= c <= "\udcff" for c in value):
            raw = os.fsencode(value)
            what = "give the card UID in hex, e.g. 04A1B2C3D4E5F6" if name == "uid" else "type it again"
            return f"{name.upper()} {raw!r} is not UTF-8 text; {what}"
    return None


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    gif: Path | None = getattr(args, "gif", None)
    chart: Path | None = getattr(args, "chart", None)
    problem = _unwritable_file(gif, "--gif") if gif is not None else None
    if problem is None and chart is not None:
        problem = _unwritable_file(chart, "--chart")
    if problem is None and cmd == "demo":
        problem = _unwritable_folder(args.out, "--out")
    if problem is not None:  # said now, not after a whole recording is lost
        _problem(problem)
        return EXIT_CONFIG
    if cmd == "demo":
        from terminal.ops.demo import run_demo

        setup_logging(False)
        return run_demo(out=args.out, interactive=args.interactive, mode=args.mode, gif=args.gif)
    if cmd == "doctor":  # before load_config: a broken config is one of the things it reports
        from terminal.ops.doctor import run_doctor

        return run_doctor(args.config, as_json=args.json)
    if cmd == "operator":
        from terminal.ops.operator_card import add_operator

        add_operator(
            args.config, args.name, with_pin=args.pin, stdin=sys.stdin, out=sys.stdout, err=sys.stderr
        )
        return EXIT_OK
    cfg = load_config(args.config)
    if cmd == "run":
        return _run(cfg, args.verbose, args.gif)
    if cmd in ("tap", "press"):
        return _sim(cfg, args)
    if cmd == "recover":
        return _recover(cfg, args.source)
    if cmd == "stock":
        return _stock(cfg, args)
    if cmd == "settle":
        # Used while the terminal runs, so no state lock; it writes, but never creates, moves or migrates.
        journal = Journal.open_existing(cfg.journal_path)
        try:
            if args.refunded or args.served:
                return _resolve(journal, args.key, "refunded" if args.refunded else "served")
            return _settle_held(journal, args.key, booked=args.booked, cfg=cfg)
        finally:
            journal.close()
    if cmd in ("journal", "report"):
        from terminal.report.period import PeriodError, period

        try:
            span = period(args.since, args.until)
        except PeriodError as exc:  # said before the journal is opened: the command line is wrong
            _problem(str(exc))
            return EXIT_CONFIG
        if cmd == "report" and args.chart is not None:
            from terminal.report.chart import ChartUnavailable, pyplot

            try:
                pyplot()
            except ChartUnavailable as exc:
                _problem(str(exc))
                return EXIT_CONFIG
    journal = Journal.open_read_only(cfg.journal_path)
    try:
        if cmd == "journal":
            return _journal(journal, args, span)
        if cmd == "report":
            return _report(journal, cfg, args, span)
        if cmd == "queue":
            return _queue(journal, cfg, args.rejected)
        return _status(journal, cfg, args.json)
    finally:
        journal.close()


def _stock(cfg: Config, args: argparse.Namespace) -> int:
    """``taptill stock`` and ``stock --quarantine`` (read-only), ``stock receive``, ``stock set`` and
    ``stock replay`` (they write while it runs)."""
    from terminal.ops import stock

    try:
        if args.stock_command == "receive":
            stock.receive(cfg, args.delivery_id, _say)
        elif args.stock_command == "set":
            stock.set_count(cfg, args.product, args.amount, _say)
        elif args.stock_command == "replay":
            stock.replay(cfg, args.quarantine_id, _say)
        elif args.quarantine:
            stock.show_quarantine(cfg, args.json, _say, everything=args.all)
        else:
            stock.show(cfg, args.json, _say, everything=args.all)
    except stock.StockCommandError as exc:
        _problem(str(exc))
        return EXIT_FAILURE
    return EXIT_OK


def _settle_held(journal: Journal, key: str, *, booked: bool, cfg: Config) -> int:
    """A person checked a held sale (by its idempotency key) or another destination's held record (by its
    ref or #id): mark it done, or send it again. A sale marked done gets its records with it (its invoice,
    its POS payments)."""
    from terminal.outbox.table import settle_held

    also = _records_with_done(journal, key, cfg) if booked else []
    if journal.settle_held(key, booked=booked, also=also) or settle_held(journal, key, booked=booked):
        print("settled: " + ("marked done" if booked else "it will be sent again"))
        return EXIT_OK
    sale = journal.sale_by_key(key)
    if sale is not None and sale.to_refund:
        problem = (
            f"sale {key} is booked already, but its guest was not served; once they are refunded or "
            f"served by hand: taptill settle --refunded {key} (or --served {key})"
        )
    elif sale is not None:  # it exists: "no held sale" would read as a mistyped key
        problem = (
            f"sale {key} is not held (it is {sale.state.value}); only held ones are settled: taptill queue"
        )
    else:
        problem = f"no held sale or outbox record with key {key}; taptill queue lists them"
    _problem(problem)
    return EXIT_FAILURE


def _records_with_done(journal: Journal, key: str, cfg: Config) -> list[tuple[str, Sequence[object]]]:
    """The ready2order invoice record of the sale ``key``, when the mirror is configured (priced by the
    product list the terminal last cached), and its PAR Brink payment records (table mode with
    ``apply_payment``)."""
    sale = journal.sale_by_key(key)
    if sale is None:
        return []
    also: list[tuple[str, Sequence[object]]] = []
    t = cfg.table
    if _applies_payments(cfg) and t.tender_id is not None and t.terminal_id is not None:
        from terminal.brink.payment_outbox import PaymentOutbox

        also += PaymentOutbox(journal, t.tender_id, t.terminal_id).statements_for(sale)
    if cfg.ready2order is None:
        return also
    from terminal.ready2order.invoice_outbox import InvoiceOutbox
    from terminal.wallet.catalog import cached_products

    outbox = InvoiceOutbox(cfg.ready2order, cfg.terminal.description, cached_products(journal))
    return also + outbox.statements_for(sale)


def _resolve(journal: Journal, key: str, how: str) -> int:
    """Close a sale charged but never served: the guest was refunded (``how`` 'refunded') or served by
    hand ('served'); refused (exit 1) for any other sale."""
    by = _who()
    also: list[tuple[str, Sequence[object]]] = []
    if how == "refunded":
        from terminal.brink.payment_outbox import give_up_with_sale, refunded_sale_of
        from terminal.outbox.table import give_up_held

        # one refund per amount: a POS payment of a sale refunded whole was refunded with it
        if (whole := refunded_sale_of(journal, key)) is not None:
            _problem(
                f"record {key} belongs to sale {whole.idempotency_key}, refunded whole already "
                f"({whole.resolved_at} by {whole.resolved_by}): its amount went back, refund nothing more"
            )
            return EXIT_FAILURE
        if give_up_held(journal, key, by):
            print(f"settled: record {key} given up by {by} (refunded); it is never sent")
            return EXIT_OK
        also.append(give_up_with_sale(key, by))
    if journal.resolve(key, how, by, also):
        print(f"settled: sale {key} recorded as {how} by {by}; it leaves the list to refund")
        if how == "refunded":
            from terminal.ready2order.invoice_table import invoice_record, storno_advice

            # the fiscal record of a refunded sale stands until someone cancels it in ready2order
            if (invoice := invoice_record(journal, key)) is not None:
                _say(f"ready2order: {storno_advice(invoice)}")  # the number is the server's text
            from terminal.brink.payment_outbox import refund_advice

            sale = journal.sale_by_key(key)
            for line in refund_advice(journal, key, -sale.amount_cents if sale is not None else 0):
                _say(f"PAR Brink: {line}")
        return EXIT_OK
    sale = journal.sale_by_key(key)
    if sale is None:
        problem = f"no sale with key {key}; taptill queue lists the sales to refund"
    elif sale.resolved is not None:
        closed = f"{sale.resolved} at {sale.resolved_at} by {sale.resolved_by}"
        problem = f"sale {key} was closed already: {closed}"
    elif sale.state is SaleState.PENDING:
        problem = (
            f"sale {key} is not booked yet ({_sale_label(sale).lower()}), so there is nothing to refund; "
            + ("settle it with --booked or --not-booked first" if sale.hold else "the terminal delivers it")
        )
    elif sale.pays_table:
        problem = (
            f"sale {key} paid a table bill, which hands nothing over: booked, the bill is paid, nothing to "
            "serve; if the guest was given the money back: taptill settle --refunded " + key
        )
    else:
        problem = (
            f"sale {key} is {sale.state} and its guest was served: nothing to refund "
            "(taptill queue lists the sales to refund)"
        )
    _problem(problem)
    return EXIT_FAILURE


def _who() -> str:
    """Who runs this command, for the journal: the user behind sudo, else the login name."""
    import getpass

    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container without a passwd entry)
        return f"uid {os.getuid()}"


def _file_in_the_way(folder: Path) -> Path | None:
    """The file among ``folder`` and its parents that stands where a folder must be, or None."""
    return next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)


def _unwritable_file(path: Path, flag: str) -> str | None:
    """Why the file ``path`` (given with ``flag``) cannot be written, or None; leaves no file behind."""
    if path.is_dir():
        return f"{flag} {path} is a folder; give a file name in it, e.g. {flag} {path / 'taptill.gif'}"
    blocking = _file_in_the_way(path.parent)
    if blocking is not None:
        return f"{flag} {path}: {blocking} is a file, not a folder; choose a path in a folder"
    if not path.parent.is_dir():
        return f"{flag} {path}: folder {path.parent} does not exist; create it (mkdir -p) or choose another"
    existed = path.exists()
    try:
        with path.open("ab"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        return f"{flag} {path} cannot be written ({exc.strerror}); choose a path in a writable folder"
    return None


def _unwritable_folder(path: Path, flag: str) -> str | None:
    """Why files cannot be written in the folder ``path`` (given with ``flag``), or None; creates it."""
    import tempfile

    if path.exists() and not path.is_dir():
        return f"{flag} {path} is a file, not a folder; give a folder (it is created if missing)"
    blocking = _file_in_the_way(path.parent)
    if blocking is not None:
        return f"{flag} {path}: {blocking} is a file, not a folder; give a folder (it is created if missing)"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"{flag} {path} cannot be written ({exc.strerror}); choose a writable folder"
    return None


def _run(cfg: Config, verbose: bool, gif: Path | None) -> int:
    from terminal.service.drivers import MissingDriver
    from terminal.service.run import RunOptions, serve
    from terminal.wallet.catalog import StartupError

    setup_logging(verbose)
    try:
        serve(cfg, RunOptions(gif_path=gif))
    except MissingDriver as exc:
        _problem(str(exc))
        return EXIT_MISSING
    except StartupError as exc:
        _problem(str(exc))
        return EXIT_CONFIG
    return EXIT_OK


def _recover(cfg: Config, source: Path | None) -> int:
    """Salvage what SQLite can read of a damaged journal (or of ``source``); lists the salvaged sales."""
    from terminal.ops.salvage import salvage_in_place, salvage_into

    path = cfg.journal_path
    with StateLock(cfg.terminal.state_dir, "recover"):
        if source is not None and not _same_file(source, path):
            result = salvage_into(source, path)
        else:
            try:
                Journal.open_read_only(path).close()
            except JournalMissing:
                _problem(
                    f"no journal at {path}: nothing to recover; "
                    "--from FILE salvages a journal moved aside earlier",
                )
                return EXIT_FAILURE
            except JournalDamaged:
                result = salvage_in_place(path)
            else:
                print(f"journal {path} is intact (SQLite finds nothing wrong): nothing to recover")
                return EXIT_OK
    loc, cur = cfg.terminal.locale, cfg.terminal.currency
    for sale in result.sales:
        money = format_cents(-sale.amount_cents, loc, cur)
        label = _sale_label(sale)
        # printable: rows salvaged from a damaged file may hold any bytes
        print(
            printable(
                f"{label:<8} key {sale.idempotency_key}  card {sale.token_id}  {money}  {sale.created_at}"
            )
        )
    where = f"; the damaged journal is kept at {result.kept_at}" if result.kept_at else ""
    print(printable(f"{result.summary(loc, cur)}{where}"))
    return EXIT_OK if result.sales or result.already_there else EXIT_FAILURE


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _sim(cfg: Config, args: argparse.Namespace) -> int:
    from hw.readers.sim import send_command
    from terminal.uid import control_character

    if cfg.reader.kind != "sim":
        kind = cfg.reader.kind
        _problem(f'[reader] kind is {kind!r}; tap and press need kind = "sim"')
        return EXIT_CONFIG
    wait = False
    if args.command == "press":
        bad = control_character(args.button)
        if bad is not None or not args.button.strip():
            _problem(f"button name {args.button!r} is not one plain word")
            return EXIT_CONFIG
        line = f"press-wait {args.button}"
        wait = True
    elif args.remove:
        if args.uid:  # the held card is the one taken away: a UID here would be silently ignored
            _problem(
                f"tap --remove takes no UID (it takes away the card held on the reader); drop {args.uid!r}",
            )
            return EXIT_CONFIG
        line = "remove"
    elif not args.uid:
        _problem("tap needs a card UID (or --remove to take a held card away)")
        return EXIT_CONFIG
    else:
        from terminal.uid import InvalidUid, normalise_uid

        bad = control_character(args.uid)
        try:
            if bad is not None:  # even around the UID: the terminal refuses such a line too
                raise InvalidUid(f"card UID contains the control character {bad!r}; give the UID on one line")
            uid = normalise_uid(args.uid)
        except InvalidUid as exc:  # said here, not as "no terminal listening" when none runs
            _problem(str(exc))
            return EXIT_CONFIG
        wait = not (args.hold or args.no_wait)
        line = f"{'present' if args.hold else 'tap-wait' if wait else 'tap'} {uid}"
    from terminal.ops.tap_outcome import DECISION_MARGIN_S, GOOD_WORDS

    # the terminal answers a tap-wait within its budget and margin; a little more for the socket itself
    timeout_s = cfg.terminal.tap_budget_ms / 1000 + DECISION_MARGIN_S + 2.0 if wait else 5.0
    try:
        answer = send_command(cfg.reader.socket, line, timeout_s)
    except ConnectionResetError:
        # it stopped (or was killed) with the command taken: a tap may have been charged meanwhile
        _problem(
            "the terminal stopped before it answered; taptill queue shows whether the tap was journaled "
            "(start it again with taptill run)",
        )
        return EXIT_FAILURE
    except OSError as exc:
        _problem(
            f"no terminal listening on {cfg.reader.socket} ({exc.strerror or exc}); "
            "start it with taptill run",
        )
        return EXIT_NO_TERMINAL
    if wait and not answer.startswith("error"):
        print(printable(answer))  # the terminal's answer may name a product or a server's reason
        return EXIT_OK if answer.split(":")[0].split(" ")[0] in (*GOOD_WORDS, "ok") else EXIT_FAILURE
    if answer != "ok":
        _problem(answer.removeprefix("error: "))
        return EXIT_FAILURE
    return EXIT_OK


def _say(line: str) -> None:
    """Print one line of a report (journal, queue, status): what a server said in it (a rejection
    reason, a product name) is already printable when parsed; this keeps rows journaled before from
    moving the operator's cursor or forging a line."""
    print(printable(line))


def _journal(journal: Journal, args: argparse.Namespace, span: Period) -> int:
    """The sales journaled in ``span`` (all by default) and the ``--state`` given: a line each, JSON Lines
    (``--json``) or CSV (``--csv``), read with sqlite-utils over the read-only journal."""
    from terminal.report.selection import sales_in

    sales = sales_in(journal, span, [SaleState(s) for s in args.state or ()])
    if args.csv:
        from terminal.report.export import write_csv

        write_csv(sales, sys.stdout)
        return EXIT_OK
    for sale in sales:
        if args.json:
            _say(json.dumps(sale.as_json(), separators=(",", ":")))
        else:
            # The operator of a top-up is kept here only: the real wallet server stores no trace of it.
            by = "" if sale.operator is None else f"  operator {sale.operator}"
            _say(
                f"{sale.created_at}  {sale.state:<8}  {sale.token_id:<20} {sale.amount_cents:>7}{by}  "
                f"{sale.reason}"
            )
    return EXIT_OK


def _report(journal: Journal, cfg: Config, args: argparse.Namespace, span: Period) -> int:
    """``taptill report``: the shift report of the sales journaled in ``span``, what the wallet should show
    for the sales it booked in ``span``, and the chart if asked."""
    from terminal.report.render import render
    from terminal.report.selection import sales_booked_in, sales_in
    from terminal.report.shift import shift_report
    from terminal.wallet.catalog import cached_products

    booked = sales_booked_in(journal, span)
    report = shift_report(sales_in(journal, span), span, cached_products(journal), booked=booked)
    currency = cfg.terminal.currency
    sys.stdout.write(render(report, args.format, currency))
    if args.chart is not None:
        from terminal.report.chart import draw_chart

        try:
            draw_chart(report, args.chart, currency, title=f"{cfg.terminal.description}: sales per hour")
        except OSError as exc:
            _problem(f"--chart {args.chart} cannot be written ({exc.strerror}); choose a writable path")
            return EXIT_FAILURE
    return EXIT_OK


def _queue(journal: Journal, cfg: Config, rejected: bool) -> int:
    """Pending, held and rejected sales, then every other destination's records (pending, held,
    ambiguous, rejected); then (not with --rejected) the sales to refund: booked, but the guest was never
    told it was approved or the relay did not finish, until a person closes them (taptill settle)."""
    from terminal.outbox.table import rows as outbox_rows

    loc, cur = cfg.terminal.locale, cfg.terminal.currency
    states = [SaleState.REJECTED] if rejected else [SaleState.PENDING, SaleState.REJECTED]
    sales = list(journal.sales(states))
    records = outbox_rows(journal, states=("rejected",) if rejected else ("pending", "ambiguous", "rejected"))
    refunds = [] if rejected else journal.to_refund()
    if not sales and not records and not refunds:
        _say("nothing rejected" if rejected else "queue empty: every sale is confirmed and served")
        return EXIT_OK
    for s in sales:
        money = format_cents(-s.amount_cents, loc, cur)
        _say(
            f"{_sale_label(s):<8} {s.created_at}  card {s.token_id}  {money}  key {s.idempotency_key}"
            f"  attempts {s.attempts}  {s.reason}"
            + ("  (nothing served, nothing owed)" if s.refused_at_tap else "")
        )
    held = sum(1 for s in sales if s.hold)
    if held:
        _say(
            f"held: {held}, the terminal cannot tell whether the wallet booked them: check each card's "
            "wallet in pretix, then taptill settle KEY --booked (or --not-booked)"
        )
    for r in records:
        label = "HELD" if r.hold else r.state.upper()
        _say(
            f"{label:<8} {r.created_at}  {r.destination}  ref {r.ref} (#{r.id})  attempts {r.attempts}"
            f"  {r.reason}"
        )
    if refunds:
        total = format_cents(-sum(s.amount_cents for s in refunds), loc, cur)
        _say(
            f"to refund: {len(refunds)} ({total}), charged but never served: refund the guest in pretix or "
            "serve by hand, then taptill settle --refunded KEY (or --served KEY)"
        )
    for s in refunds:
        money = format_cents(-s.amount_cents, loc, cur)
        if s.amount_cents > 0:
            # A top-up: the wallet holds the credit; the operator may not have taken the cash for it.
            why = (
                "the wallet was credited but the operator was never told: if the cash was not taken, take "
                "the credit back in pretix and settle --refunded; if it was, settle --served"
            )
        elif not s.approved:
            why = "the terminal stopped before telling the guest it was approved"
        else:
            why = "the relay did not finish dispensing"
        _say(f"{_sale_label(s)} {s.created_at}  card {s.token_id}  {money}  key {s.idempotency_key}  {why}")
    return EXIT_OK


def _sale_label(sale: SaleRecord) -> str:
    """``DONE``, ``HELD``, ``PENDING (not dispensed)``, ``CHARGED, NOT DISPENSED`` or ``CHARGED, NEVER
    APPROVED`` (to refund: a person checks whether the guest got the product), ``REFUNDED`` or ``SERVED
    BY HAND`` (a person closed it), ``DECLINED AT THE TAP`` (refused while the guest waited: nothing
    owed), as queue and recover list a sale."""
    if sale.resolved is not None:
        return "REFUNDED" if sale.resolved == "refunded" else "SERVED BY HAND"
    if sale.state is SaleState.DONE and not sale.approved:
        # the terminal stopped before it could tell the guest, yet the server booked it
        return "CREDITED, NEVER CONFIRMED" if sale.amount_cents > 0 else "CHARGED, NEVER APPROVED"
    if sale.state is SaleState.DONE and sale.dispensed is False:
        return "CHARGED, NOT DISPENSED"
    if sale.refused_at_tap:
        # refused while the guest waited: the guest saw "declined", so no money is owed for it
        return "DECLINED AT THE TAP"
    label = "HELD" if sale.hold else str(sale.state).upper()
    if sale.state is SaleState.PENDING and sale.dispensed is False:
        label += " (not dispensed)"
    return label


def _status(journal: Journal, cfg: Config, as_json: bool) -> int:
    st = journal.status()
    loc, cur = cfg.terminal.locale, cfg.terminal.currency
    data: dict[str, Any] = {
        "pending": st.pending,
        "pending_cents": -st.pending_cents,
        "held": st.held,
        "done": st.done,
        "rejected": st.rejected,  # served, then refused: money not collected
        "rejected_cents": -st.rejected_cents,
        "refused_at_tap": st.refused_at_tap,  # refused while the guest waited: declined, nothing owed
        "declined": st.declined,
        "oldest_pending": st.oldest_pending,
        "to_refund": st.to_refund,
        "to_refund_cents": -st.to_refund_cents,
        "refunded": st.refunded,
        "served_by_hand": st.served_by_hand,
    }
    from terminal.outbox.view import backlogs

    configured = [
        name for name, c in (("partybroker", cfg.partybroker), ("ready2order", cfg.ready2order)) if c
    ]
    if _applies_payments(cfg):
        configured.append("brink")
    destinations = backlogs(journal, tuple(configured))
    data["destinations"] = [b.as_json() for b in destinations]
    partybroker = _partybroker_status(journal) if cfg.partybroker is not None else None
    if partybroker is not None:
        data["partybroker"] = partybroker
    mirror = _ready2order_status(journal, cfg) if cfg.ready2order is not None else None
    if mirror is not None:
        data["ready2order"] = mirror
    pos = _brink_status(journal, cfg) if _applies_payments(cfg) else None
    if pos is not None:
        data["brink"] = pos
    webhook = _yourbarmate_status(journal, cfg) if cfg.yourbarmate is not None else None
    if webhook is not None:
        data["yourbarmate"] = webhook
    lag = _loop_lag_status(journal)
    data["loop_lag"] = lag
    reader = _reader_status(journal, cfg)
    data["reader"] = reader
    token_refused = _token_refused(journal, cfg)
    data["token_refused"] = token_refused
    server = _server_status(journal, cfg)
    data["wallet_server"] = server
    lockouts = _lockout_status(journal, cfg)
    data["locked_out_operators"] = lockouts
    tables = _table_status(journal, cfg) if cfg.terminal.mode == "table" else None
    if tables is not None:
        data["table"] = tables
    unsellable = journal.unsellable()
    data["unsellable"] = [
        {"product_id": pid, "name": name, "reason": reason, "since": since}
        for pid, (name, reason, since) in unsellable.items()
    ]
    denied = journal.denied_cards()
    data["denied_cards"] = sum(denied.values())
    data["denied_cards_by_reason"] = denied
    if as_json:
        _say(json.dumps(data))
        return EXIT_OK
    # every booked sale is counted once, so the parts add up to what the server booked (served by hand
    # counts as served)
    _say(
        f"sales booked:    {st.done}: {st.done - st.to_refund - st.refunded} served, {st.to_refund} to "
        f"refund, {st.refunded} refunded"
    )
    _say(
        f"to refund:       {st.to_refund} ({format_cents(-st.to_refund_cents, loc, cur)})"
        + (", charged but never served: taptill queue lists them" if st.to_refund else "")
        + (f"; {st.refunded} refunded" if st.refunded else "")
        + (f"; {st.served_by_hand} served by hand" if st.served_by_hand else "")
    )
    if pos is not None and pos["held"]:
        # a table payment the POS cannot take is a refund waiting too (or a booking by hand): never 0 here
        _say(
            f"  and held:      {len(pos['held'])} table payment(s) "
            f"({format_cents(pos['held_cents'], loc, cur)}) the POS could not take: refund or book by hand, "
            "PAR Brink below says which"
        )
    _say(
        f"pending:         {st.pending} ({format_cents(-st.pending_cents, loc, cur)})"
        + (f", {st.held} held for reconciliation" if st.held else "")
    )
    if st.oldest_pending:
        _say(f"oldest pending:  {st.oldest_pending}")
    _say(
        f"rejected:        {st.rejected} ({format_cents(-st.rejected_cents, loc, cur)})"
        + (", served but refused by the server: money not collected" if st.rejected else "")
    )
    if st.refused_at_tap:
        # declined while the guest waited: no money is missing, so no amount is shown
        _say(f"refused at the tap: {st.refused_at_tap}, declined while the guest waited: nothing owed")
    _say(f"declined taps:   {st.declined}")
    if st.booked_elsewhere:
        _say(
            f"booked elsewhere: {st.booked_elsewhere} (the wallet had their key booked already, e.g. a "
            "table paid at another terminal: no money moved here, not counted above)"
        )
    for lockout in lockouts:
        _say(
            f"LOCKED OUT:      operator {lockout['operator']}'s card, for another {lockout['left_s']} s "
            f"(since {lockout['since']}, {lockout['wrong']} wrong PINs; [topup] pin_lockout_s)"
        )
    for backlog in destinations:
        _say(f"outbox:          {_backlog_line(journal, backlog)}")
    for pid, (name, reason, since) in unsellable.items():
        _say(f"NOT SELLING:     {name} (id {pid}) since {since}: {reason}")
    _say(
        f"denied cards:    {data['denied_cards']}"
        + (
            f" ({', '.join(f'{n} {why}' for why, n in denied.items())}), declined offline until the "
            "server next answers for them"
            if denied
            else ""
        )
    )
    _say(f"wallet server:   {server['summary']}")
    _say(f"reader:          {reader['summary']}")
    if token_refused is not None:
        from terminal.wallet.catalog import token_fix

        _say(
            f"OUT OF SERVICE:  the wallet server refuses the API token since {token_refused['since']} "
            f"({token_refused['reason']}); {token_fix(cfg.wallet.token_file)}"
        )
    if lag["stalls"]:
        _say(
            f"event loop:      {lag['stalls']} stall(s) over {lag['warn_ms']:.0f} ms, longest "
            f"{lag['max_ms']:.0f} ms, last in {lag['last_culprit']}"
        )
    else:
        _say(f"event loop:      no stall over {lag['warn_ms']:.0f} ms")
    if partybroker is not None:
        _say(
            f"partybroker:     {partybroker['reported_units']} unit(s) reported, "
            f"{partybroker['pending_reports']} report(s) waiting, {partybroker['ambiguous_reports']} "
            f"ambiguous ({partybroker['ambiguous_units']} unit(s) maybe not counted), "
            f"{partybroker['dropped_reports']} dropped"
        )
        for warning in partybroker["warnings"]:
            _say(f"  warning: {warning}")
    if mirror is not None:
        _say(f"ready2order:     {mirror['summary']}")
    if webhook is not None:
        _say(f"yourbarmate:     {webhook['summary']}")
        _say(f"  webhook:       {webhook['listening']}")
        for f in webhook["stock"]:
            mark = "  SOLD OUT" if f["sold_out"] else "  low" if f["low"] else ""
            _say(
                f"  stock {printable(f['product'], 20)}: {f['on_hand']} {f['measure']} on hand, "
                f"{f['servings_left']} serving(s) left, {f['ordered']} {f['measure']} ordered{mark}"
            )
        for line in webhook["warnings"]:
            _say(f"  {line}")
    if pos is not None:
        _say(f"PAR Brink:       {pos['summary']}")
        for held in pos["held"]:
            _say(f"  HELD {held['ref']}: {held['reason']}")
    if tables is not None:
        for line in tables["price_problems"]:
            _say(f"OUT OF SERVICE:  {line}")
        for line in tables["bill_warnings"]:
            _say(f"WARNING:         {line}")
        paid = tables["paid"]
        here = sum(1 for bill in paid if bill["paid_here"])
        _say(
            f"tables paid:     {here} by wallet on business day {tables['business_date']}"
            + (
                f" ({len(paid) - here} more listed: not paid, refunded or paid elsewhere)"
                if len(paid) > here
                else ""
            )
        )
        for bill in paid:
            _say(
                f"  table {bill['table_id']:>4}  {format_cents(bill['amount_cents'], loc, cur):>10}  "
                f"{bill['time']}  {bill['state']}"
            )
    return EXIT_OK


def _table_status(journal: Journal, cfg: Config) -> dict[str, Any]:
    """Table mode: the tables paid by wallet on the current business day (for staff to close them at the
    POS: table, amount, time, state) and whether the denomination products match the wallet's prices."""
    from datetime import datetime

    from terminal.brink.business_date import DEFAULT_STARTS, business_date
    from terminal.controller.table import price_problems
    from terminal.wallet.catalog import cached_products

    starts = cfg.brink.business_day_starts if cfg.brink is not None else DEFAULT_STARTS
    day = business_date(datetime.now(), starts).isoformat()
    told: dict[str, list[str]] = {}  # sale key -> its payment records' states (apply_payment)
    if _applies_payments(cfg):
        from terminal.brink.payment_outbox import DESTINATION
        from terminal.outbox.table import rows

        for record in rows(journal, DESTINATION):
            state = "held" if record.hold else record.state
            told.setdefault(str(record.payload.get("sale_key")), []).append(state)
    paid = []
    for bill in journal.table_bills(day):
        if bill.state == "done" and bill.reason.startswith(BOOKED_ELSEWHERE_REASON):
            state = "paid at another terminal"
        elif bill.state == "done" and bill.resolved == "refunded":
            state = "REFUNDED to the guest (taptill settle)" + (
                ": a POS payment of it was applied, delete it at the POS"
                if "done" in told.get(bill.sale_key, [])
                else ""
            )
        elif bill.state == "done":
            state = "paid: close it at the POS" if not told else _told_state(told.get(bill.sale_key, []))
            if not bill.approved:
                state = state.replace(
                    "paid", "paid (not shown paid here: the terminal stopped or had no answer in time)", 1
                )
        elif bill.state == "pending":
            state = "being confirmed by the wallet"
        else:
            state = f"{bill.state}: not paid"
        local = datetime.fromisoformat(bill.created_at).astimezone().strftime("%H:%M:%S")
        paid.append(
            {
                "table_id": bill.table_id,
                "amount_cents": bill.amount_cents,
                "time": local,
                "state": state,
                "sale_state": bill.state,
                # paid by this terminal's wallet and not given back: what ``tables paid`` counts
                "paid_here": bill.state == "done"
                and bill.resolved is None
                and not bill.reason.startswith(BOOKED_ELSEWHERE_REASON),
                "key": bill.sale_key,
                "party_id": bill.party_id,
                "orders": list(bill.orders),
            }
        )
    from terminal.brink.table_bill import NOTES_CACHE_KEY

    cached = journal.cache_get(NOTES_CACHE_KEY)
    notes = cached[0] if cached is not None and isinstance(cached[0], dict) else {}
    warnings = [
        f"table {table}: {printable(str(line))} (as last read from the POS; fix the order there)"
        for table, note in sorted(notes.items())
        if isinstance(note, dict) and note.get("business_date") == day
        for line in note.get("problems", [])
    ]
    return {
        "business_date": day,
        "bill_warnings": warnings,
        "paid": paid,
        "price_problems": list(price_problems(cfg.table.denominations, cached_products(journal))),
    }


def _told_state(states: list[str]) -> str:
    """A paid table's state as its ApplyPayment records make it (``apply_payment``)."""
    if not states:
        return "paid: close it at the POS (no payment was due at the POS)"
    if "held" in states:
        return "paid, but a POS payment is HELD: taptill queue says what to do"
    if all(s == "done" for s in states):
        return "paid, applied at the POS"
    if "rejected" in states:
        return "paid, a POS payment given up (refunded by hand)"
    return "paid, being applied at the POS"


def _backlog_line(journal: Journal, backlog: Backlog) -> str:
    """A destination's backlog as ``doctor`` says it too (PAR Brink: its payments' one count)."""
    from terminal.brink.payment_outbox import DESTINATION, payment_counts

    if backlog.destination == DESTINATION:
        return f"{DESTINATION}: {payment_counts(journal).summary()}"
    return backlog.line()


def _applies_payments(cfg: Config) -> bool:
    return cfg.terminal.mode == "table" and cfg.brink is not None and cfg.table.apply_payment


def _brink_status(journal: Journal, cfg: Config) -> dict[str, Any]:
    """The POS payments (ApplyPayment): counts, the held ones with what to do, and whether the running
    terminal's payments are stopped because PAR refuses the tokens."""
    from terminal.brink.payment_outbox import held_payments, payment_counts, payment_of
    from terminal.brink.runtime import STATUS_CACHE_KEY
    from terminal.service.state_lock import running_terminal

    counts = payment_counts(journal)
    held = held_payments(journal)
    cached = journal.cache_get(STATUS_CACHE_KEY)
    state = cached[0] if cached is not None and isinstance(cached[0], dict) else {}
    pid = running_terminal(cfg.terminal.state_dir)
    running = pid is not None and state.get("pid") == pid
    refused = state.get("refused") if running and isinstance(state.get("refused"), dict) else None
    summary = counts.summary()
    if refused is not None:
        from terminal.brink.health import TOKEN_FIX

        summary += f"; STOPPED: {refused.get('reason')}; {TOKEN_FIX}"
    elif not running:
        summary += "; no terminal running"
    return {
        "applied": counts.applied,
        "waiting": counts.waiting,
        "maybe_sent": counts.maybe_sent,
        "held": [{"ref": r.ref, "reason": r.reason, "since": r.updated_at} for r in held],
        "held_cents": sum(p.amount_cents for r in held if (p := payment_of(r.payload)) is not None),
        "given_up": counts.rejected,
        "booked_elsewhere": counts.booked_elsewhere,
        "running": running,
        "refused": refused,
        "last_problem": state.get("last_problem") if running else None,
        "summary": summary,
    }


def _ready2order_status(journal: Journal, cfg: Config) -> dict[str, Any]:
    """The invoice mirror: counts, and whether the running terminal's mirror is stopped or paused."""
    import math

    from terminal.ready2order.health import pause_left_s
    from terminal.ready2order.invoice_outbox import invoice_counts
    from terminal.ready2order.runtime import STATUS_CACHE_KEY
    from terminal.service.state_lock import running_terminal

    assert cfg.ready2order is not None
    counts = invoice_counts(journal)
    cached = journal.cache_get(STATUS_CACHE_KEY)
    state = cached[0] if cached is not None and isinstance(cached[0], dict) else {}
    pid = running_terminal(cfg.terminal.state_dir)
    running = pid is not None and state.get("pid") == pid
    stopped = next(
        (s for s in (state.get("refused"), state.get("day_closed")) if running and isinstance(s, dict)), None
    )
    left_s = pause_left_s(state) if running else 0.0
    summary = (
        f"{counts.mirrored} invoice(s) mirrored, {counts.pending} waiting"
        + (f" ({counts.maybe_sent} maybe sent: searched for before any re-send)" if counts.maybe_sent else "")
        + f", {counts.held} held, {counts.rejected} rejected"
        + ("; TRAINING mode" if cfg.ready2order.training else "")
    )
    if stopped is not None:
        summary += f"; STOPPED: {stopped.get('reason')}; {stopped.get('fix')}"
    elif left_s > 0:
        summary += (
            f"; PAUSED for another {math.ceil(left_s)} s: ready2order answered 429 (rate limited), it blocks "
            "for a minute"
        )
    elif not running:
        summary += "; no terminal running"
    return {
        "mirrored": counts.mirrored,
        "pending": counts.pending,
        "maybe_sent": counts.maybe_sent,
        "held": counts.held,
        "rejected": counts.rejected,
        "training": cfg.ready2order.training,
        "running": running,
        "stopped": stopped,
        "paused_for_s": math.ceil(left_s) if left_s > 0 else None,
        "last_problem": state.get("last_problem") if running else None,
        "summary": summary,
    }


def _yourbarmate_status(journal: Journal, cfg: Config) -> dict[str, Any]:
    """The webhook's counts (as the running terminal stored them) and the products sold out or low."""
    from terminal.service.state_lock import running_terminal
    from terminal.yourbarmate.receiver import STATUS_CACHE_KEY
    from terminal.yourbarmate.stock import stock_figures

    assert cfg.yourbarmate is not None
    cached = journal.cache_get(STATUS_CACHE_KEY)
    state = cached[0] if cached is not None and isinstance(cached[0], dict) else {}
    running = state.get("pid") is not None and running_terminal(cfg.terminal.state_dir) == state.get("pid")
    names = ("accepted", "duplicate", "quarantined", "refused_auth", "too_large")
    counts = {name: int(state.get(name, 0)) for name in names}
    from terminal.yourbarmate.stock import quarantined as quarantined_rows

    quarantined = int(journal.query("SELECT COUNT(*) FROM ybm_quarantine")[0][0])
    waiting = len(quarantined_rows(journal.query))
    figures = stock_figures(journal.query, cfg.yourbarmate.products, cfg.yourbarmate.low_servings)
    warnings = [
        f"{'SOLD OUT' if f.sold_out else 'LOW'}: {f.product}, {f.servings_left} serving(s) left"
        for f in figures
        if f.sold_out or f.low
    ]
    if waiting:
        warnings.append(
            f"QUARANTINE: {waiting} webhook body(ies) not applied; taptill stock --quarantine lists them "
            "with their reason, taptill stock replay ID applies one once the config is fixed"
        )
    summary = (
        f"{counts['accepted']} event(s) accepted, {counts['duplicate']} duplicate(s), "
        f"{counts['quarantined']} quarantined, {counts['refused_auth']} refused (credentials), "
        f"{counts['too_large']} too large"
        + (f" since {state.get('since')}" if state else "")
        + ("" if running else "; no terminal running")
        + (f"; {quarantined} quarantined in all (the journal's ybm_quarantine)" if quarantined else "")
    )
    # Where it listens: the running terminal's own word (a configured port 0 is bound to another)
    where = str(state["listen"]) if running and state.get("listen") else cfg.yourbarmate.listen
    listening = f"http://{where}{cfg.yourbarmate.path}" + ("" if running else " (when taptill runs)")
    return {
        **counts,
        "running": running,
        "listening": listening,
        "stock": [f.as_json() for f in figures],
        "quarantine_total": quarantined,
        "quarantine_waiting": waiting,
        "warnings": warnings,
        "summary": summary,
    }


def _token_refused(journal: Journal, cfg: Config) -> dict[str, Any] | None:
    """{"reason", "since"} while the running terminal's API token is refused by the server, else None."""
    import time

    from terminal.service.state_lock import running_terminal
    from terminal.wallet.health import TOKEN_CACHE_KEY

    cached = journal.cache_get(TOKEN_CACHE_KEY)
    record = cached[0] if cached is not None and isinstance(cached[0], dict) else {}
    pid = running_terminal(cfg.terminal.state_dir)
    if pid is None or record.get("pid") != pid or not record.get("refused"):
        return None
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("since") or 0)))
    return {"reason": str(record["refused"]), "since": since}


def _lockout_status(journal: Journal, cfg: Config) -> list[dict[str, Any]]:
    """The kiosk operator cards locked out now, with the seconds left on the boot-time clock."""
    if cfg.terminal.mode != "topup":
        return []
    import math
    import time

    from terminal.service import boot_clock
    from terminal.service.pin_lockouts import current_lockouts

    return [
        {
            "operator": lock.operator,
            "left_s": math.ceil(lock.left_s),
            "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lock.began)),
            "wrong": lock.wrong,
        }
        for lock in current_lockouts(journal, boot_clock.now(), cfg.topup.pin_lockout_s)
    ]


def _server_status(journal: Journal, cfg: Config) -> dict[str, Any]:
    """The wallet server as the running terminal sees it: online, offline since when (and why), or
    refusing the API token, with a summary line; nothing but "unknown" without a running terminal."""
    from terminal.model import printable
    from terminal.service.state_lock import running_terminal
    from terminal.wallet.health import SERVER_CACHE_KEY, server_summary

    pid = running_terminal(cfg.terminal.state_dir)
    if pid is None:
        return {"running": False, "summary": "unknown: no taptill run uses this state directory"}
    cached = journal.cache_get(SERVER_CACHE_KEY)
    record = cached[0] if cached is not None and isinstance(cached[0], dict) else {}
    if record.get("pid") != pid:
        return {"running": True, "online": None, "summary": "not reported yet"}
    # the problem and the refusal carry the server's own words
    record = {k: printable(v) if isinstance(v, str) else v for k, v in record.items()}
    return {
        "running": True,
        "online": bool(record.get("online")),
        "token_refused": record.get("refused") or None,
        "since": record.get("since"),
        "problem": record.get("problem") or None,
        "summary": server_summary(record),
    }


def _reader_status(journal: Journal, cfg: Config) -> dict[str, Any]:
    """The running terminal's reader: online or not, since when, failures in a row, and a summary line."""
    import time

    from terminal.service.reader_health import CACHE_KEY, ReaderHealth
    from terminal.service.state_lock import running_terminal

    pid = running_terminal(cfg.terminal.state_dir)
    cached = journal.cache_get(CACHE_KEY)
    health = ReaderHealth.from_json(cached[0]) if cached is not None else None
    if pid is None:
        return {"running": False, "summary": "unknown: no taptill run uses this state directory"}
    if health is None or health.pid != pid:
        return {"running": True, "online": None, "summary": "not reported yet"}
    now = time.time()
    return {
        "running": True,
        "online": health.online,
        "since": health.since,
        "failures": health.failures,
        "detail": health.detail,
        "problem": health.problem(now),
        "summary": health.summary(now),
    }


def _loop_lag_status(journal: Journal) -> dict[str, Any]:
    """The device loop's stalls since the running (or last) terminal started."""
    from terminal.service.loop_lag import CACHE_KEY, WARN_MS

    cached = journal.cache_get(CACHE_KEY)
    state = cached[0] if cached is not None and isinstance(cached[0], dict) else {}
    return {
        "warn_ms": WARN_MS,
        "stalls": int(state.get("stalls", 0)),
        "max_ms": float(state.get("max_ms", 0.0)),
        "last_stall_at": state.get("last_stall_at"),
        "last_culprit": state.get("last_culprit"),
    }


def _partybroker_status(journal: Journal) -> dict[str, Any]:
    from terminal.partybroker.report_outbox import report_counts
    from terminal.partybroker.runtime import STATUS_CACHE_KEY

    counts = report_counts(journal)
    cached = journal.cache_get(STATUS_CACHE_KEY)
    state = cached[0] if cached is not None and isinstance(cached[0], dict) else {}
    return {
        "reported_units": counts.sent_units,
        "pending_reports": counts.pending,
        "ambiguous_reports": counts.ambiguous,
        "ambiguous_units": counts.ambiguous_units,
        "dropped_reports": counts.dropped,
        "warnings": [str(w) for w in state.get("warnings", [])],
        "last_problem": state.get("last_problem"),
    }


if __name__ == "__main__":
    sys.exit(main())
