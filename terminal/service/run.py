"""Builds a terminal from its config (journal, wallet client, adapters, loop) and runs it until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hw.display.base import Display, DisplayNotFound
from hw.display.factory import make_display
from hw.gpio.base import Outputs
from hw.gpio.factory import make_buttons, make_outputs
from hw.readers.factory import make_reader
from terminal.config import Config
from terminal.controller import Controller, ControllerSettings
from terminal.controller.operators import (
    OperatorBook,
    OperatorKeyError,
    key_mismatch,
    parse_operator_key,
)
from terminal.controller.table import price_problems
from terminal.device_loop import DeviceLoop
from terminal.events import BillRead, CatalogChanged, UnsellableChanged
from terminal.journal import Journal, JournalDamaged, JournalError, JournalTooNew, journal_moved
from terminal.ops.salvage import keep_orphan, open_journal_salvaging, set_aside_leftovers
from terminal.service import boot_clock
from terminal.service.credentials import (
    BRINK_ACCESS_TOKEN,
    BRINK_LOCATION_TOKEN,
    METRICS_TOKEN,
    OPERATOR_KEY,
    READY2ORDER_TOKEN,
    WALLET_TOKEN,
)
from terminal.service.drivers import check_drivers
from terminal.service.pin_lockouts import restore_pins
from terminal.service.sd_notify import Notifier
from terminal.service.secret import Secret, SecretError, read_secret
from terminal.service.state_lock import StateDirBusy, StateLock, StateLockError
from terminal.wallet.catalog import (
    NoCatalog,
    StartupError,
    TokenRefused,
    check_buttons,
    check_permission,
    check_products,
    load_catalog,
    token_fix,
)
from terminal.wallet.client import WalletClient
from terminal.wallet.health import ServerHealth
from terminal.wallet.sale_sender import SaleSender
from terminal.wallet.sale_store import ReportStatements

if TYPE_CHECKING:
    # Each external system's runtime is imported where its section is configured, not here: a terminal
    # without [yourbarmate] must not load aiohttp, nor one outside table mode the PAR Brink XML stack
    # (issue 10: RSS and start-up on a Pi; tests/test_layout.py holds the line).
    from terminal.brink.client import BrinkClient
    from terminal.brink.runtime import BrinkPaymentRuntime
    from terminal.metrics.runtime import MetricsRuntime  # imported when [metrics] is configured
    from terminal.partybroker.runtime import PartybrokerRuntime
    from terminal.ready2order.runtime import Ready2OrderRuntime
    from terminal.yourbarmate.runtime import YourbarmateRuntime
    from terminal.yourbarmate.stock_watch import StockWatch

log = logging.getLogger(__name__)

STARTUP_INFO_TIMEOUT_S = 2.0
# Prices are refreshed this often; the request also keeps the pooled connection to the wallet server
# warm (proxies close idle keep-alive connections after about a minute), so a tap never pays for a
# new TCP/TLS handshake.
CATALOG_REFRESH_S = 45.0
# How soon the product list is asked for again when the last try failed (or there is none at all).
CATALOG_RETRY_S = 10.0
SHUTDOWN_GRACE_S = 2.0
# On SIGTERM the sale under way gets this long to be decided (one tap budget) and dispensed in full;
# systemd's TimeoutStopSec (20 s in the unit) leaves room for it and the grace above.
STOP_DRAIN_S = 10.0


KEEP_RETRY_S = 2.0  # a journal removed under the terminal: how often its copy is tried while it fails
KEEP_RETRY_LOG_S = 60.0  # and how often that is said


class StoppedForJournal(JournalError):
    """The journal was found damaged, removed or replaced while the terminal ran: it stopped (the sale
    under way finished), and its next start salvages or merges the sales; the message says how."""


def _damaged_line(damage: JournalDamaged) -> str:
    return (
        f"journal {damage.path} is damaged ({damage.problem}); taptill stopped so that its next start "
        "salvages the sales into a new journal (systemd starts it again; by hand: taptill run)"
    )


async def _keep_moved(journal: Journal, why: str, notifier: Notifier) -> tuple[Path, str]:
    """A copy of a journal whose file was ``why`` (removed, replaced), kept for the next start to merge:
    (where; the line that says so). This process holds the only copy of the sales since: while the copy
    cannot be written (a full disk, a read-only directory) it tries again, never exits, and keeps the
    watchdog fed, until it is written or the process is killed."""
    said = -math.inf
    while True:
        try:
            kept = keep_orphan(journal)
            break
        except JournalError as exc:
            if time.monotonic() - said >= KEEP_RETRY_LOG_S:
                said = time.monotonic()
                log.critical(
                    "journal %s was %s while taptill ran, and its sales cannot be copied (%s): out of "
                    "service; trying again every %.0f s (free space, or make the state directory writable)",
                    journal.path,
                    why,
                    exc,
                    KEEP_RETRY_S,
                )
        notifier.watchdog()
        await asyncio.sleep(KEEP_RETRY_S)
    return kept, (
        f"journal {journal.path} was {why} while taptill ran; taptill kept its sales in {kept} and "
        "stopped: its next start merges them into the journal (systemd starts it again; by hand: taptill run)"
    )


@dataclass
class RunOptions:
    gif_path: Path | None = None
    display: Display | None = None  # injected by the demo and tests
    on_ready: Callable[[DeviceLoop], None] | None = None
    install_signal_handlers: bool = True
    drain_s: float = 10.0  # the longest a stop waits for the sale under way and its dispense (STOP_DRAIN_S)
    # Once ready, move what start-up built (modules, config, catalog, clients: it lives as long as the
    # process) out of the garbage collector's full scans, so one that falls in a tap scans only what taps
    # made since: in the bench's process a full collection took 17 ms, the tap's p99 (issue 10). Only for
    # a process that is the terminal (``serve``, the bench): a test process running many terminals one
    # after another would keep each one's cyclic garbage of that moment for good.
    freeze_start_up: bool = False


def serve(cfg: Config, opts: RunOptions | None = None) -> None:
    """``taptill run``: run_terminal on an event loop of its own until it stops (raises what it raises).

    The loop is uvloop's where it is installed (Linux; a dependency there): the same asyncio API in
    libuv, with less CPU per tap than the standard loop (issue 10: on a Pi CPU decides how fast a tap
    is answered). Without it the standard loop runs the terminal just the same.
    """
    opts = replace(opts or RunOptions(), freeze_start_up=True)
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        runner.run(run_terminal(cfg, opts=opts))


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop, or None (asyncio's own) when uvloop cannot be imported: said once, in the log."""
    try:
        import uvloop
    except ImportError as exc:
        log.info("running on asyncio's own event loop: uvloop cannot be imported (%s)", exc)
        return None
    return uvloop.new_event_loop


async def run_terminal(
    cfg: Config, stop: asyncio.Event | None = None, opts: RunOptions | None = None
) -> None:
    """Run until ``stop`` is set or SIGTERM/SIGINT arrives; raises StartupError with a fix on bad set-up,
    StateDirBusy when another taptill process uses the state directory."""
    opts = opts or RunOptions()
    stop = stop or asyncio.Event()
    # Before anything starts: a reader whose driver is missing would die after "taptill ready".
    check_drivers(cfg)
    notifier = Notifier()
    token = read_secret(cfg.wallet.token_file, WALLET_TOKEN.credential)
    r2o = cfg.ready2order
    r2o_token = read_secret(r2o.account_token_file, READY2ORDER_TOKEN.credential) if r2o is not None else None
    operators = load_operator_book(cfg)
    # The webhook's password, read before anything starts: a missing file is said now, in one line.
    ybm_password = None
    if cfg.yourbarmate is not None:
        from terminal.yourbarmate.runtime import read_password

        ybm_password = read_password(cfg.yourbarmate)
    # The metrics' bearer token likewise (none on a loopback address without token_file).
    metrics_token = (
        read_secret(cfg.metrics.token_file, METRICS_TOKEN.credential)
        if cfg.metrics is not None and cfg.metrics.token_file is not None
        else None
    )
    brink = open_brink(cfg)
    # One terminal per journal, taken before anything in the state directory or the socket is touched:
    # two would send the same outbox, and the second would take over (and then remove) the socket.
    try:
        lock = StateLock(cfg.terminal.state_dir, "run").acquire()
    except StateDirBusy:
        raise
    except StateLockError as exc:
        raise StartupError(str(exc)) from None
    try:
        await _run_locked(
            cfg, stop, opts, notifier, token, operators, r2o_token, brink, ybm_password, metrics_token
        )
    finally:
        lock.release()
        if brink is not None:
            await brink.aclose()


def open_brink(cfg: Config) -> BrinkClient | None:
    """The PAR Brink client a table terminal reads bills with (tokens from their private files or
    systemd credentials); None in the other modes. Raises SecretError with a fix for a missing token."""
    b = cfg.brink
    if cfg.terminal.mode != "table" or b is None:
        return None
    from terminal.brink.client import BrinkClient

    access = read_secret(b.access_token_file, BRINK_ACCESS_TOKEN.credential)
    location = read_secret(b.location_token_file, BRINK_LOCATION_TOKEN.credential)
    return BrinkClient(b.url, access, location, b.timeout_s, max_answer_bytes=b.max_answer_bytes)


def open_payments(cfg: Config, journal: Journal) -> BrinkPaymentRuntime | None:
    """Table mode with ``[table] apply_payment``: the POS payments' runtime (its own client, the tokens
    read again from their files, which ``open_brink`` checked at start); None otherwise."""
    b, t = cfg.brink, cfg.table
    if cfg.terminal.mode != "table" or b is None or not t.apply_payment or t.tender_id is None:
        return None
    if t.terminal_id is None:  # the config demands it with apply_payment; kept for the type
        return None
    access = read_secret(b.access_token_file, BRINK_ACCESS_TOKEN.credential)
    location = read_secret(b.location_token_file, BRINK_LOCATION_TOKEN.credential)
    from terminal.brink.runtime import BrinkPaymentRuntime

    probe_table = t.table_id if t.table_id is not None else (t.tables[0] if t.tables else 1)
    return BrinkPaymentRuntime(
        b,
        journal,
        access,
        location,
        tender_id=t.tender_id,
        terminal_id=t.terminal_id,
        probe_table=probe_table,
    )


def load_operator_book(cfg: Config) -> OperatorBook | None:
    """A top-up kiosk's operators under its operator key (file or systemd credential); None in the
    other modes. Raises SecretError or StartupError with a fix when the key is missing or malformed, or
    when an operator's entries were made under another key."""
    if cfg.terminal.mode != "topup":
        return None
    key = read_secret(cfg.topup.operator_key_file, OPERATOR_KEY.credential)
    try:
        book = OperatorBook(parse_operator_key(key.reveal()), cfg.topup.operators)
    except OperatorKeyError as exc:
        raise StartupError(f"[topup] operator_key_file: {exc}") from None
    elsewhere = book.made_elsewhere()
    if elsewhere:
        # Such an operator could never unlock: said now, not found out at the counter.
        raise StartupError(key_mismatch(elsewhere))
    return book


async def _run_locked(
    cfg: Config,
    stop: asyncio.Event,
    opts: RunOptions,
    notifier: Notifier,
    token: Secret,
    operators: OperatorBook | None,
    r2o_token: Secret | None = None,
    brink: BrinkClient | None = None,
    ybm_password: Secret | None = None,
    metrics_token: Secret | None = None,
) -> None:
    kept: Path | None = None  # the copy of a journal removed or replaced under the terminal
    try:
        journal = open_journal_salvaging(
            cfg.journal_path, locale=cfg.terminal.locale, currency=cfg.terminal.currency
        )
    except JournalTooNew as exc:  # its message says the fix: upgrade taptill
        raise StartupError(str(exc)) from None
    except JournalError as exc:
        raise StartupError(f"{exc}; check [terminal] state_dir and free disk space") from None
    client = WalletClient(
        cfg.wallet.base_url, token, timeout_s=cfg.wallet.timeout_s, default_permission=cfg.wallet.permission
    )
    health = ServerHealth()
    reader = None
    display = opts.display
    outputs: Outputs | None = None
    buttons = None
    webhook: YourbarmateRuntime | None = None
    watch: StockWatch | None = None
    metrics: MetricsRuntime | None = None
    try:
        outputs = make_outputs(cfg.gpio)
        try:
            catalog = await load_catalog(client, journal, STARTUP_INFO_TIMEOUT_S)
        except TokenRefused as exc:
            raise StartupError(
                f"the wallet server refuses the API token ({exc}); {token_fix(cfg.wallet.token_file)}"
            ) from None
        if isinstance(catalog, NoCatalog):
            # Nothing to price: out of service (the controller shows it while its catalog is empty)
            # until the refresh below loads a list; the log says what the server answered.
            log.error(
                "no product list: %s and none is cached; out of service until it lists the products "
                "(asking again every %.0f s)",
                catalog.describe(),
                CATALOG_RETRY_S,
            )
            health.mark_down(catalog.problem, catalog.status)
        else:
            problem = check_permission(catalog.info, cfg.terminal.mode)
            if problem:
                raise StartupError(problem)
            mode = cfg.terminal.mode
            if mode in ("select", "topup"):
                unknown, wrong = check_buttons(
                    catalog.info, mode, cfg.select.buttons if mode == "select" else cfg.topup.buttons
                )
                # A button that can never do anything: refused, not found out at the counter. The cached
                # list counts too: a button the server dropped since must be fixed before selling.
                if wrong or unknown:
                    raise StartupError("; ".join([*unknown, *wrong]))
            if catalog.fresh:
                ladder_keys = {
                    key for key, m in (cfg.partybroker.drinks if cfg.partybroker else {}).items() if m.ladder
                }
                wallet_products = tuple(p for p in cfg.terminal.products if str(p) not in ladder_keys)
                missing = check_products(catalog.info, wallet_products)
                if missing and mode == "tap":
                    # every tap sells these: like a button that can never work, refused at start
                    raise StartupError("; ".join(missing))
                for line in missing:
                    log.error("%s", line)
                health.mark_up()  # it answered with the terminal's token: the metrics' last contact
            else:
                # A cached product list means the server did not answer: start offline, not "online".
                health.mark_down(catalog.problem, catalog.status)
        products = () if isinstance(catalog, NoCatalog) else catalog.info.products
        settings = ControllerSettings(
            products=cfg.terminal.products,
            offline=cfg.offline,
            screen_hold_s=cfg.terminal.screen_hold_s,
            retap_guard_s=cfg.terminal.retap_guard_s,
            rearm_absent_s=cfg.terminal.rearm_absent_s,
            pairing_url=cfg.terminal.pairing_url,
            mode=cfg.terminal.mode,
            buttons=cfg.select.buttons if cfg.terminal.mode == "select" else cfg.topup.buttons,
            cancel_button=cfg.select.cancel_button
            if cfg.terminal.mode == "select"
            else cfg.topup.clear_button,
            cart_timeout_s=cfg.select.cart_timeout_s,
            operators=operators,
            unlock_s=cfg.topup.unlock_s,
            pin_required=cfg.topup.pin_required,
            pin_length=cfg.topup.pin_length,
            pin_attempts=cfg.topup.pin_attempts,
            pin_lockout_s=cfg.topup.pin_lockout_s,
            # Wrong PINs and lockouts from before this start: a restart must not reset them.
            pins=restore_pins(journal, boot_clock.now(), cfg.topup.pin_lockout_s)
            if cfg.terminal.mode == "topup"
            else {},
            max_credit_per_unlock_cents=cfg.topup.max_credit_per_unlock_cents,
            max_credit_per_shift_cents=cfg.topup.max_credit_per_shift_cents,
            max_offline_credit_cents=cfg.topup.max_offline_credit_cents,
            unsellable=frozenset(journal.unsellable()),
            tables=cfg.table.tables,
            table_id=cfg.table.table_id,
            denominations=cfg.table.denominations,
            apply_payment=cfg.table.apply_payment,
            bill_refresh_s=cfg.table.bill_refresh_s,
        )
        if cfg.terminal.mode == "table":
            for line in price_problems(cfg.table.denominations, products):
                log.error("%s; out of service", line)
        controller = Controller(settings, products)
        controller.server_online = health.online  # no online board drawn first on an offline start
        settled_hooks: list[Callable[[], None]] = []

        def settled() -> None:
            for hook in settled_hooks:
                hook()

        sender = SaleSender(
            journal,
            client,
            health,
            dedupes=cfg.wallet.dedupes,
            probe_interval_s=cfg.offline.probe_interval_s,
            on_settled=settled,
            server_error_limit=cfg.wallet.server_error_limit,
            product_name=lambda pid: next((p.name for p in controller.catalog if str(p.id) == pid), pid),
        )
        if display is None:
            display = _open_display(cfg, opts.gif_path)
        bills = None
        if brink is not None and cfg.brink is not None:
            from terminal.brink.table_bill import read_bill

            day_starts = cfg.brink.business_day_starts
            client_for_bills = brink

            async def bills(table_id: int, token: int) -> BillRead:
                return await read_bill(
                    client_for_bills, token, table_id, day_starts=day_starts, journal=journal
                )

        device = DeviceLoop(
            controller=controller,
            journal=journal,
            client=client,
            sender=sender,
            health=health,
            display=display,
            outputs=outputs,
            description=cfg.terminal.description,
            tag=cfg.terminal.tag,
            tap_budget_s=cfg.terminal.tap_budget_ms / 1000,
            drain_s=opts.drain_s,
            notifier=notifier,
            locale=cfg.terminal.locale,
            currency=cfg.terminal.currency,
            bills=bills,
            # a table tap reads the bill and waits for the debit's answer, each up to its deadline
            decision_extra_s=(brink.timeout_s + client.timeout_s) if brink is not None else 0.0,
        )
        health.on_change = device.server_changed  # the offline screen and the online LED follow it
        sender.on_unsellable = lambda products: device.post(UnsellableChanged(products))
        device.attach()
        settled_hooks.append(device.server_changed)
        partybroker = None
        records_for: list[ReportStatements] = []  # committed with a sale's done, for each destination
        if cfg.partybroker is not None:
            from terminal.partybroker.runtime import PartybrokerRuntime

            partybroker = PartybrokerRuntime(cfg, cfg.partybroker, journal, device.post, products)
            records_for.append(partybroker.reports_for)
            settled_hooks.append(partybroker.sale_settled)
        mirror = None
        if cfg.ready2order is not None and r2o_token is not None:
            from terminal.ready2order.runtime import Ready2OrderRuntime

            mirror = Ready2OrderRuntime(
                cfg.ready2order, journal, r2o_token, terminal=cfg.terminal.description, catalog=products
            )
            records_for.append(mirror.records_for)
            settled_hooks.append(mirror.sale_settled)
        payments = open_payments(cfg, journal)
        if payments is not None:
            records_for.append(payments.records_for)
            settled_hooks.append(payments.sale_settled)
        if records_for:
            sender.reports_for = lambda sale: [s for each in records_for for s in each(sale)]
        if cfg.yourbarmate is not None and ybm_password is not None:
            from terminal.yourbarmate.receiver import ReceiverError
            from terminal.yourbarmate.runtime import YourbarmateRuntime
            from terminal.yourbarmate.stock_watch import StockWatch

            watch = StockWatch(cfg.yourbarmate, journal, device.post)
            watch.refresh()  # posted before any tap: nothing sold out is ever looked up
            device.on_sale = watch.sold
            webhook = YourbarmateRuntime(
                cfg.yourbarmate, cfg.journal_path, password=ybm_password, on_change=watch.soon
            )
            try:
                await webhook.start()  # in this loop, before READY: systemd's "ready" means it listens
            except ReceiverError as exc:
                webhook = None
                raise StartupError(str(exc)) from None
        if cfg.metrics is not None:
            # Imported only now: prometheus_client stays out of a terminal's start-up without [metrics].
            from terminal.metrics.endpoint import EndpointError
            from terminal.metrics.runtime import MetricsRuntime

            outboxes = [name for name, c in (("partybroker", partybroker), ("ready2order", mirror)) if c]
            outboxes += ["brink"] if payments is not None else []
            metrics = MetricsRuntime(cfg.metrics, device, cfg.journal_path, tuple(outboxes), metrics_token)
            try:
                await metrics.start()  # before READY, like the webhook: "ready" means it is scraped
            except EndpointError as exc:
                metrics = None
                raise StartupError(str(exc)) from None
        buttons = make_buttons(cfg.gpio, device)
        reader = make_reader(cfg.reader, device)
        reader.start(device)
        if opts.install_signal_handlers:
            aloop = asyncio.get_running_loop()

            def stop_on(sig: signal.Signals) -> None:
                if not stop.is_set():
                    # SIGHUP too: a clean stop (systemd's Restart=always starts taptill again, which
                    # reads the configuration anew), never a kill that leaves the relay driven.
                    log.info("%s: stopping (a sale under way is finished first)", sig.name)
                    notifier.stopping()
                stop.set()

            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                aloop.add_signal_handler(sig, stop_on, sig)

        def ready() -> None:
            if opts.freeze_start_up:
                gc.freeze()
            notifier.ready("waiting for cards")
            log.info("taptill ready (%s reader, %s display)", cfg.reader.kind, cfg.display.kind)
            if opts.on_ready is not None:
                opts.on_ready(device)

        tasks = [
            asyncio.ensure_future(sender.run(stop)),
            asyncio.ensure_future(
                _refresh_catalog(client, journal, device, stop, partybroker, mirror, cfg=cfg)
            ),
            asyncio.ensure_future(_reread_refused_token(cfg, client, health, stop)),
        ]
        if partybroker is not None:
            tasks.append(asyncio.ensure_future(partybroker.run(stop)))
        if mirror is not None:
            tasks.append(asyncio.ensure_future(mirror.run(stop)))
        if payments is not None:
            tasks.append(asyncio.ensure_future(payments.run(stop)))
        if watch is not None:
            tasks.append(asyncio.ensure_future(watch.run(stop)))
        for task in tasks:
            task.add_done_callback(lambda t: _background_ended(t, stop))
        try:
            await device.run(stop, on_ready=ready)
        finally:
            notifier.stopping()
            # The sale under way has its decision and its pulses (or the drain ran out): open the relay
            # before anything else, so nothing on the way out can leave it closed.
            outputs.release()
            await device.settle(SHUTDOWN_GRACE_S)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # After the outboxes ended, before the journal closes: every sale is in the copy.
        if device.damaged is not None:
            raise StoppedForJournal(_damaged_line(device.damaged))
        # Also when a stop came before the loop's next look (`rm journal.sqlite3; systemctl restart`).
        moved = device.journal_moved or journal_moved(journal)
        if moved is not None:
            kept, line = await _keep_moved(journal, moved, notifier)
            raise StoppedForJournal(line)
    finally:
        if metrics is not None:
            await metrics.stop()
        if webhook is not None:
            await webhook.stop()  # requests under way are answered first; then its journal connection closes
        if watch is not None:
            watch.close()
        if outputs is not None:
            outputs.release()
            close = getattr(outputs, "close", None)  # gpiozero pins are freed, not just switched off
            if close is not None:
                close()
        if reader is not None:
            reader.stop()
        if buttons is not None:
            buttons.close()
        if display is not None:
            display.close()
        await client.aclose()
        journal.close()
        if kept is not None:
            # Closed now: its -wal, still named after the path, would be read with whatever file is there.
            set_aside_leftovers(cfg.journal_path, kept)
        log.info("taptill stopped")


def _open_display(cfg: Config, gif_path: Path | None) -> Display:
    """The configured display; StartupError (naming the bus, the address and what to check) when the
    panel cannot be reached."""
    try:
        return make_display(
            cfg.display,
            locale=cfg.terminal.locale,
            currency=cfg.terminal.currency,
            state_dir=cfg.terminal.state_dir,
            pairing_url=cfg.terminal.pairing_url,
            gif_path=gif_path,
        )
    except DisplayNotFound as exc:
        raise StartupError(str(exc)) from None


async def _reread_refused_token(
    cfg: Config, client: WalletClient, health: ServerHealth, stop: asyncio.Event
) -> None:
    """While the server refuses the API token, read the token file again now and then: a person who puts
    a new token there needs no restart (the outbox's probe then finds it accepted)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), cfg.offline.probe_interval_s)
        if stop.is_set() or health.token_refused is None:
            continue
        try:
            token = read_secret(cfg.wallet.token_file, WALLET_TOKEN.credential)
        except SecretError as exc:
            log.debug("cannot read the API token again: %s", exc)
            continue
        if client.use_token(token):
            log.warning("read a new API token from %s; trying it", cfg.wallet.token_file or "the credential")


def _background_ended(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """A background task must live as long as the terminal: if one ends early, stop the terminal so
    systemd restarts it whole, rather than running on without delivering sales."""
    if task.cancelled() or stop.is_set():
        return
    exc = task.exception()
    log.critical("background task ended unexpectedly (%r); stopping so the service restarts", exc)
    stop.set()


async def _refresh_catalog(
    client: WalletClient,
    journal: Journal,
    device: DeviceLoop,
    stop: asyncio.Event,
    partybroker: PartybrokerRuntime | None,
    mirror: Ready2OrderRuntime | None = None,
    *,
    cfg: Config | None = None,
) -> None:
    """Prices change on the server; refresh them now and then (and when there was no list at start)."""
    interval = CATALOG_RETRY_S if not device.controller.catalog else CATALOG_REFRESH_S
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if stop.is_set():
            return
        try:
            catalog = await load_catalog(client, journal, 5.0, at_start=False)
        except TokenRefused as exc:
            device.health.mark_token_refused(str(exc))
            continue
        except StartupError as exc:
            log.error("%s", exc)
            continue
        except JournalError as exc:  # a storage fault: one line (the device loop acts on damage)
            log.error("refreshing the product list: %s", exc)
            continue
        except Exception:  # a bad answer must not end price refreshes for good
            log.exception("refreshing the product list failed")
            continue
        if isinstance(catalog, NoCatalog) or not catalog.fresh:
            # An idle terminal learns here that the server is gone: the screen and LED say so, and
            # the outbox's probe brings it back.
            device.health.mark_down(catalog.problem, catalog.status)
            interval = CATALOG_RETRY_S
            continue
        device.health.mark_up()  # it answered with the terminal's token: up, and the token accepted
        if catalog.info.products != device.controller.catalog:
            if not device.controller.catalog:
                log.warning("product list loaded (%d products): selling", len(catalog.info.products))
            device.post(CatalogChanged(catalog.info.products))
            if cfg is not None and cfg.terminal.mode == "table":
                for line in price_problems(cfg.table.denominations, catalog.info.products):
                    log.error("%s; out of service", line)
            if partybroker is not None:
                partybroker.publish(catalog.info.products)  # ladder steps are priced by the wallet
            if mirror is not None:
                mirror.catalog_changed(catalog.info.products)  # invoice lines carry the wallet's prices
        interval = CATALOG_REFRESH_S
