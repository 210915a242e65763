"""``taptill-provision``: turns a fresh Raspberry Pi OS into a working terminal, without a prompt.

Exit codes (stable, for fleet tooling):
  0  files changed (or, with --dry-run, would change)
  3  nothing to change: the system already is as asked
  2  usage or answers problem (missing or bad flag, unknown product)
  4  a server refused the credentials (wallet token, terminal permission, Partybroker login, a
     ready2order token), or the ready2order owner denied access
  5  a server is unreachable or does not speak its API
  6  a dependency is missing (Python, Python package, Debian package, unit template)
  7  cannot write the target (not root, read-only file system)
  8  nobody approved the ready2order access within --ready2order-wait
Nothing is written unless every check passed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hw.display.base import Display
from provisioning import detect, devices, install, ready2order, sandbox
from provisioning.answers import Answers, AnswersError, Ready2OrderAnswers, add_flags, gather
from provisioning.changes import Change, OutsideRoot, Wanted, apply, file_on_disk, plan
from provisioning.exits import (
    EXIT_CANNOT_WRITE,
    EXIT_CHANGED,
    EXIT_MISSING,
    EXIT_REFUSED,
    EXIT_UNCHANGED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Stop,
)
from provisioning.render import (
    CONFIG_PATH,
    OWNED_TABLES,
    PARTYBROKER_PASSWORD_PATH,
    READY2ORDER_TOKEN_PATH,
    SYSUSERS_PATH,
    TOKEN_PATH,
    WANTS_LINK,
    ConfigChoices,
    Ready2OrderChoices,
    config_toml,
    credential_dropin,
    dropin_path,
    hand_edited,
    propose_mapping,
    sysusers_conf,
    unit_text,
)
from provisioning.report import Report, printable_lines
from terminal.config import Config, ConfigError, parse_config, parse_gpio
from terminal.config_section import Section
from terminal.controller.operators import OperatorBook, OperatorKeyError, key_mismatch, parse_operator_key
from terminal.model import TerminalInfo, printable
from terminal.money import format_cents
from terminal.partybroker.outcomes import Drink
from terminal.service.credentials import OPERATOR_KEY, ServiceSecret, loaded, named_in
from terminal.service.secret import Secret
from terminal.service.unit_file import UNIT_PATH, service_options
from terminal.wallet.catalog import check_permission

# The exit codes live in provisioning.exits; they are named here too, where the docstring lists them.
__all__ = [
    "EXIT_CANNOT_WRITE",
    "EXIT_CHANGED",
    "EXIT_MISSING",
    "EXIT_REFUSED",
    "EXIT_UNCHANGED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "SERVER_TIMEOUT_S",
    "Stop",
    "main",
    "provision",
]

SERVER_TIMEOUT_S = 10.0
UNIT_TEMPLATES = (
    Path(__file__).resolve().parent / "taptill.service",  # when shipped inside the package
    Path(__file__).resolve().parent.parent / "systemd" / "taptill.service",  # a source checkout
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="taptill-provision",
        description="Configure this machine as a taptill terminal (non-interactive; see exit codes below).",
        epilog=__doc__.split("\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--answers", type=Path, help="TOML file with the answers ([wallet], [terminal], ...)")
    add_flags(p)
    p.add_argument("--root", type=Path, help="provision into this directory tree (an image) instead of /")
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument(
        "--prefix",
        type=PurePosixPath,
        default=install.DEFAULT_PREFIX,
        help=f"install taptill into PREFIX/venv, where the unit starts it (default {install.DEFAULT_PREFIX})",
    )
    p.add_argument(
        "--python",
        type=PurePosixPath,
        help=f"the Python 3.11+ the venv is built on (default {install.SYSTEM_PYTHON} when it exists)",
    )
    p.add_argument(
        "--taptill-bin",
        type=PurePosixPath,
        help="start this existing taptill script instead of installing one into --prefix",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    report = Report(args.json)
    try:
        answers = gather(args)
        for warning in answers.warnings:
            print(f"taptill-provision: {printable(warning)}", file=sys.stderr)
        code, message = provision(args, answers, report)
    except (AnswersError, devices.DeviceError) as exc:
        return report.finish(EXIT_USAGE, f"taptill-provision: {exc}")
    except Stop as exc:
        return report.finish(exc.code, f"taptill-provision: {exc}")
    except OutsideRoot as exc:
        return report.finish(EXIT_CANNOT_WRITE, f"taptill-provision: {exc}")
    return report.finish(code, message)


def provision(args: argparse.Namespace, answers: Answers, report: Report) -> tuple[int, str]:
    root: Path = args.root.resolve() if args.root else Path("/")
    live = args.root is None
    if live and not args.dry_run and os.geteuid() != 0:
        raise Stop(EXIT_CANNOT_WRITE, "writing /etc needs root; run with sudo, or --root DIR for an image")

    problem = detect.python_ok()  # this program's own Python; the service's is reported below
    if problem:
        raise Stop(EXIT_MISSING, problem)

    kept = _kept_tables(root, answers)
    gpio = _gpio_enabled(kept, answers)
    reader_kind, reader_name, reader_device = _choose_reader(answers, report)
    display_kind, oled = _choose_display(answers, report)
    _check_packages(reader_kind, display_kind, live, report)
    needs = devices.needs(reader_kind, reader_device, display_kind, oled.port if oled else None, gpio)
    groups = devices.groups(needs)
    launch = _program(args, root, live)
    program, chain = launch.program, launch.chain
    _report_python(launch, report)
    unit = unit_text(_unit_template(), str(program.taptill_bin), str(program.python_bin), groups)
    _check_unit(unit, launch, answers, report)
    if program.venv is None:
        _check_readable(root, program, chain)
    _check_devices(needs, groups, unit, root, live, report)

    info = asyncio.run(_check_wallet(answers, report))
    products = _choose_products(answers, info)
    choices = ConfigChoices(
        state_dir=answers.state_dir,
        products=products,
        description=answers.description,
        tag=answers.tag,
        mode=answers.mode,
        wallet_url=answers.wallet_url,
        reader_kind=reader_kind,
        reader_name=reader_name,
        reader_device=reader_device,
        sim_socket=answers.sim_socket,
        display_kind=display_kind,
        oled_port=oled.port if oled else None,
        oled_address=oled.address if oled else None,
    )
    pb = answers.partybroker
    if pb is not None:
        drinks = asyncio.run(_check_partybroker(answers, report))
        named = [(p, _product_name(info, p)) for p in products]
        mapping = propose_mapping(named, drinks)
        shown = ", ".join(
            f"{p} → {d.title} ({f'externalId {d.external_id}' if d.external_id else f'id {d.id}'})"
            for p, d in mapping
        )
        report.line(
            "mapping",
            {str(p): d.external_id or d.id for p, d in mapping},
            shown or "no product matches a drink by externalId or title; map them by hand",
        )
        choices = ConfigChoices(
            **{
                **choices.__dict__,
                "partybroker_url": pb.base_url,
                "party_id": pb.party_id,
                "partybroker_user": pb.username,
                "drink_mapping": mapping,
            },
        )

    r2o_token: Secret | None = None
    r2o_stored = 0
    if answers.ready2order is not None:
        r2o = _ready2order(root, answers.ready2order, info, oled, report, args.dry_run)
        if r2o.choices is not None:
            kept.pop("ready2order", None)  # rewritten from the answers; kept as it is otherwise
            choices = dataclasses.replace(choices, ready2order=r2o.choices)
        r2o_token, r2o_stored = r2o.token, r2o.stored

    text = config_toml(choices, kept)
    cfg = _validate_config(text, kept, answers)
    wanted = _wanted_files(answers, text, unit, groups)
    if r2o_token is not None:
        wanted.append(Wanted(READY2ORDER_TOKEN_PATH, r2o_token.reveal() + "\n", 0o600, secret=True))
    wanted += _credentials(root, text, unit, wanted)
    if cfg.terminal.mode == "topup":
        _check_operators(root, cfg, answers)
    changes = plan(root, wanted)
    extras = install.extras_for(reader_kind, gpio)
    python = install.venv_python(args.python)
    stamp = install.wanted_stamp(extras, python)
    reinstall = program.venv is not None and install.installed_stamp(root, program) != stamp
    _report_program(program, extras, reinstall, report)
    report.line(
        "files",
        [{"path": str(c.wanted.path), "action": c.action} for c in changes],
        "; ".join(f"{c.action} {c.wanted.path}" for c in changes),
    )
    changed = [c for c in changes if c.changed]
    count = len(changed) + reinstall + r2o_stored
    edited = _hand_edited_config(root, changes)
    if edited is not None:
        verb = "a run keeps" if args.dry_run else "kept"
        report.line(
            "backup",
            str(edited.wanted.path),
            f"{CONFIG_PATH} was edited by hand; {verb} it as {CONFIG_PATH.name}.bak-TIMESTAMP (0600) before "
            "replacing it; what changes:",
        )
        report.data["config_diff"] = edited.diff
        if not args.json and not args.dry_run:
            print(printable_lines(edited.diff), end="")
    if args.dry_run:
        if not args.json:
            for c in changed:
                print(printable_lines(c.diff), end="")
        report.data["diff"] = "".join(c.diff for c in changed)
        if not count:
            return EXIT_UNCHANGED, "nothing to change (dry run)"
        return EXIT_CHANGED, f"dry run: {count} change(s) would be made; nothing written"
    if not count:
        return EXIT_UNCHANGED, "nothing to change: this terminal is already provisioned as asked"
    try:
        if reinstall:
            install.install(root, program, python, extras)
            _check_readable(root, program, chain)
        if edited is not None:
            report.data["backup"] = str(_backup(root))
        apply(root, changes)
    except install.InstallError as exc:
        raise Stop(EXIT_MISSING, str(exc)) from None
    except OSError as exc:
        message = f"cannot write under {root} ({exc.strerror}); make it writable"
        raise Stop(EXIT_CANNOT_WRITE, message) from None
    report.line("service", _activate(live, changes), _activate_text(live))
    return EXIT_CHANGED, f"provisioned: {count} change(s) under {root}"


# --- hardware -------------------------------------------------------------------------------------


def _choose_reader(answers: Answers, report: Report) -> tuple[str, str | None, str | None]:
    """(kind, pcsc reader name, nfcpy device); refuses a terminal that could never read a card."""
    kind, device = answers.reader, answers.reader_device
    if device is not None:
        if kind == "auto":
            kind = "nfcpy"
        if kind != "nfcpy":
            raise Stop(EXIT_USAGE, f"--reader-device is for nfcpy readers, not --reader {kind}; drop one")
    uart = device is not None and devices.tty_node(device) is not None
    pcsc = detect.pcsc_readers() if kind in ("auto", "pcsc") else detect.Probe()
    usb = detect.nfcpy_usb_readers() if kind in ("auto", "nfcpy") and not uart else detect.Probe()
    found = {"pcsc": list(pcsc.found), "nfcpy": list(usb.found)}
    notes = [p.problem for p in (pcsc, usb) if p.problem]
    listed = [f"PC/SC {n!r}" for n in pcsc.found] + [f"nfcpy {d}" for d in usb.found]
    if kind == "auto":
        kind = "pcsc" if pcsc.found else "nfcpy" if usb.found else "none"
    if kind == "sim" or uart:
        text = "the sim reader: cards come from `taptill tap`" if kind == "sim" else f"{device} (UART)"
    else:
        text = ", ".join(listed) or "none found" + (f" ({'; '.join(notes)})" if notes else "")
    report.line("reader", {"kind": kind, "device": device, "found": found, "notes": notes}, f"{kind}: {text}")
    if (
        kind == "none"
        or (kind == "pcsc" and not pcsc.found)
        or (kind == "nfcpy" and not uart and not usb.found)
    ):
        why = f" ({'; '.join(notes)})" if notes else ""
        raise Stop(
            EXIT_MISSING,
            f"no NFC reader found{why}; plug in a reader (ACR122U with pcscd, or a PN532: "
            "--reader nfcpy --reader-device tty:AMA0:pn532), or pass --reader sim for a terminal without one",
        )
    return kind, None, device


def _choose_display(answers: Answers, report: Report) -> tuple[str, detect.OledFound | None]:
    oleds, why = detect.i2c_oleds() if answers.display in ("auto", "oled") else ([], None)
    kind = answers.display
    if kind == "auto":
        kind = "oled" if oleds else "none"
    oled = oleds[0] if oleds and kind == "oled" else None
    text = ", ".join(f"OLED at {o}" for o in oleds) or ("none found" + (f" ({why})" if why else ""))
    report.line("display", {"kind": kind, "found": [str(o) for o in oleds]}, f"{kind}: {text}")
    if kind == "oled" and oled is None:
        raise Stop(
            EXIT_MISSING,
            f"no OLED found ({why or 'no answer at 0x3C/0x3D'}); wire it to I2C, or pass --display none",
        )
    return kind, oled


def _check_packages(reader: str, display: str, live: bool, report: Report) -> None:
    features = (
        ("core",)
        + ((reader,) if reader in ("pcsc", "nfcpy") else ())
        + (("oled",) if display == "oled" else ())
    )
    missing = detect.missing_python(features)
    debs = detect.missing_debs(features)
    if missing:
        raise Stop(EXIT_MISSING, f"missing Python packages: {', '.join(missing)}")
    if debs and live:
        raise Stop(EXIT_MISSING, f"missing Debian packages; run: sudo apt-get install -y {' '.join(debs)}")
    if debs is None:
        text = "Python OK; Debian packages cannot be checked (no dpkg)"
    else:
        text = "OK" if not debs else f"OK here; the image also needs {' '.join(debs)}"
    report.line("packages", {"python": "ok", "debian_missing": debs}, text)


# --- servers --------------------------------------------------------------------------------------


async def _check_wallet(answers: Answers, report: Report) -> TerminalInfo:
    from terminal.wallet.client import WalletClient
    from terminal.wallet.outcomes import InfoLoaded, NotFound, Unauthorized, Unavailable

    client = WalletClient(answers.wallet_url, answers.wallet_token, timeout_s=SERVER_TIMEOUT_S)
    try:
        res = await client.terminal_info()
    finally:
        await client.aclose()
    if isinstance(res, Unauthorized):
        raise Stop(EXIT_REFUSED, "the wallet server refused the API token (401); copy the terminal's token")
    if isinstance(res, Unavailable):
        raise Stop(
            EXIT_UNREACHABLE,
            f"the wallet server at {answers.wallet_url} is unreachable "
            f"({res.reason}); check the URL and the network",
        )
    if isinstance(res, NotFound):
        raise Stop(EXIT_UNREACHABLE, f"{answers.wallet_url}: {res.detail}; check the wallet base URL")
    if not isinstance(res, InfoLoaded):
        raise Stop(EXIT_REFUSED, f"the wallet server refused terminal info ({res.status}: {res.reason})")
    info = res.info
    problem = check_permission(info, answers.mode)
    if problem:
        raise Stop(EXIT_REFUSED, problem)
    report.line(
        "wallet",
        {
            "friendly_name": info.friendly_name,
            "permission": info.permission,
            "products": [{"id": p.id, "name": p.name, "price_cents": p.price_cents} for p in info.products],
        },
        f"{info.friendly_name or '(no name)'}, permission {info.permission}, products: "
        + (", ".join(f"{p.id} {p.name} {format_cents(p.price_cents)}" for p in info.products) or "none"),
    )
    return info


def _choose_products(answers: Answers, info: TerminalInfo) -> list[str | int]:
    listed = ", ".join(f"{p.id} ({p.name})" for p in info.products) or "none"
    if not answers.products:
        if answers.mode != "tap":
            return []
        if len(info.products) == 1:
            return [info.products[0].id]
        raise Stop(EXIT_USAGE, f"say which product a tap sells (--products ID,...); the server has {listed}")
    chosen: list[str | int] = []
    for wanted in answers.products:
        product = info.product(wanted)
        if product is None:
            raise Stop(EXIT_USAGE, f"product {wanted!r} is not on this terminal's list; it lists {listed}")
        chosen.append(product.id)
    return chosen


def _product_name(info: TerminalInfo, product_id: str | int) -> str:
    product = info.product(product_id)
    return product.name if product is not None else str(product_id)


async def _check_partybroker(answers: Answers, report: Report) -> tuple[Drink, ...]:
    from terminal.partybroker.client import PartybrokerClient
    from terminal.partybroker.outcomes import Ambiguous, Drinks, Rejected, Unauthorized

    pb = answers.partybroker
    assert pb is not None
    async with PartybrokerClient(
        pb.base_url, pb.party_id, pb.username, pb.password, timeout_s=SERVER_TIMEOUT_S
    ) as client:
        res = await client.drinks()
    if isinstance(res, Unauthorized):
        raise Stop(EXIT_REFUSED, "Partybroker refused the user name or password (401); check both")
    if isinstance(res, Rejected):
        raise Stop(EXIT_REFUSED, f"Partybroker refused the drinks list ({res.reason}); check the party id")
    if isinstance(res, Ambiguous):
        raise Stop(
            EXIT_UNREACHABLE,
            f"Partybroker at {pb.base_url} is unreachable ({res.reason}); check the URL and the network",
        )
    assert isinstance(res, Drinks)
    report.line(
        "partybroker",
        [
            {"id": d.id, "external_id": d.external_id, "title": d.title, "price_cents": d.price_cents}
            for d in res.drinks
        ],
        f"{len(res.drinks)} drinks: " + ", ".join(f"{d.title} ({d.external_id or d.id})" for d in res.drinks),
    )
    return res.drinks


# --- ready2order ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready2OrderPart:
    """What the ready2order part gives the files: the table (None: keep the one on disk), the account
    token to keep, and how many files it already wrote (the token, stored the moment it arrived)."""

    choices: Ready2OrderChoices | None
    token: Secret | None
    stored: int


def _ready2order(
    root: Path,
    r2o: Ready2OrderAnswers,
    info: TerminalInfo,
    oled: detect.OledFound | None,
    report: Report,
    dry_run: bool,
) -> Ready2OrderPart:
    settings = ready2order.Ready2OrderSettings(
        r2o.base_url, r2o.developer_token, r2o.wait_s, r2o.poll_s, SERVER_TIMEOUT_S
    )
    stored = 0
    display: list[Display | None] = []  # opened at the first approval link: a stored token needs none

    def show(url: str) -> None:
        if not display:
            display.append(ready2order.approval_display(oled, report))
        ready2order.shower(display[0])(url)

    def keep(token: Secret) -> None:
        nonlocal stored
        changes = plan(root, [Wanted(READY2ORDER_TOKEN_PATH, token.reveal() + "\n", 0o600, secret=True)])
        try:
            apply(root, changes)
        except OSError as exc:
            message = (
                f"cannot store the ready2order account token under {root} ({exc.strerror}); make it writable"
            )
            raise Stop(EXIT_CANNOT_WRITE, message) from None
        stored = sum(c.changed for c in changes)
        report.line(
            "r2o-token",
            str(READY2ORDER_TOKEN_PATH),
            f"stored in {READY2ORDER_TOKEN_PATH} (0600) at once, so a re-run needs no new approval",
        )

    try:
        got = asyncio.run(
            ready2order.account_token(settings, _stored_r2o_token(root), show, keep, report, dry_run=dry_run)
        )
    finally:
        if display and display[0] is not None:
            display[0].close()  # blanks the panel: the link is used up either way
    if got is None:
        return Ready2OrderPart(None, None, stored)
    token, lists = got
    method = ready2order.payment_method(lists.payment_methods, r2o.payment_method)
    report.line("r2o-payment", method.id, f"{method.name} (id {method.id}) for wallet sales")
    user_id, who = ready2order.user(lists.users, r2o.user_id)
    report.line("r2o-user", user_id, who)
    mapped, unmapped = ready2order.map_products(info.products, lists.products, lists.vat_rates)
    report.line(
        "r2o-mapping",
        {str(m.wallet_product): {"product_id": m.product_id, "vat_id": m.vat_id} for m, _ in mapped},
        "; ".join(
            f"{m.wallet_product} → {m.name} (id {m.product_id}, VAT id {m.vat_id}, by {how})"
            for m, how in mapped
        )
        or "no wallet product matches a ready2order product",
    )
    if unmapped:
        report.line(
            "r2o-unmapped",
            [{"id": str(p.id), "name": p.name, "why": why} for p, why in unmapped],
            "; ".join(f"{p.id} ({p.name}): {why}" for p, why in unmapped)
            + ". Give them the wallet id as externalReference in ready2order and run again, or map them by "
            "hand in [ready2order.products]",
        )
    choices = Ready2OrderChoices(
        base_url=r2o.base_url,
        payment_method_id=method.id,
        payment_method_name=method.name,
        user_id=user_id,
        training=r2o.training,
        requests_per_minute=r2o.requests_per_minute,
        products=[m for m, _ in mapped],
    )
    return Ready2OrderPart(choices, token, stored)


def _stored_r2o_token(root: Path) -> Secret | None:
    """The account token a former run stored, if any (whether it still works is asked of ready2order)."""
    try:
        text = file_on_disk(root, READY2ORDER_TOKEN_PATH).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Secret(text) if text else None


# --- files ----------------------------------------------------------------------------------------


def _kept_tables(root: Path, answers: Answers) -> dict[str, dict[str, object]]:
    """The config tables provisioning does not own: those of the config on disk ([offline], a [gpio]
    added by hand), replaced by those the answers file gives ([gpio], [select], [topup])."""
    path = file_on_disk(root, CONFIG_PATH)
    try:
        existing = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        existing = {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise Stop(
            EXIT_USAGE,
            f"{CONFIG_PATH} cannot be read as TOML ({exc}), so the tables added to it by hand cannot be "
            "kept; fix it, or move it aside to start afresh",
        ) from None
    kept = {
        name: table
        for name, table in existing.items()
        if name not in OWNED_TABLES and isinstance(table, dict)
    }
    return {**kept, **answers.config_tables}


def _gpio_enabled(kept: dict[str, dict[str, object]], answers: Answers) -> bool:
    """Whether the config will drive GPIO pins: the venv then needs gpiozero and the unit group gpio."""
    try:
        return parse_gpio(Section("gpio", kept.get("gpio"))).enabled
    except ConfigError as exc:
        raise Stop(EXIT_USAGE, f"the config would not load ({exc}); {_where_tables(kept, answers)}") from None


def _where_tables(kept: dict[str, dict[str, object]], answers: Answers) -> str:
    """Where to fix a table: the answers file, or the config on disk for a table kept from it."""
    from_disk = [f"[{t}]" for t in kept if t not in answers.config_tables]
    return "check the answers" + (
        f" and the tables kept from {CONFIG_PATH} ({', '.join(from_disk)})" if from_disk else ""
    )


def _validate_config(text: str, kept: dict[str, dict[str, object]], answers: Answers) -> Config:
    """What we write must load: the terminal's own parser checks it before anything is written."""
    from terminal.partybroker.config import parse_partybroker

    data = tomllib.loads(text)
    partybroker = data.pop("partybroker", None)
    if data.get("terminal", {}).get("mode") == "topup" and "topup" not in data:
        raise Stop(
            EXIT_USAGE,
            "a top-up kiosk needs [topup] in the answers file (its buttons and [topup.operators]); make each "
            "operator's line with: taptill operator add NAME --config ANSWERS (it keeps the operator key "
            "in [topup] operator_key_file, 0600)",
        )
    try:
        cfg = parse_config(data, source=CONFIG_PATH)
        if partybroker is not None:
            parse_partybroker(Section("partybroker", partybroker), CONFIG_PATH.parent)
    except ConfigError as exc:
        raise Stop(EXIT_USAGE, f"the config would not load ({exc}); {_where_tables(kept, answers)}") from None
    return cfg


def _credentials(root: Path, config: str, unit: str, wanted: list[Wanted]) -> list[Wanted]:
    """A drop-in per secret the config makes the service read, passing its file as a credential (the
    unit runs as user taptill, and the files are root's); refuses a file that would not be there or is
    open to others, which would stop the unit at every start or give the secret away."""
    writing = {w.path for w in wanted}
    in_unit = loaded(service_options(unit))
    by_dropin: dict[Path, list[tuple[ServiceSecret, Path]]] = {}
    stale: set[Path] = set()
    for secret, path in named_in(tomllib.loads(config), CONFIG_PATH.parent):
        if path not in writing:
            on_disk = file_on_disk(root, path)
            try:
                mode = on_disk.stat().st_mode & 0o777
            except OSError:
                raise Stop(
                    EXIT_USAGE,
                    f"{secret.setting} names {path}, which does not exist under {root}; the unit could not "
                    "start without it: put the file there (0600), or give it in the answers",
                ) from None
            if mode & 0o077:
                raise Stop(
                    EXIT_USAGE,
                    f"{path} ({secret.setting}) is mode {mode:04o}, open to other users; "
                    f"run: chmod 600 {on_disk}",
                )
        by_dropin.setdefault(dropin_path(secret), []).append((secret, path))
        if in_unit.get(secret.credential) != path:
            stale.add(dropin_path(secret))
    # A table's drop-in is rewritten whole: with every secret of that table the config names.
    return [Wanted(d, credential_dropin(by_dropin[d]), 0o644) for d in sorted(stale)]


def _check_operators(root: Path, cfg: Config, answers: Answers) -> None:
    """A kiosk whose operators were made under another key than the one the service gets would refuse to
    start (the terminal says so at start); said now, before anything is written."""
    path = cfg.topup.operator_key_file or OPERATOR_KEY.path
    if answers.operator_key is not None:
        text = answers.operator_key.reveal()
    else:
        try:
            text = file_on_disk(root, path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise Stop(EXIT_USAGE, f"cannot read the operator key {path} under {root}") from None
    try:
        book = OperatorBook(parse_operator_key(text), cfg.topup.operators)
    except OperatorKeyError as exc:
        raise Stop(EXIT_USAGE, f"the operator key {path}: {exc}") from None
    elsewhere = book.made_elsewhere()
    if elsewhere:
        raise Stop(
            EXIT_USAGE,
            f"{key_mismatch(elsewhere)}; or give the key they were made under as [topup] operator_key_file "
            "in the answers",
        )


def _hand_edited_config(root: Path, changes: list[Change]) -> Change | None:
    """The config's change when it would replace a config that provisioning did not write as it is."""
    for c in changes:
        if c.wanted.path == CONFIG_PATH and c.action == "update":
            try:
                old = file_on_disk(root, CONFIG_PATH).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return c
            return c if hand_edited(old) else None
    return None


def _backup(root: Path) -> Path:
    """A copy of the config on disk beside it, 0600 (it may hold what its author put there by hand)."""
    config = file_on_disk(root, CONFIG_PATH)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    data = config.read_bytes()
    for n in range(100):
        backup = config.with_name(f"{config.name}.bak-{stamp}" + (f"-{n}" if n else ""))
        try:
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return backup
    raise OSError(17, f"too many backups of {config} this second")


def _unit_template() -> str:
    for path in UNIT_TEMPLATES:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise Stop(EXIT_MISSING, "the unit template taptill.service is missing; reinstall taptill")


def _wanted_files(answers: Answers, config: str, unit: str, groups: Sequence[str]) -> list[Wanted]:
    wanted = [
        Wanted(CONFIG_PATH, config, 0o644),
        Wanted(TOKEN_PATH, answers.wallet_token.reveal() + "\n", 0o600, secret=True),
        Wanted(UNIT_PATH, unit, 0o644),
        Wanted(SYSUSERS_PATH, sysusers_conf(groups), 0o644),
        Wanted(WANTS_LINK, link_to=UNIT_PATH),
    ]
    if answers.partybroker is not None:
        wanted.append(
            Wanted(
                PARTYBROKER_PASSWORD_PATH, answers.partybroker.password.reveal() + "\n", 0o600, secret=True
            )
        )
    if answers.operator_key is not None:
        wanted.append(Wanted(OPERATOR_KEY.path, answers.operator_key.reveal() + "\n", 0o600, secret=True))
    return wanted


# --- the program and the unit's sandbox ---------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """What ExecStart runs and everything it touches, each path with what to do if the unit hides it."""

    program: install.Program
    chain: list[PurePosixPath]
    fixes: list[str]  # one per chain entry
    python: PurePosixPath  # the interpreter the service runs on (the venv's base, or the script's #!)
    version: str | None  # that interpreter's version; None when it is not run here (inside an image)


def _program(args: argparse.Namespace, root: Path, live: bool) -> Launch:
    """Where the unit finds taptill, and every path ExecStart touches (checked against the sandbox)."""
    if args.taptill_bin is None:
        if not args.prefix.is_absolute():
            raise Stop(
                EXIT_USAGE, f"--prefix {args.prefix} is relative; give an absolute path like /opt/taptill"
            )
        program = install.Program.in_prefix(args.prefix)
        python = install.venv_python(args.python)
        try:
            chain, version = install.predicted_chain(program, python)
        except install.InstallError as exc:
            raise Stop(EXIT_MISSING, str(exc)) from None
        # The venv itself can move (--prefix); the interpreter it is built on cannot, only be another one.
        which = "--python" if args.python is not None else "the Python running taptill-provision"
        other = (
            f"that interpreter ({which}) is hidden from the service: build the venv on the system's "
            f"Python instead, --python {install.SYSTEM_PYTHON}"
        )
        fixes = ["install taptill under /opt (--prefix)"] * 2 + [other] * (len(chain) - 2)
        return Launch(program, chain, fixes, python, version)
    if not args.taptill_bin.is_absolute():
        raise Stop(
            EXIT_USAGE, f"--taptill-bin {args.taptill_bin} is relative; give the script's absolute path"
        )
    try:
        chain, probed = install.existing_chain(root, args.taptill_bin, live)
    except install.InstallError as exc:
        raise Stop(EXIT_MISSING, str(exc)) from None
    python = chain[1] if len(chain) > 1 else PurePosixPath(sys.executable)
    fixes = ["name a taptill outside /home, /root and /tmp, or drop --taptill-bin to install one in /opt"]
    fixes += [
        f"{args.taptill_bin} runs on it: drop --taptill-bin to install taptill under /opt (--prefix) "
        f"on {install.SYSTEM_PYTHON}"
    ] * (len(chain) - 1)
    return Launch(install.Program(args.taptill_bin, python, None), chain, fixes, python, probed)


def _report_python(launch: Launch, report: Report) -> None:
    """The interpreter the service will run on, not the one running provisioning (they often differ)."""
    built = "the venv is built on it" if launch.program.venv is not None else "from --taptill-bin's #! line"
    version = launch.version or "version not checked (inside the image)"
    report.line(
        "python",
        {"path": str(launch.python), "version": launch.version},
        f"{launch.python} {version} ({built})",
    )


def _check_unit(unit: str, launch: Launch, answers: Answers, report: Report) -> None:
    """Refuse to write a unit whose sandbox hides the program or makes its directories read-only."""
    problems = sandbox.problems(
        unit,
        list(zip(launch.chain, launch.fixes, strict=True)),
        PurePosixPath(answers.state_dir),
        PurePosixPath(answers.sim_socket),
    )
    if problems:
        raise Stop(EXIT_USAGE, f"the unit could not start: {problems[0]}")
    report.line(
        "sandbox",
        "ok",
        f"ExecStart {launch.chain[0]} and its paths are reachable inside the unit's sandbox",
    )


def _check_readable(root: Path, program: install.Program, chain: list[PurePosixPath]) -> None:
    where = install.unreadable(root, chain)
    if where is not None:
        raise Stop(
            EXIT_USAGE,
            f"user taptill could not run {program.taptill_bin}: {where}; chmod o+rX it, or use --prefix",
        )


def _check_devices(
    needs: list[devices.DeviceNeed],
    groups: tuple[str, ...],
    unit: str,
    root: Path,
    live: bool,
    report: Report,
) -> None:
    """On a live system every node the config names must open for user taptill with the unit's groups."""
    allow = sandbox.service_options(unit).get("DeviceAllow", [])
    if live:
        for need in needs:
            problem = devices.access_problem(root, need, groups) or devices.not_allowed(root, need, allow)
            if problem:
                raise Stop(EXIT_MISSING, problem)
    checked = [str(n.node) for n in needs if n.node is not None]
    text = f"groups {', '.join(groups) or 'none'}" + (
        f"; {', '.join(checked)} open for user taptill" if live and checked else ""
    )
    if not live and checked:
        text += f"; {', '.join(checked)} checked when run on the terminal itself"
    report.line("devices", {"groups": list(groups), "nodes": checked, "checked": live}, text)


def _report_program(
    program: install.Program, extras: tuple[str, ...], reinstall: bool, report: Report
) -> None:
    if program.venv is None:
        text = f"{program.taptill_bin} (given with --taptill-bin)"
    else:
        what = f"taptill{'[' + ','.join(extras) + ']' if extras else ''}"
        text = f"{'install' if reinstall else 'unchanged'} {what} in {program.venv}"
    report.line(
        "program",
        {"taptill_bin": str(program.taptill_bin), "venv": str(program.venv or ""), "install": reinstall},
        text,
    )


def systemd_running(root: Path = Path("/")) -> bool:
    return (root / "run/systemd/system").is_dir()


def _activate(live: bool, changes: list[Change]) -> str:
    """Create the user and (re)start the service on a live system; an image does this at first boot."""
    if not live:
        return "enabled in image"
    sysusers = shutil.which("systemd-sysusers")
    if sysusers and any(c.changed and c.wanted.path == SYSUSERS_PATH for c in changes):
        subprocess.run([sysusers, str(SYSUSERS_PATH)], check=False, timeout=60)
    if not systemd_running():
        return "enabled, not started (systemd not running)"
    for cmd in (["systemctl", "daemon-reload"], ["systemctl", "restart", "taptill.service"]):
        subprocess.run(cmd, check=False, timeout=90)
    return "enabled and restarted"


def _activate_text(live: bool) -> str:
    if not live:
        return "unit installed and enabled in the image; the user is created at first boot (sysusers.d)"
    if not systemd_running():
        return "unit enabled; systemd is not running here, so start it with: systemctl start taptill"
    return "unit enabled and (re)started; follow it with: journalctl -u taptill -f"


if __name__ == "__main__":
    sys.exit(main())
