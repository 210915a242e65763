"""``taptill doctor``: one line per check (OK, WARN, FAIL) and how to fix what is wrong."""

from __future__ import annotations

import asyncio
import json
import math
import os
import pwd
import shutil
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from terminal.config import Config, ConfigError, load_config, span_words
from terminal.config_section import Section
from terminal.controller.operators import (
    OperatorBook,
    OperatorKeyError,
    key_mismatch,
    parse_operator_key,
)
from terminal.journal import Journal, JournalError, JournalMissing
from terminal.model import printable
from terminal.money import format_cents
from terminal.net.transport import cleartext_host
from terminal.ops.salvage import SQLITE_DEB, SQLITE_TOOL, waiting_orphans
from terminal.partybroker.config import PartybrokerConfig, parse_partybroker
from terminal.ready2order.config import Ready2OrderConfig
from terminal.service.credentials import (
    BRINK_ACCESS_TOKEN,
    BRINK_LOCATION_TOKEN,
    METRICS_TOKEN,
    OPERATOR_KEY,
    PARTYBROKER_PASSWORD,
    READY2ORDER_TOKEN,
    WALLET_TOKEN,
    YOURBARMATE_PASSWORD,
    ServiceSecret,
    Source,
    service_source,
)
from terminal.service.drivers import missing_drivers
from terminal.service.secret import Secret, SecretError, read_secret

MIN_YEAR = 2024
CLOCK_SLACK_S = 24 * 3600  # a clock this far behind the build or the last sale is wrong
DISK_FAIL_BYTES = 50 * 1024 * 1024
DISK_WARN_BYTES = 200 * 1024 * 1024
PENDING_WARN_S = 3600
CLOCK_STEP_SLACK_S = 60  # a record stamped this far ahead of the clock: the clock stepped back
PENDING_FAIL_S = 24 * 3600
SERVER_TIMEOUT_S = 5.0
PIN_SWEEP_WARN_S = 7 * 86_400.0  # a cloned operator card that can try every PIN within a week: WARN


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN, FAIL
    detail: str

    @classmethod
    def ok(cls, name: str, detail: str) -> Check:
        return cls(name, "OK", detail)

    @classmethod
    def warn(cls, name: str, detail: str) -> Check:
        return cls(name, "WARN", detail)

    @classmethod
    def fail(cls, name: str, detail: str) -> Check:
        return cls(name, "FAIL", detail)

    def line(self) -> str:
        return f"{self.status:<4} {self.name:<11} {self.detail}"


def run_doctor(config_path: Path, *, as_json: bool = False, now: Callable[[], datetime] | None = None) -> int:
    """Print every check; 1 when any check FAILs, else 0."""
    checks = diagnose(config_path, now=now)
    if as_json:
        # printable: a check's detail may quote a server (bidi and C1 characters pass json.dumps raw)
        print(printable(json.dumps([c.__dict__ for c in checks], ensure_ascii=False)))
    else:
        for c in checks:
            print(printable(c.line()))
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def diagnose(config_path: Path, *, now: Callable[[], datetime] | None = None) -> list[Check]:
    clock = now or (lambda: datetime.now(UTC))
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        return [Check.fail("config", f"{exc}")]
    checks = [Check.ok("config", f"{config_path} loads")]
    partybroker, pb_problem = _partybroker_config(config_path)
    # Each secret where the service will get it: the file its unit loads, seen by root; its credential.
    token = service_source(WALLET_TOKEN, cfg.wallet.token_file, config_path)
    checks.append(_secret_check("secrets", WALLET_TOKEN, token))
    password = None
    if partybroker is not None:
        password = service_source(PARTYBROKER_PASSWORD, partybroker.password_file, config_path)
        checks.append(_secret_check("pb-secret", PARTYBROKER_PASSWORD, password))
    if cfg.terminal.mode == "topup":
        key = service_source(OPERATOR_KEY, cfg.topup.operator_key_file, config_path)
        checks += [_operator_key_check(cfg, key), _pin_check(cfg), _caps_check(cfg)]
    r2o_token = None
    if cfg.ready2order is not None:
        r2o_token = service_source(READY2ORDER_TOKEN, cfg.ready2order.account_token_file, config_path)
        checks.append(_secret_check("r2o-secret", READY2ORDER_TOKEN, r2o_token))
    if cfg.yourbarmate is not None:
        ybm_password = service_source(YOURBARMATE_PASSWORD, cfg.yourbarmate.password_file, config_path)
        checks.append(_secret_check("ybm-secret", YOURBARMATE_PASSWORD, ybm_password))
    brink_tokens: tuple[Source, Source] | None = None
    if cfg.terminal.mode == "table" and cfg.brink is not None:
        brink_tokens = (
            service_source(BRINK_ACCESS_TOKEN, cfg.brink.access_token_file, config_path),
            service_source(BRINK_LOCATION_TOKEN, cfg.brink.location_token_file, config_path),
        )
        checks.append(_secret_check("brink-access", BRINK_ACCESS_TOKEN, brink_tokens[0]))
        checks.append(_secret_check("brink-location", BRINK_LOCATION_TOKEN, brink_tokens[1]))
    checks.append(_transport_check(cfg, partybroker))
    checks.append(asyncio.run(_wallet_check(cfg, token)))
    journal_check, journal = _journal_check(cfg.journal_path)
    drivers = missing_drivers(cfg)
    try:
        checks.append(_clock_check(clock(), journal))
        checks.append(_running_reader_check(cfg, journal) or _reader_check(cfg, drivers.get("reader")))
        checks.append(_display_check(cfg, drivers.get("display")))
        if cfg.gpio.enabled:
            checks.append(_gpio_check(drivers.get("gpio")))
        checks.append(_disk_check(cfg.terminal.state_dir))
        checks.append(journal_check)
        readable = journal_check.status != "FAIL"
        money = (cfg.terminal.locale, cfg.terminal.currency)
        checks.append(_queue_check(journal, clock(), money=money, readable=readable))
        checks.append(_unsellable_check(journal, readable=readable, mode=cfg.terminal.mode))
        checks.append(_denied_cards_check(journal, readable=readable))
        if cfg.terminal.mode == "table":
            checks.append(_denominations_check(cfg, journal))
        checks.append(_outbox_check(journal, clock(), readable=readable))
        checks.append(_metrics_check(cfg, config_path))
        if cfg.ready2order is not None:
            checks.append(_mirror_check(cfg, journal))
        if cfg.yourbarmate is not None:
            checks.append(_webhook_listen_check(cfg, journal))
            checks.append(_stock_check(cfg, journal, readable=readable))
            checks.append(_quarantine_check(journal))
    finally:
        if journal is not None:
            journal.close()
    checks.append(asyncio.run(_partybroker_check(partybroker, pb_problem, password)))
    checks.append(asyncio.run(_ready2order_check(cfg.ready2order, r2o_token)))
    if brink_tokens is not None:
        checks.append(asyncio.run(_brink_check(cfg, *brink_tokens)))
    return checks


# --- config and secrets -----------------------------------------------------------------------------


def _partybroker_config(path: Path) -> tuple[PartybrokerConfig | None, str | None]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        table = data.get("partybroker")
        if table is None:
            return None, None
        return parse_partybroker(Section("partybroker", table), path.parent), None
    except (ConfigError, OSError, tomllib.TOMLDecodeError) as exc:
        return None, str(exc)


def _secret_check(name: str, secret: ServiceSecret, source: Source) -> Check:
    """The secret the service will read: FAIL when the unit would not pass it or it is open to others,
    WARN when this user may not look at it (root's file, seen by the service user)."""
    if source.problem is not None:
        return Check.fail(name, source.problem)
    if source.unreadable is not None:
        return Check.warn(name, source.unreadable)
    path = source.path
    if path is not None and not source.credential:
        try:
            st = path.stat()
            # a directory's mode is not the problem: read_secret says what is
            mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0
        except OSError:
            mode = 0
        if mode & 0o077:
            return Check.fail(name, f"{path} is mode {mode:04o}, readable by others; run: chmod 600 {path}")
    try:
        read_secret(path, secret.credential)
    except SecretError as exc:
        return Check.fail(name, str(exc))
    if source.credential:
        return Check.ok(name, f"{secret.credential} comes as a systemd credential ({source.where})")
    return Check.ok(name, f"{source.where} is private (0600) and not empty")


def _service_secret(secret: ServiceSecret, source: Source | None) -> Secret | None:
    """The secret as the service will get it, or None when it cannot be read here (its check says why)."""
    if source is None or source.problem is not None or source.unreadable is not None:
        return None
    try:
        return read_secret(source.path, secret.credential)
    except SecretError:
        return None


# --- the top-up kiosk ----------------------------------------------------------------------------


def _operator_key_check(cfg: Config, source: Source) -> Check:
    """The operator key where the service will get it: its credential, or a regular file that only its
    owner reads, owned by root or by the user the terminal runs as (the owner of its state directory),
    holding a key under which every configured operator entry was made (their key ids match)."""
    name, path, where = "operators", source.path, source.where
    if source.problem is not None:
        return Check.fail(name, source.problem)
    if source.unreadable is not None:
        return Check.warn(name, source.unreadable)
    if path is not None and not source.credential:
        problem = _key_file_problem(path, _terminal_user(cfg.terminal.state_dir))
        if problem is not None:
            return Check.fail(name, problem)
    try:
        book = OperatorBook(
            parse_operator_key(read_secret(path, OPERATOR_KEY.credential).reveal()), cfg.topup.operators
        )
    except SecretError as exc:
        return Check.fail(name, str(exc))
    except OperatorKeyError as exc:
        return Check.fail(name, f"{where}: {exc}")
    elsewhere = book.made_elsewhere()
    if elsewhere:
        return Check.fail(name, key_mismatch(elsewhere))
    unchecked = book.without_key_id()
    count = len(cfg.topup.operators)
    if unchecked:
        return Check.warn(
            name,
            f"{', '.join(unchecked)}: entries from before they carried a key id, so nothing shows they were "
            f"made under {where}; register them again (taptill operator add NAME) to have them checked",
        )
    return Check.ok(name, f"{count} operator{'s' if count != 1 else ''} made under {where}")


def _terminal_user(state_dir: Path) -> int:
    """The uid the terminal runs as: the owner of its state directory, else whoever runs doctor."""
    try:
        return state_dir.stat().st_uid
    except OSError:
        return os.geteuid()


def _key_file_problem(path: Path, terminal_uid: int) -> str | None:
    """What is wrong with the operator key file's mode or owner (None: nothing): anyone else who can read
    it can, with the config, compute the entry of any card and turn entries back into UIDs."""
    try:
        st = path.stat()
    except OSError:
        return None  # read_secret says what is wrong (missing, not readable)
    if not stat.S_ISREG(st.st_mode):
        return None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return f"{path} is mode {mode:04o}, readable by others; run: chmod 600 {path}"
    if st.st_uid not in (0, terminal_uid):
        owner, terminal = _user_name(st.st_uid), _user_name(terminal_uid)
        return (
            f"{path} is owned by {owner}, who can read the key; run: chown {terminal} {path} (or chown root "
            f"and pass it as LoadCredential={OPERATOR_KEY.credential}:{path})"
        )
    return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _pin_check(cfg: Config) -> Check:
    """How long a cloned operator card needs to try every PIN (the config refuses fewer than
    PIN_SPACE_FLOOR PINs; under PIN_SWEEP_WARN_S a WARN), or that there is no PIN at all."""
    t = cfg.topup
    if not t.pin_in_use:
        return Check.warn(
            "pin",
            "operator cards unlock without a PIN, so a cloned operator card unlocks the kiosk; set [topup] "
            "pin_required = true and give each operator a PIN (taptill operator add NAME --pin)",
        )
    rate = f"{t.pin_attempts} guesses per {t.pin_lockout_s:g} s lockout"
    text = (
        f"{t.pin_space} PINs ({t.pin_keys} buttons, {t.pin_length} presses); a cloned operator card "
        f"tries them all within {span_words(t.pin_sweep_s)} ({rate})"
    )
    if t.pin_sweep_s < PIN_SWEEP_WARN_S:
        return Check.warn("pin", f"{text}; raise [topup] pin_length or pin_lockout_s")
    return Check.ok("pin", text)


def _caps_check(cfg: Config) -> Check:
    """What a stolen unlock can credit. No cap per shift is a WARN, not a default: a default would
    decline a busy kiosk's guests mid-shift, and only the organiser knows what a shift takes."""
    t, money = cfg.topup, (cfg.terminal.locale, cfg.terminal.currency)

    def cap(cents: int | None) -> str:
        return "no cap" if cents is None else format_cents(cents, *money)

    text = (
        f"per unlock {cap(t.max_credit_per_unlock_cents)}, per operator and day "
        f"{cap(t.max_credit_per_shift_cents)}, offline {cap(t.max_offline_credit_cents)}"
    )
    if t.max_credit_per_shift_cents is None:
        return Check.warn(
            "caps",
            f"{text}: a stolen unlock credits without limit until someone notices; set [topup] "
            "max_credit_per_shift_cents to what one operator credits in a busy shift",
        )
    return Check.ok("caps", text)


# --- servers ------------------------------------------------------------------------------------


def _transport_check(cfg: Config, pb: PartybrokerConfig | None) -> Check:
    """How each server is reached: TLS (verified, whatever the environment says), http:// on this
    machine, or http:// across the network, which only ``allow_insecure = true`` lets through."""
    parts: list[str] = []
    exposed: list[str] = []
    servers = [("wallet", cfg.wallet.base_url)] + ([("partybroker", pb.base_url)] if pb else [])
    if cfg.ready2order is not None:
        servers.append(("ready2order", cfg.ready2order.base_url))
    if cfg.terminal.mode == "table" and cfg.brink is not None:
        servers.append(("brink", cfg.brink.url))
    for table, url in servers:
        host = cleartext_host(url)
        if url.lower().startswith("https://"):
            parts.append(f"{table} over TLS, verified")
        elif host is None:
            parts.append(f"{table} over http:// on this machine")
        else:
            parts.append(f"{table} over http:// to {host} (allow_insecure)")
            exposed.append(table)
    text = "; ".join(parts) + "; proxy and CA variables in the environment are ignored"
    if exposed:
        where = " and ".join(f"[{t}]" for t in exposed)
        return Check.warn("transport", f"{text}; secrets travel unencrypted: use https:// in {where}")
    return Check.ok("transport", text)


async def _wallet_check(cfg: Config, source: Source) -> Check:
    from terminal.wallet.catalog import check_buttons
    from terminal.wallet.client import WalletClient
    from terminal.wallet.outcomes import InfoLoaded, NotFound, Refused, Unauthorized, Unavailable

    token = _service_secret(WALLET_TOKEN, source)
    if token is None and source.unreadable is not None:
        return Check.warn("server", "not asked: this user may not read the token (see the secrets line)")
    if token is None:
        return Check.fail("server", "cannot ask the wallet server without the token; see the secrets line")
    client = WalletClient(
        cfg.wallet.base_url, token, timeout_s=SERVER_TIMEOUT_S, default_permission=cfg.wallet.permission
    )
    try:
        res = await client.terminal_info()
    finally:
        await client.aclose()
    if isinstance(res, Unauthorized):
        from terminal.wallet.catalog import token_fix

        why = f"401: {res.detail}" if res.detail else "401"
        return Check.fail(
            "server", f"the wallet server refused the token ({why}); {token_fix(cfg.wallet.token_file)}"
        )
    if isinstance(res, Unavailable) and res.status is not None:  # it answers, with an error
        return Check.fail("server", f"the wallet server answers terminal info with {res.reason}")
    if isinstance(res, Unavailable):
        return Check.fail(
            "server",
            f"{cfg.wallet.base_url} unreachable ({res.reason}); check the network "
            "and [wallet] base_url (sales queue up meanwhile)",
        )
    if isinstance(res, Refused) and 300 <= res.status < 400:
        return Check.fail("server", res.reason)
    if isinstance(res, NotFound):
        return Check.fail("server", f"{cfg.wallet.base_url}: {res.detail}; fix [wallet] base_url")
    if not isinstance(res, InfoLoaded):
        return Check.fail("server", f"the wallet server refused terminal info ({res.reason})")
    info = res.info
    missing = [str(p) for p in cfg.terminal.products if info.product(p) is None]
    name = info.friendly_name or "terminal"
    summary = f"{name}, permission {info.permission}, {len(info.products)} products"
    mode = cfg.terminal.mode
    unknown, wrong = (
        check_buttons(info, mode, cfg.select.buttons if mode == "select" else cfg.topup.buttons)
        if mode != "tap"
        else ([], [])
    )
    if wrong or unknown:  # taptill run refuses to start with such a button
        return Check.fail("server", f"{summary}; {'; '.join([*unknown, *wrong])}")
    if missing:
        # In tap mode every tap pays [terminal] products: one the server does not list declines them all.
        verdict = Check.fail if mode == "tap" else Check.warn
        return verdict(
            "server",
            f"{summary}; configured product(s) {', '.join(missing)} not on the "
            "server's list; fix [terminal] products",
        )
    return Check.ok("server", summary)


async def _partybroker_check(
    pb: PartybrokerConfig | None, problem: str | None, source: Source | None
) -> Check:
    if problem is not None:
        return Check.fail("partybroker", problem)
    if pb is None:
        return Check.ok("partybroker", "not configured")
    from terminal.partybroker.client import PartybrokerClient
    from terminal.partybroker.outcomes import Ambiguous, Drinks, Unauthorized

    password = _service_secret(PARTYBROKER_PASSWORD, source)
    if password is None and source is not None and source.unreadable is not None:
        return Check.warn("partybroker", "not asked: this user may not read the password (see pb-secret)")
    if password is None:
        return Check.fail("partybroker", "cannot log in without the password; see the pb-secret line")
    async with PartybrokerClient(
        pb.base_url, pb.party_id, pb.username, password, timeout_s=SERVER_TIMEOUT_S
    ) as client:
        res = await client.drinks()
    if isinstance(res, Drinks):
        return Check.ok("partybroker", f"session works, {len(res.drinks)} drinks")
    if isinstance(res, Unauthorized):
        return Check.fail("partybroker", "Partybroker refused the login (401); check username and password")
    if isinstance(res, Ambiguous):
        return Check.fail("partybroker", f"Partybroker unreachable ({res.reason}); check the network")
    return Check.fail("partybroker", f"Partybroker refused the drinks list ({res.reason}); check party_id")


async def _ready2order_check(r2o: Ready2OrderConfig | None, source: Source | None) -> Check:
    """The account token works, and the payment method, user's VAT rates and products the invoices name
    exist; the daily report is open (else the mirror waits, or opens it with open_day)."""
    if r2o is None:
        return Check.ok("ready2order", "not configured")
    from terminal.ready2order import outcomes as out
    from terminal.ready2order.client import Ready2OrderClient

    token = _service_secret(READY2ORDER_TOKEN, source)
    if token is None:
        return Check.warn("ready2order", "not asked: the account token cannot be read here (see r2o-secret)")
    async with Ready2OrderClient(r2o.base_url, token, timeout_s=SERVER_TIMEOUT_S) as client:
        day = await client.day_status()
        if not isinstance(day, out.DayStatus):
            return _r2o_failure(day, r2o)
        methods = await client.payment_methods()
        rates = await client.vat_rates()
        products = await client.products()
    if not isinstance(methods, out.Listed):
        return _r2o_failure(methods, r2o)
    if not isinstance(rates, out.Listed):
        return _r2o_failure(rates, r2o)
    if not isinstance(products, out.Listed):
        return _r2o_failure(products, r2o)
    problems = []
    method_ids = {m.id for m in methods.items}
    for key in ("payment_method_id", "topup_payment_method_id"):
        wanted = getattr(r2o, key)
        if wanted is not None and wanted not in method_ids:
            problems.append(f"{key} {wanted} is not a payment method of the account")
    vat_ids, product_ids = {v.id for v in rates.items}, {p.id for p in products.items}
    for wallet_id, m in r2o.products.items():
        if m.vat_id not in vat_ids:
            problems.append(f"[ready2order.products] {wallet_id}: vat_id {m.vat_id} is not a VAT rate")
        if m.product_id not in product_ids:
            problems.append(f"[ready2order.products] {wallet_id}: product_id {m.product_id} is not a product")
    summary = f"the account token works; {len(products.items)} products, {len(methods.items)} payment methods"
    if r2o.training:
        summary += "; training mode: invoices are training records, not fiscal ones"
    if problems:
        return Check.fail("ready2order", f"{'; '.join(problems)} (invoices would be refused)")
    if not day.open:
        what = "the terminal opens one (open_day = true)" if r2o.open_day else "the mirror waits until one is"
        return Check.warn("ready2order", f"{summary}; no daily report is open: {what}")
    return Check.ok("ready2order", summary)


async def _brink_check(cfg: Config, access_source: Source, location_source: Source) -> Check:
    """The POS answers GetParty for a table of this terminal on today's business date with the tokens:
    any ResultCode but 4 (access denied) is reachable; a party or none (101) both are."""
    from terminal.brink import outcomes as out
    from terminal.brink.business_date import business_date
    from terminal.brink.client import BrinkClient

    b, t = cfg.brink, cfg.table
    assert b is not None
    access = _service_secret(BRINK_ACCESS_TOKEN, access_source)
    location = _service_secret(BRINK_LOCATION_TOKEN, location_source)
    if access is None or location is None:
        return Check.warn("brink", "not asked: the tokens cannot be read here (brink-access, brink-location)")
    table = t.table_id if t.table_id is not None else (t.tables[0] if t.tables else 1)
    day = business_date(datetime.now(), b.business_day_starts)
    async with BrinkClient(b.url, access, location, min(b.timeout_s, SERVER_TIMEOUT_S)) as client:
        answer = await client.get_party(day, table)
    pays = (
        f"; wallet payments are applied at the POS as tender {t.tender_id} by terminal {t.terminal_id} (a "
        "name no other table terminal of the venue may have)"
        if t.apply_payment
        else "; payments are not applied at the POS (staff close paid tables by hand)"
    )
    match answer:
        case out.AccessDenied() as denied:
            return Check.fail(
                "brink",
                f"PAR Brink denies access ({denied.describe()}); check the tokens in [brink] "
                "access_token_file and location_token_file",
            )
        case out.Unreachable(reason):
            return Check.fail("brink", f"{b.url} unreachable ({reason}); tables cannot be paid meanwhile")
        case out.PartyFound() | out.NoParty():
            told = "an open party" if isinstance(answer, out.PartyFound) else "no open party (101)"
            return Check.ok("brink", f"the POS answers (table {table} on {day}: {told}){pays}")
        case out.PosUnavailable(code, message):
            return Check.warn("brink", f"the POS answers, but is unavailable ({code}: {message}){pays}")
        case out.InvalidRequest(message):
            return Check.warn("brink", f"the POS answers, but refused table {table} (invalid, 2: {message})")
        case out.Fault(code, text):
            return Check.warn("brink", f"the POS answers with a SOAP fault ({code}: {text})")
        case out.BillUnreadable(reason):
            return Check.warn("brink", f"the POS answers, but table {table}'s bill cannot be read ({reason})")


def _r2o_failure(answer: object, r2o: Ready2OrderConfig) -> Check:
    from terminal.ready2order import outcomes as out

    if isinstance(answer, out.Unauthorized):
        return Check.fail("ready2order", f"ready2order answered {answer.status}: {answer.fix()}")
    if isinstance(answer, out.RateLimited):
        return Check.warn("ready2order", f"{answer.message}; ask again in a minute")
    if isinstance(answer, out.Unavailable):
        return Check.fail(
            "ready2order", f"{r2o.base_url} unreachable ({answer.reason}); invoices wait in the journal"
        )
    if isinstance(answer, out.Refused):
        return Check.fail("ready2order", f"ready2order refused ({answer.status}: {answer.message})")
    return Check.fail("ready2order", "no usable answer")


def _mirror_check(cfg: Config, journal: Journal | None) -> Check:
    """The running terminal's mirror: FAIL while it is stopped (the token refused, no daily report)."""
    from terminal.ready2order.health import pause_left_s
    from terminal.ready2order.runtime import STATUS_CACHE_KEY
    from terminal.service.state_lock import running_terminal

    pid = running_terminal(cfg.terminal.state_dir)
    cached = journal.cache_get(STATUS_CACHE_KEY) if journal is not None else None
    state = cached[0] if cached is not None and isinstance(cached[0], dict) else {}
    if pid is None or state.get("pid") != pid:
        return Check.ok("r2o-mirror", "no terminal running (records wait in the journal)")
    for key in ("refused", "day_closed"):
        stopped = state.get(key)
        if isinstance(stopped, dict):
            return Check.fail("r2o-mirror", f"stopped: {stopped.get('reason')}; {stopped.get('fix')}")
    left_s = pause_left_s(state)
    if left_s > 0:
        return Check.warn("r2o-mirror", f"paused after a 429 (rate limited), {math.ceil(left_s)} s left")
    return Check.ok("r2o-mirror", "running")


# --- clock, journal, disk -------------------------------------------------------------------------


def _journal_check(path: Path) -> tuple[Check, Journal | None]:
    """Read-only: doctor runs as root and must not create, move or migrate anything in the state dir."""
    waiting = waiting_orphans(path)
    copies = (
        f"; {', '.join(p.name for p in waiting)} (sales a terminal kept when its journal was removed "
        "under it) waits to be merged: start taptill run, which merges it"
    )
    try:
        journal = Journal.open_read_only(path)
    except JournalMissing:
        if waiting:
            return Check.warn("journal", f"none at {path}{copies}"), None
        return Check.ok("journal", f"none yet at {path} (the terminal has not run)"), None
    except JournalError as exc:  # damaged (the message says to run taptill recover), unreadable, too new
        return Check.fail("journal", str(exc)), None
    if waiting:
        return Check.warn("journal", f"{path} is intact{copies}"), journal
    text = f"{path} is intact"
    if shutil.which(SQLITE_TOOL) is None:
        fix = f"taptill recover needs the {SQLITE_TOOL} tool: apt-get install {SQLITE_DEB}"
        return Check.warn("journal", f"{text}, but {fix}"), journal
    return Check.ok("journal", text), journal


def _clock_check(now: datetime, journal: Journal | None) -> Check:
    fix = "the clock is wrong and TLS will fail; check time sync (timedatectl timesync-status)"
    if now.year < MIN_YEAR:
        return Check.fail("clock", f"it is {now:%Y-%m-%d}, before {MIN_YEAR}: {fix}")
    build = datetime.fromtimestamp(Path(__file__).stat().st_mtime, UTC)
    if (build - now).total_seconds() > CLOCK_SLACK_S:
        return Check.fail("clock", f"it is {now:%Y-%m-%d %H:%M}, before this build ({build:%Y-%m-%d}): {fix}")
    if journal is not None:
        rows = journal.query("SELECT MAX(created_at) FROM sales")
        newest = rows[0][0] if rows else None
        if newest:
            last = datetime.fromisoformat(newest)
            if (last - now).total_seconds() > CLOCK_SLACK_S:
                return Check.fail(
                    "clock",
                    f"it is {now:%Y-%m-%d %H:%M}, before the last sale ({last:%Y-%m-%d %H:%M}): {fix}",
                )
    return Check.ok("clock", f"{now:%Y-%m-%d %H:%M} UTC")


def _without_journal(name: str, readable: bool, missing: str) -> Check:
    """A journal check's line when there is no journal to read: WARN when it exists but cannot be read
    (the journal check says why), OK with ``missing`` when there is none yet."""
    if not readable:
        return Check.warn(name, "unknown: the journal cannot be read (see the journal check)")
    return Check.ok(name, missing)


def _queue_check(
    journal: Journal | None, now: datetime, *, money: tuple[str, str], readable: bool = True
) -> Check:
    """Wallet sales: FAIL when they stop reaching the server; WARN for held or rejected ones, and while a
    guest charged but never served waits for a refund (a person's job, never a FAIL). ``money`` is the
    (locale, currency) amounts are shown in."""
    if journal is None:
        return _without_journal("queue", readable, "no journal yet (the terminal has not run)")
    st = journal.status()
    parts = [f"{st.pending} pending", f"{st.rejected} rejected"]
    if st.held:
        parts.append(f"{st.held} held for reconciliation")
    if st.to_refund:
        parts.append(f"{st.to_refund} to refund ({format_cents(-st.to_refund_cents, *money)})")
    summary = ", ".join(parts)
    if st.oldest_pending:
        age = (now - datetime.fromisoformat(st.oldest_pending)).total_seconds()
        summary += f", oldest pending {st.oldest_pending} ({age_text(age)})"
        if age > PENDING_FAIL_S:
            return Check.fail("queue", f"{summary}; sales are not reaching the server: see taptill queue")
        if age > PENDING_WARN_S:
            return Check.warn("queue", f"{summary}; the server has not confirmed for an hour: taptill queue")
    if st.held:
        fix = "check the held sales' wallets (taptill queue), then taptill settle KEY"
        return Check.warn("queue", f"{summary}; {fix}")
    if st.to_refund:
        fix = (
            "guests were charged but never served: refund them in pretix or serve them by hand, then "
            "taptill settle --refunded KEY (or --served KEY); taptill queue lists them"
        )
        return Check.warn("queue", f"{summary}; {fix}")
    if st.rejected:
        return Check.warn("queue", f"{summary}; review them with taptill queue --rejected")
    return Check.ok("queue", summary)


def age_text(age_s: float) -> str:
    """How old a record is, in hours, for a person: never negative. A record stamped ahead of this
    machine's clock (more than a minute) means the clock stepped back since; that is said instead."""
    if age_s < -CLOCK_STEP_SLACK_S:
        return f"stamped {-age_s / 3600:.1f} h ahead of this clock: the clock stepped back since"
    return f"{max(age_s, 0.0) / 3600:.1f} h"


def _outbox_check(journal: Journal | None, now: datetime, *, readable: bool = True) -> Check:
    """Every destination but the wallet (the queue check's): how old its oldest pending record is, and
    whether a person must settle a held one."""
    from terminal.brink.payment_outbox import DESTINATION as BRINK
    from terminal.brink.payment_outbox import payment_counts
    from terminal.outbox.view import WALLET, backlogs

    if journal is None:
        return _without_journal("outbox", readable, "no journal yet (the terminal has not run)")
    others = [b for b in backlogs(journal) if b.destination != WALLET]
    if not others:
        return Check.ok("outbox", "no records for other destinations")
    worst, parts = "OK", []
    for b in others:
        age = b.age_s(now)
        # PAR Brink's payments counted as `taptill status` counts them (held ones are not pending there)
        line = f"{BRINK}: {payment_counts(journal).summary()}" if b.destination == BRINK else b.line()
        part = line + (f" ({age_text(age)})" if age is not None else "")
        status = "OK"
        if age is not None and age > PENDING_FAIL_S:
            status, part = "FAIL", f"{part}: not reaching {b.destination}"
        elif (age is not None and age > PENDING_WARN_S) or b.held:
            status = "WARN"
        worst = max(worst, status, key=("OK", "WARN", "FAIL").index)
        parts.append(part)
    detail = "; ".join(parts)
    if worst != "OK":
        detail += "; see taptill queue (taptill settle REF settles a held record)"
    return Check("outbox", worst, detail)


# Where each mode's products are configured: what the doctor says to take a product out of.
# How to stop offering a product, by mode (the end of "... add it to a quota or <this>").
PRODUCTS_KEY = {
    "tap": "take it out of [terminal] products",
    "select": "take its button out of [select] buttons",
    "topup": "take its button out of [topup] buttons",
    "table": "take it out of [table] denominations",
}


def _unsellable_check(journal: Journal | None, *, readable: bool = True, mode: str = "tap") -> Check:
    """Products the server answered with an error on every attempt and booked nothing (issue 10); the
    advice names where ``mode`` configures its products (PRODUCTS_KEY)."""
    if journal is None:
        return _without_journal("products", readable, "no journal yet")
    unsellable = journal.unsellable()
    if not unsellable:
        return Check.ok("products", "the server booked every product sold")
    named = ", ".join(f"{name} (id {pid}, since {since})" for pid, (name, _, since) in unsellable.items())
    where = PRODUCTS_KEY.get(mode, PRODUCTS_KEY["tap"])
    # a busy server's 500s (SQLite's "database is locked" under concurrent debits) count the same as a
    # product it can never book; one debit of the product booked sells it again
    return Check.fail(
        "products",
        f"the wallet server answers every debit of {named} with an error and books nothing; if it was "
        "only busy (database is locked), the next debit of it booked sells it again; else the item is in "
        f"no pretix quota or inactive: add it to a quota or {where} "
        "(taptill queue --rejected lists the sales)",
    )


def _denied_cards_check(journal: Journal | None, *, readable: bool = True) -> Check:
    """Cards refused offline because the server refused one of their sales for the card itself (unknown,
    or its balance did not pay): WARN while there are any, as a guest with one is declined offline."""
    if journal is None:
        return _without_journal("cards", readable, "no journal yet")
    denied = journal.denied_cards()
    if not denied:
        return Check.ok("cards", "no card is denied offline")
    reasons = ", ".join(f"{count} {reason}" for reason, count in denied.items())
    return Check.warn(
        "cards",
        f"{sum(denied.values())} card(s) denied offline ({reasons}): the server refused a sale of each for "
        "the card itself; each is declined while the server is unreachable, until the server next answers "
        "for it (any online tap of it ends the denial)",
    )


def _webhook_listen_check(cfg: Config, journal: Journal | None) -> Check:
    """The yourbarmate webhook's address: free for ``taptill run`` to take, or held by the running
    terminal itself; FAIL when another program holds it (taptill run would not start)."""
    import socket

    from terminal.service.state_lock import running_terminal
    from terminal.yourbarmate.receiver import STATUS_CACHE_KEY

    ybm = cfg.yourbarmate
    assert ybm is not None
    pid = running_terminal(cfg.terminal.state_dir)
    cached = journal.cache_get(STATUS_CACHE_KEY) if journal is not None else None
    state = cached[0] if cached is not None and isinstance(cached[0], dict) else {}
    if pid is not None and state.get("pid") == pid:
        return Check.ok(
            "ybm-listen", f"taptill (pid {pid}) serves the webhook on {state.get('listen')}{ybm.path}"
        )
    try:
        family = socket.AF_INET6 if ":" in ybm.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the receiver binds
            probe.bind((ybm.host, ybm.port))
    except OSError as exc:
        holder = "taptill is starting or another program" if pid is not None else "another program"
        return Check.fail(
            "ybm-listen",
            f"[yourbarmate] listen {ybm.listen}: {exc.strerror or exc} ({holder}); pick a free address and "
            "port, or stop what holds it (ss -ltnp shows it)",
        )
    return Check.ok("ybm-listen", f"{ybm.listen} is free for the webhook")


def _metrics_check(cfg: Config, config_path: Path) -> Check:
    """The Prometheus endpoint: configured or not, its token where the service reads it, and its address
    served by the running terminal (or free for ``taptill run`` to take)."""
    import socket

    from terminal.service.state_lock import running_terminal

    metrics = cfg.metrics
    if metrics is None:
        return Check.ok("metrics", "not configured ([metrics] listen is not set): nothing listens")
    if metrics.token_file is None:
        token = "no token (loopback only)"
    else:
        source = service_source(METRICS_TOKEN, metrics.token_file, config_path)
        secret = _secret_check("metrics", METRICS_TOKEN, source)
        if secret.status != "OK":
            return Check(secret.name, secret.status, f"[metrics] token_file: {secret.detail}")
        token = "bearer token set"
    family = socket.AF_INET6 if ":" in metrics.host else socket.AF_INET
    pid = running_terminal(cfg.terminal.state_dir)
    if pid is not None:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(2.0)
            listening = probe.connect_ex((metrics.host, metrics.port)) == 0
        if listening:
            return Check.ok("metrics", f"taptill (pid {pid}) serves http://{metrics.listen}/metrics; {token}")
        return Check.warn(
            "metrics",
            f"taptill (pid {pid}) runs but nothing listens on {metrics.listen}; restart it to take [metrics]",
        )
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the endpoint binds
            probe.bind((metrics.host, metrics.port))
    except OSError as exc:
        return Check.fail(
            "metrics",
            f"[metrics] listen {metrics.listen}: {exc.strerror or exc} (another program); pick a free "
            "address and port, or stop what holds it (ss -ltnp shows it)",
        )
    return Check.ok("metrics", f"{metrics.listen} is free for the endpoint (taptill is not running); {token}")


def _stock_check(cfg: Config, journal: Journal | None, *, readable: bool = True) -> Check:
    """WARN for each mapped product that is sold out or runs low by the stock ledger (issue 15)."""
    from terminal.yourbarmate.stock import stock_figures

    ybm = cfg.yourbarmate
    assert ybm is not None
    if journal is None:
        detail = "no journal yet" if readable else "unknown: the journal cannot be read"
        return Check.ok("stock", detail) if readable else Check.warn("stock", detail)
    figures = stock_figures(journal.query, ybm.products, ybm.low_servings)
    gone = [f.product for f in figures if f.sold_out]
    low = [f"{f.product} ({f.servings_left} left)" for f in figures if f.low and not f.sold_out]
    if not gone and not low:
        return Check.ok("stock", f"{len(figures)} product(s), none below {ybm.low_servings} servings")
    parts = (
        [f"SOLD OUT {', '.join(gone)}" + (" (declined at the tap)" if ybm.stop_when_empty else "")]
        if gone
        else []
    )
    parts += [f"low {', '.join(low)}"] if low else []
    return Check.warn(
        "stock",
        "; ".join(parts) + ": receive a delivery (taptill stock receive DELIVERY_ID) or record a count "
        "(taptill stock set PRODUCT AMOUNT)",
    )


def _quarantine_check(journal: Journal | None) -> Check:
    """WARN while webhook bodies sit in quarantine, not applied: yourbarmate will not send them again
    (they were answered 200), so one that failed by our config waits for a person to replay it."""
    from terminal.yourbarmate.stock import quarantined

    waiting = [] if journal is None else quarantined(journal.query)
    if not waiting:
        return Check.ok("ybm-quarantine", "no quarantined webhook body waits")
    newest = waiting[0]
    return Check.warn(
        "ybm-quarantine",
        f"{len(waiting)} webhook body(ies) quarantined and not applied (newest #{newest['id']}: "
        f"{printable(str(newest['reason']), 160)}); taptill stock --quarantine lists them, "
        "taptill stock replay ID applies one after a fix of [yourbarmate.products]",
    )


def _denominations_check(cfg: Config, journal: Journal | None) -> Check:
    """Table mode: the [table] denomination products at their values in the wallet's product list as the
    terminal last cached it (a mismatch keeps the terminal out of service: a bill would be charged wrong)."""
    from terminal.controller.table import price_problems
    from terminal.wallet.catalog import cached_products

    products = cached_products(journal) if journal is not None else ()
    if not products:
        return Check.warn(
            "tables", "no product list cached yet: start taptill run to check the denominations"
        )
    problems = price_problems(cfg.table.denominations, products)
    if problems:
        return Check.fail("tables", "; ".join(problems) + "; out of service until it matches")
    values = ", ".join(f"{v} = {p}" for v, p in sorted(cfg.table.denominations.items(), reverse=True))
    return Check.ok("tables", f"denominations match the wallet's prices ({values})")


def _disk_check(state_dir: Path) -> Check:
    probe = state_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        vfs = os.statvfs(probe)
    except OSError as exc:
        return Check.fail("disk", f"cannot look at {probe} ({exc.strerror}); check [terminal] state_dir")
    if vfs.f_flag & os.ST_RDONLY:
        # A read-only file system shows 0 bytes free: not a matter of a bigger card.
        return Check.fail(
            "disk",
            f"{probe} is on a read-only file system; the journal needs {state_dir} writable: remount it "
            "read-write or point [terminal] state_dir at a writable disk",
        )
    if not os.access(probe, os.W_OK):
        return Check.fail(
            "disk", f"{probe} is not writable by this user; the journal needs it: fix its owner or mode"
        )
    free = vfs.f_bavail * vfs.f_frsize
    text = f"{free // (1024 * 1024)} MB free for {state_dir}"
    if free < DISK_FAIL_BYTES:
        return Check.fail("disk", f"{text}; the journal needs room: free space or use a bigger SD card")
    if free < DISK_WARN_BYTES:
        return Check.warn("disk", f"{text}; getting low: remove old logs (journalctl --vacuum-size=50M)")
    return Check.ok("disk", text)


# --- hardware -------------------------------------------------------------------------------------


def _running_reader_check(cfg: Config, journal: Journal | None) -> Check | None:
    """FAIL when the running terminal's reader is down for long or keeps failing; None otherwise (then
    the hardware is probed)."""
    import time

    from terminal.service.reader_health import CACHE_KEY, ReaderHealth
    from terminal.service.state_lock import running_terminal

    if journal is None:
        return None
    pid = running_terminal(cfg.terminal.state_dir)
    cached = journal.cache_get(CACHE_KEY)
    health = ReaderHealth.from_json(cached[0]) if cached is not None else None
    if pid is None or health is None or health.pid != pid:
        return None
    problem = health.problem(time.time())
    if problem is None:
        return None
    # The reader's own detail (in ``problem``) ends with what to do about it: not said twice here.
    return Check.fail("reader", f"{problem} (the log of taptill run has each failure)")


def _reader_check(cfg: Config, missing_driver: str | None = None) -> Check:
    from provisioning import detect  # shared with provisioning; hardware libraries load inside the probes

    if missing_driver is not None:
        return Check.fail("reader", missing_driver)
    r = cfg.reader
    if r.kind == "sim":
        directory = r.socket.parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
        if not os.access(directory, os.W_OK):
            return Check.fail("reader", f"sim socket directory {r.socket.parent} is not writable; fix owner")
        return Check.ok("reader", f"sim reader socket {r.socket}")
    if r.kind == "pcsc":
        probe = detect.pcsc_readers()
        names = [n for n in probe.found if r.name is None or r.name in n]
        if probe.problem:
            return Check.fail("reader", f"{probe.problem}; apt install pcscd, systemctl start pcscd.socket")
        if not names:
            want = f" matching {r.name!r}" if r.name else ""
            return Check.fail("reader", f"no PC/SC reader{want} (pcscd lists {len(probe.found)}); plug it in")
        return Check.ok("reader", f"PC/SC {names[0]!r}")
    if r.device.startswith("usb"):
        probe = detect.nfcpy_usb_readers()
        if probe.problem or not probe.found:
            return Check.fail(
                "reader",
                f"no nfcpy USB reader ({probe.problem or 'none plugged in'}); "
                "plug it in (the user needs group plugdev)",
            )
        return Check.ok("reader", f"nfcpy {probe.found[0]}")
    if r.device.startswith("tty:"):
        dev = Path("/dev") / f"tty{r.device.split(':')[1]}"
        if not dev.exists():
            return Check.fail("reader", f"{dev} does not exist; enable the UART (raspi-config)")
        return Check.ok("reader", f"nfcpy on {dev}")
    return Check.warn("reader", f"nfcpy device {r.device!r} cannot be probed (a test driver?)")


def _display_check(cfg: Config, missing_driver: str | None = None) -> Check:
    from provisioning import detect

    d = cfg.display
    if d.kind != "oled":
        return Check.ok("display", f"{d.kind} display needs no hardware")
    if missing_driver is not None:
        return Check.fail("display", missing_driver)
    if d.interface == "spi":
        dev = Path(f"/dev/spidev{d.spi_port}.{d.spi_device}")
        if not dev.exists():
            return Check.fail("display", f"{dev} does not exist; enable SPI (raspi-config nonint do_spi 0)")
        return Check.ok("display", f"SPI {dev}")
    found, why = detect.i2c_oleds(f"/dev/i2c-{d.i2c_port}")
    if any(o.address == d.i2c_address for o in found):
        return Check.ok("display", f"OLED answers on /dev/i2c-{d.i2c_port} at 0x{d.i2c_address:02X}")
    others = ", ".join(str(o) for o in found)
    hint = f"found {others}; set [display] i2c_address" if others else f"{why}; check the wiring"
    return Check.fail("display", f"no OLED at /dev/i2c-{d.i2c_port} 0x{d.i2c_address:02X}: {hint}")


def _gpio_check(missing_driver: str | None) -> Check:
    if missing_driver is not None:
        return Check.fail("gpio", missing_driver)
    return Check.ok("gpio", "gpiozero and a pin library load")
