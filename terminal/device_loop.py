"""The device loop: feeds reader, button and network events to the controller and carries out its effects.

One asyncio loop owns the controller, the journal and the network; readers and buttons run in their
own threads and only post events into the loop. The loop never waits on the network longer than the
tap budget: a debit still under way then is left to finish in the background, its sale journaled. A sale
that needs the wallet's word (``Charge.offline_ok`` False: a table bill) is the exception: its debit's
answer is awaited up to the wallet client's own deadline, and it is never queued behind the card's
earlier sales (declined instead), so it is never shown paid on a guess.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from hw.display.base import Display
from hw.gpio.base import Outputs
from hw.readers.base import WaitingClient
from terminal.controller import Controller
from terminal.effects import (
    Beep,
    Charge,
    Dispense,
    Effect,
    FetchBill,
    LookupWallet,
    Notice,
    RecordDecline,
    RecordPin,
    Show,
    StartTimer,
)
from terminal.events import (
    BillRead,
    ButtonPressed,
    CardPresented,
    CardRemoved,
    ChargeDone,
    ChargeFailed,
    ChargeQueued,
    ChargeRejected,
    Closing,
    Event,
    ReaderChanged,
    ServerChanged,
    StockChanged,
    StorageChanged,
    TimerFired,
    TokenChanged,
    WalletBalance,
    WalletRefused,
    WalletUnreachable,
)
from terminal.journal import (
    Journal,
    JournalDamaged,
    JournalError,
    SaleRecord,
    journal_moved,
    remember_card_statement,
    table_bill_statement,
)
from terminal.model import DeclineReason, ProductId
from terminal.ops.tap_outcome import DECISION_MARGIN_S, decision_line, press_line
from terminal.screens import ASK_STAFF, BalanceScreen
from terminal.screens.table import BillProblem
from terminal.service import boot_clock
from terminal.service.crashpoint import crashpoint
from terminal.service.loop_lag import CACHE_KEY as LAG_CACHE_KEY
from terminal.service.loop_lag import LagStats, LoopLagMonitor, stats_json
from terminal.service.reader_health import CACHE_KEY as READER_CACHE_KEY
from terminal.service.reader_health import ReaderHealth
from terminal.service.sd_notify import Notifier
from terminal.wallet.client import WalletClient
from terminal.wallet.health import SERVER_CACHE_KEY, TOKEN_CACHE_KEY, ServerHealth, server_record
from terminal.wallet.outcomes import Found, NotFound, Refused, Unauthorized, Unavailable
from terminal.wallet.sale_sender import FINAL_ERRORS, Delivered, Later, Refusal, SaleSender

if TYPE_CHECKING:  # the metrics' counters are handed in when [metrics] is configured; no import here
    from terminal.metrics.taps import TapCounts

log = logging.getLogger(__name__)

DISPLAY_REFRESH_S = 1.0
STORAGE_PROBE_S = 1.0  # how often an unwritable journal is tried again (storage faults, issue 3)
DRAIN_LOOK_S = 0.02  # while stopping, how often the loop looks whether the sale under way is finished
# A debit that needs the wallet's word is awaited the client's deadline and this (s): the answer's journaling
SEND_SLACK_S = 0.5
LAG_STORE_EVERY_S = 5.0  # stall counts reach the journal (for `taptill status`) at most this often


class _Wake:
    """Put in the event queue to wake the loop (a stop): not an event for the controller."""


_WAKE = _Wake()

# Reads table ``table_id``'s bill for FetchBill ``token`` (table mode: terminal/brink/table_bill.py).
BillReader = Callable[[int, int], Awaitable[BillRead]]


class DeviceLoop:
    """Events in, effects out, within the tap budget; also the CardListener and ButtonListener."""

    def __init__(
        self,
        *,
        controller: Controller,
        journal: Journal,
        client: WalletClient,
        sender: SaleSender,
        health: ServerHealth,
        display: Display,
        outputs: Outputs,
        description: str,
        tag: str | None,
        tap_budget_s: float,
        drain_s: float = 10.0,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        locale: str = "de",
        currency: str = "EUR",
        bills: BillReader | None = None,
        decision_extra_s: float = 0.0,
    ) -> None:
        """``decision_extra_s``: how much longer than the tap budget a tap may take to decide (table mode:
        the bill's read and the debit's answer, each up to its client's deadline), for ``tap_decision``."""
        self.controller = controller
        self.bills = bills
        self.journal = journal
        self.client = client
        self.sender = sender
        self.health = health
        self.display = display
        self.outputs = outputs
        self.description = description
        self.tag = tag
        self.tap_budget_s = tap_budget_s
        self.decision_extra_s = decision_extra_s
        self.drain_s = drain_s  # the longest a stop waits for the sale under way and its dispense
        self._dispensing: set[asyncio.Task[None]] = set()
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.queue: asyncio.Queue[Event | _Wake] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadline = 0.0
        self._seen: tuple[str, tuple[str, Sequence[object]]] | None = None
        self._fresh_balance_for: str | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._reading: set[asyncio.Task[BillRead]] = set()  # table bills read in the background
        # Presses whose outcome someone waits for (the sim reader's press-wait), by the id of their event.
        self._awaited_presses: dict[int, tuple[concurrent.futures.Future[str], WaitingClient | None]] = {}
        self._storage_ok = True  # false after a failed journal write, until a write probe succeeds
        # What the guest was given while the journal could not record it (a sale approved, its relay
        # pulses done), by what it says: written as soon as the journal can be, or the sale would be
        # listed "charged, never approved" or "not dispensed: refund it" for a guest who got their drink.
        self._unwritten: dict[str, Callable[[], None]] = {}
        self._next_storage_probe = 0.0
        # SQLite found the journal corrupt, or its file was removed or replaced: out of service, and the
        # loop stops so that the next start salvages its sales (systemd's Restart=always starts it again).
        self.damaged: JournalDamaged | None = None
        self.journal_moved: str | None = None  # "removed", "replaced by another file"
        self._stop: asyncio.Event | None = None
        self._server_posted: tuple[bool, int] | None = None  # what the controller was last told
        self._token_posted = False  # whether the controller was last told the token is refused
        self._server_noted: tuple[bool, bool] | None = None  # (online, token refused) last journaled
        self.lag = LoopLagMonitor(on_stall=self._lag_stall)
        self._lag_stored_at = -LAG_STORE_EVERY_S
        self._lag_unstored: LagStats | None = None
        self._display_trouble: str | None = None  # what the service status last said about the display
        self.locale, self.currency = locale, currency  # for the decision lines of `taptill tap`
        # Taps whose decision someone waits for (the sim reader's tap-wait), by the id of their event.
        self._awaited: dict[int, _Awaited] = {}
        # The removal that follows an awaited tap whose client gave up (ids of queued events): dropped too.
        self._dropped: set[int] = set()
        self.reader_health = ReaderHealth(pid=os.getpid())  # for `taptill status` and `doctor`
        # Called with a sale's key and what it poured (its goods, else its products) once it is journaled
        # and not refused: the stock ledger's word when it changed (yourbarmate's StockWatch), else None.
        self.on_sale: Callable[[str, tuple[ProductId, ...]], StockChanged | None] | None = None
        self.counts: TapCounts | None = None  # [metrics]: taps, decisions and sales, counted in memory

    # --- listeners, called from reader and button threads ------------------------------------

    def post(self, event: Event) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def card_present(self, uid: str, *, already_present: bool = False) -> None:
        if already_present:
            log.info("a card was already on the reader when it (re)started; not a tap until taken away")
        self.post(CardPresented(uid, already_present))

    def card_removed(self) -> None:
        self.post(CardRemoved())

    def reader_status(self, online: bool, detail: str) -> None:
        self.post(ReaderChanged(online, detail))

    def button_pressed(self, name: str) -> None:
        self.post(ButtonPressed(name))

    def tap_decision(self, uid: str, client: WaitingClient | None = None) -> str:
        """Tap ``uid`` (presented and taken away) and wait for the decision line (terminal.ops.tap_outcome),
        at most the tap budget and DECISION_MARGIN_S (and never past the client's deadline); ``error: …``
        when none came in time. Called from the sim reader's thread (``tap-wait UID``).

        A tap is taken only while its client waits: one still queued when the wait ends, or whose
        client hung up or is too near its deadline when the loop comes to it, is dropped, never decided
        (the client was told it failed; a sale booked then would be one nobody knew of)."""
        event = CardPresented(uid)
        removed = CardRemoved()

        def post(answer: concurrent.futures.Future[str]) -> None:
            self._awaited[id(event)] = _Awaited(event, removed, answer, client)
            self.queue.put_nowait(event)
            self.queue.put_nowait(removed)

        return self._await_answer(post, client, "decision", "tap")

    def press_outcome(self, name: str, client: WaitingClient | None = None) -> str:
        """Press button ``name`` and wait for its outcome line (terminal.ops.tap_outcome.press_line: ``ok: …``
        or ``declined: why``), at most as long as a tap's decision; ``error: …`` when none came in time.
        Called from the sim reader's thread (``press-wait BUTTON``); dropped like a tap whose client
        gave up (a press may confirm a top-up)."""
        event = ButtonPressed(name)

        def post(answer: concurrent.futures.Future[str]) -> None:
            self._awaited_presses[id(event)] = (answer, client)
            self.queue.put_nowait(event)

        return self._await_answer(post, client, "outcome", "press")

    def _await_answer(
        self,
        post: Callable[[concurrent.futures.Future[str]], None],
        client: WaitingClient | None,
        what: str,
        kind: str,
    ) -> str:
        wait_s = self.tap_budget_s + self.decision_extra_s + DECISION_MARGIN_S
        loop = self._loop
        if loop is None or loop.is_closed():
            return "error: the terminal is not running"
        left = client.left_s() if client is not None else None
        timeout_s = wait_s if left is None else max(0.0, min(wait_s, left))
        answer: concurrent.futures.Future[str] = concurrent.futures.Future()
        loop.call_soon_threadsafe(post, answer)
        try:
            return answer.result(timeout=timeout_s)
        except TimeoutError:
            if answer.cancel():  # still queued: the loop drops it when it comes to it
                return f"error: no {what} within {timeout_s:g} s; the {kind} was not taken (see the log)"
        try:  # the loop took it just now: its answer comes within the budget
            return answer.result(timeout=wait_s)
        except TimeoutError:
            return f"error: no {what} within {timeout_s + wait_s:g} s; see the terminal's log"

    def button_problem(self, name: str) -> str | None:
        """Why a press of button ``name`` means nothing in this terminal's mode (None: it does)."""
        s = self.controller.settings
        if s.mode == "tap":
            return "this terminal is in tap mode: it has no buttons"
        known = self.controller.mode.button_names()
        if name in known:
            return None
        return f"no button {name!r} in {s.mode} mode; it has: {', '.join(known)}"

    def stall(self, seconds: float) -> None:
        """Block the loop thread (sim reader debug command): the watchdog must notice and restart us."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(_hold_loop, seconds)

    def server_changed(self, _online: bool | None = None) -> None:
        try:
            unconfirmed = self.journal.unconfirmed_count()
        except Exception:  # a status refresh must never take the loop down
            unconfirmed = 0
        try:
            self.outputs.set_online(self.health.online)
        except Exception:  # a status LED must never take the loop down
            log.exception("status LED failed")
        refused = self.health.token_refused is not None
        self._note_server(refused)
        token_changed = refused != self._token_posted
        if token_changed and refused:
            self._post_token(refused)
        state = (self.health.online, unconfirmed)
        # The controller ignores a repeat, and a tap calls this three times: each post would cost a
        # wake-up of the loop and a trip round it (issue 10, CPU per tap).
        if state != self._server_posted:
            self._server_posted = state
            self.post(ServerChanged(*state))
        if token_changed and not refused:
            # After the server's state: the screen goes from out of service straight to the price
            # board, not through an "offline" board the token's refusal left behind.
            self._post_token(refused)

    def _post_token(self, refused: bool) -> None:
        self._token_posted = refused
        self.post(TokenChanged(refused))
        self._note_token(self.health.token_refused)

    # --- the loop ------------------------------------------------------------------------------

    def attach(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Run until ``stop`` is set, then finish what a guest is waiting for: the tap under way reaches
        its decision and its products are dispensed in full (within ``drain_s``), and no new tap starts."""
        self.attach()
        self._stop = stop
        await self._apply(self.controller.start())
        self.server_changed()
        if on_ready is not None:
            on_ready()
        # Watchdog pings come from this loop itself, so a hung loop stops them and systemd restarts us.
        ping_every = min((self.notifier.watchdog_s or 2.0) / 2, DISPLAY_REFRESH_S)
        next_ping = 0.0
        refresh = getattr(self.display, "refresh", None)  # displays that page the price board
        stop_wait = asyncio.ensure_future(stop.wait())
        stop_wait.add_done_callback(lambda _f: self.queue.put_nowait(_WAKE))
        lag_stop = asyncio.Event()
        lag_task = asyncio.ensure_future(self.lag.run(lag_stop))
        drain_until: float | None = None
        try:
            while True:
                now = time.monotonic()
                if stop.is_set():
                    if drain_until is None:
                        drain_until = now + self.drain_s
                        if self.controller.busy or self._dispensing:
                            log.info("stopping: finishing the sale under way first")
                        await self.dispatch(Closing())
                    # What a served guest was given and the journal could not record yet is tried again
                    # within the drain too: lost with the process, the sale would be listed to refund.
                    self._write_unwritten()
                    if not (self.controller.busy or self._dispensing or self._unwritten):
                        break
                    if now >= drain_until:
                        log.error("stopping, a sale unfinished after %.0f s: see taptill queue", self.drain_s)
                        for what in self._unwritten:
                            log.critical(
                                "stopping before the journal could record that %s: taptill queue will list "
                                "the sale to refund, but its guest was served; settle it with --served",
                                what,
                            )
                        break
                if now >= next_ping:
                    self.notifier.watchdog()
                    next_ping = now + ping_every
                    if self.journal.damaged is not None:  # found by an outbox, a status write …
                        self._storage_failed(self.journal.damaged)
                    if self.journal_moved is None and (moved := journal_moved(self.journal)) is not None:
                        self._journal_moved(moved)
                    self._probe_storage(now)
                    self._store_lag(now)
                    if refresh is not None:
                        try:
                            refresh()
                        except Exception:  # a broken panel must not stop sales
                            log.exception("display refresh failed")
                    self._report_display()
                if not self.queue.empty():
                    # Events already waiting (a tap brings several) are handled without the machinery
                    # of a wait; dispatch awaits its effects, so the loop still yields to other tasks.
                    queued = self.queue.get_nowait()
                    if not isinstance(queued, _Wake):
                        await self.dispatch(queued)
                    self._store_lag(time.monotonic())
                    continue
                timeout = max(0.01, next_ping - now) if drain_until is None else DRAIN_LOOK_S
                try:
                    # A plain awaited get under a timeout: no task and no wait machinery per event
                    # (CPU per tap is what decides speed on a Pi). A stop wakes it with _WAKE.
                    async with asyncio.timeout(timeout):
                        event = await self.queue.get()
                except TimeoutError:
                    continue
                if isinstance(event, _Wake):
                    continue
                await self.dispatch(event)
                self._store_lag(time.monotonic())
        finally:
            stop_wait.cancel()
            for awaited in self._awaited.values():  # taps queued behind the stop are never taken
                _answer(awaited.answer, "busy: the terminal is stopping")
            self._awaited.clear()
            for pressed, _ in self._awaited_presses.values():
                _answer(pressed, "busy: the terminal is stopping")
            self._awaited_presses.clear()
            for task in self._dispensing:
                task.cancel()  # pulses cut short by the release stay "charged, not dispensed"
            for reading in self._reading:
                reading.cancel()  # a bill nobody will see
            lag_stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await lag_task
            self._store_lag(time.monotonic(), force=True)

    async def dispatch(self, event: Event) -> None:
        """Handle one event and every event its effects produce, in order."""
        if isinstance(event, ReaderChanged):
            self._note_reader(event)
        if self._dropped and id(event) in self._dropped:
            self._dropped.discard(id(event))  # the removal of a tap that was dropped: nothing to take
            return
        awaited = self._awaited.pop(id(event), None) if self._awaited else None
        if awaited is not None and not self._still_awaited(awaited.answer, awaited.client, "tap"):
            self._dropped.add(id(awaited.removed))
            return
        pressed = self._awaited_presses.pop(id(event), None) if self._awaited_presses else None
        if pressed is not None and not self._still_awaited(*pressed, "press"):
            return
        ignored = self._why_ignored(event) if awaited is not None else ""
        produced: list[Effect] = []
        pending: list[Event] = [event]
        while pending:
            effects = self.controller.handle(pending.pop(0))
            produced.extend(effects)
            follow = await self._apply(effects)
            pending.extend(follow)
        if self.counts is not None and isinstance(event, CardPresented) and not event.already_present:
            self.counts.tapped(produced)
        if awaited is not None:
            line = decision_line(produced, locale=self.locale, currency=self.currency, ignored=ignored)
            awaited.answer.set_result(line)
        if pressed is not None and isinstance(event, ButtonPressed):
            said = press_line(produced, event.name, locale=self.locale, currency=self.currency)
            pressed[0].set_result(said)

    def _still_awaited(
        self, answer: concurrent.futures.Future[str], client: WaitingClient | None, kind: str
    ) -> bool:
        """True when the tap or press someone waits for is to be taken now; else it is answered as dropped.

        Its waiter gave up (the future was cancelled), or the client hung up or cannot wait the tap
        budget any more: a tap taken now would be decided, maybe booked, and told to no one."""
        if not answer.set_running_or_notify_cancel():
            log.warning("sim reader: a %s was not taken: its client stopped waiting before its turn", kind)
            return False
        why = client.gone(self.tap_budget_s) if client is not None else None
        if why is None:
            return True
        log.warning("sim reader: a %s was not taken: %s when its turn came", kind, why)
        answer.set_result(f"error: {why} when the terminal came to it; the {kind} was not taken")
        return False

    def _why_ignored(self, event: Event) -> str:
        """Why the controller would take no tap of ``event``'s card now (the answer if it takes none)."""
        if self.controller.closing:
            return "the terminal is stopping"
        if isinstance(event, CardPresented) and event.uid == self.controller.card_on_reader:
            return "that card is held on the reader (taptill tap --remove takes it away)"
        return (
            "this card just paid: take it away for [terminal] rearm_absent_s and tap it again"
            " after retap_guard_s"
        )

    async def _apply(self, effects: list[Effect]) -> list[Event]:
        follow: list[Event] = []
        for effect in effects:
            try:
                result = await self.execute(effect)
            except JournalError as exc:  # a storage fault, not a bug: one line, and out of service
                log.error("effect %s failed: %s", type(effect).__name__, exc)
                self._storage_failed(exc)
                result = _fallback(effect)
            except Exception:  # bad input or a broken adapter must not stop the loop
                log.exception("effect %s failed", type(effect).__name__)
                result = _fallback(effect)
            if result is not None:
                follow.append(result)
        return follow

    async def settle(self, timeout: float) -> None:
        """Give debits still under way a moment to finish before shutdown (they are journaled anyway)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)

    # --- effects --------------------------------------------------------------------------------

    async def execute(self, effect: Effect) -> Event | None:
        match effect:
            case Show(screen):
                self.display.show(screen)
                if isinstance(screen, BalanceScreen):
                    self._remember_balance()
            case LookupWallet(uid):
                return await self._lookup(uid)
            case FetchBill(table_id, token, tap):
                if tap:
                    return await self._read_bill(table_id, token)
                # Staff's choice or a refresh: the loop goes on taking cards and presses meanwhile.
                reading = asyncio.ensure_future(self._read_bill(table_id, token))
                self._reading.add(reading)
                reading.add_done_callback(self._bill_read)
            case Charge():
                event = await self._charge(effect)
                self.server_changed()
                if self.counts is not None:
                    self.counts.charged(effect, event, self._price_of)
                poured = effect.goods or effect.products
                stock = None
                if isinstance(event, ChargeDone | ChargeQueued) and self.on_sale is not None:
                    stock = self.on_sale(event.key, poured)
                if stock is not None:
                    # Handed over before the tap's answer, not queued: a card already waiting in the
                    # queue must not buy the serving this sale took.
                    await self._apply(self.controller.handle(stock))
                return event
            case RecordDecline(uid, products, amount, reason, offline, operator):
                try:
                    self.journal.record_decline(
                        token_id=uid,
                        products=products,
                        amount_cents=amount,
                        description=self.description,
                        reason=reason,
                        offline=offline,
                        operator=operator,
                        also=self._take_seen(uid),
                    )
                except JournalError as exc:
                    log.error("cannot journal a declined tap: %s", exc)
                    self._storage_failed(exc)
            case RecordPin(operator, wrong, locked):
                at = boot_clock.now(self.clock()) if locked else None
                try:
                    self.journal.note_pin_failures(operator, wrong, at)
                except JournalError as exc:
                    # Out of service until a write works: PINs must not be guessed unjournaled.
                    log.error("cannot journal operator %s's wrong PINs: %s", operator, exc)
                    self._storage_failed(exc)
            case Dispense(products, key):
                ticket = self.outputs.dispense(products)
                if key is not None and ticket >= 0:
                    task = asyncio.ensure_future(self._note_dispensed(key, ticket))
                    self._dispensing.add(task)
                    task.add_done_callback(self._dispensing.discard)
            case Beep(kind):
                self.outputs.signal(kind)
            case Notice(message):
                log.warning("%s", message)
            case StartTimer(token, delay):
                loop = asyncio.get_running_loop()
                loop.call_later(delay, self.queue.put_nowait, TimerFired(token))
        return None

    async def _read_bill(self, table_id: int, token: int) -> BillRead:
        """Table ``table_id``'s bill as BillRead ``token``; never raises (a failure is UNREACHABLE)."""
        if self.bills is None:
            return BillRead(token, table_id, None, BillProblem.UNREACHABLE, "no [brink] configured")
        try:
            return await self.bills(table_id, token)
        except Exception as exc:  # the answer must come, whatever the POS sent
            log.exception("reading table %d's bill failed", table_id)
            return BillRead(token, table_id, None, BillProblem.UNREACHABLE, type(exc).__name__)

    def _bill_read(self, task: asyncio.Task[BillRead]) -> None:
        self._reading.discard(task)
        if not task.cancelled():
            self.post(task.result())

    async def _note_dispensed(self, key: str, ticket: int) -> None:
        """Journal that a sale's products were given once the relay's pulses up to ``ticket`` are done;
        a stop that releases the relay first leaves the sale "charged, not dispensed"."""
        loop = asyncio.get_running_loop()
        told: asyncio.Future[None] = loop.create_future()

        def tell() -> None:  # from the pulse thread, or from a release after this loop has closed
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: None if told.done() else told.set_result(None))

        self.outputs.when_dispensed(ticket, tell)
        await told
        if not self.outputs.dispensed(ticket):
            return  # released before its last pulse: stays "charged, not dispensed"
        try:
            self.journal.mark_dispensed(key)
        except JournalError as exc:
            log.error("cannot journal that sale %s was dispensed: %s", key, exc)
            self._write_later(f"sale {key} was dispensed", partial(self.journal.mark_dispensed, key))

    def _report_display(self) -> None:
        """A display whose frames keep failing shows in `systemctl status` (sales go on without it)."""
        trouble = getattr(self.display, "trouble", None)
        if trouble != self._display_trouble:
            self._display_trouble = trouble
            self.notifier.status(trouble or "waiting for cards")

    # --- loop lag: stalls counted for `taptill status` -------------------------------------------

    def _lag_stall(self, stats: LagStats) -> None:
        self._lag_unstored = stats
        self._store_lag(time.monotonic())

    def _store_lag(self, now: float, *, force: bool = False) -> None:
        stats = self._lag_unstored
        if stats is None or (not force and now - self._lag_stored_at < LAG_STORE_EVERY_S):
            return
        self._lag_stored_at = now
        self._lag_unstored = None
        try:
            self.journal.cache_put(LAG_CACHE_KEY, stats_json(stats))
        except Exception:  # a count for `status` must not stop sales (a full disk shows elsewhere)
            log.debug("cannot store the loop lag counts", exc_info=True)

    def _note_token(self, refused: str | None) -> None:
        """Keep whether the server refuses the API token where `taptill status` reads it."""
        record = {"pid": os.getpid(), "refused": refused, "since": self.clock()}
        try:
            self.journal.cache_put(TOKEN_CACHE_KEY, record)
        except Exception:  # a record for `status` must not stop sales
            log.debug("cannot store the token's state", exc_info=True)

    def _note_server(self, refused: bool) -> None:
        """Keep the wallet server's state where `taptill status` reads it, once per change."""
        state = (self.health.online, refused)
        if state == self._server_noted:
            return
        self._server_noted = state
        try:
            self.journal.cache_put(SERVER_CACHE_KEY, server_record(self.health, os.getpid(), self.clock()))
        except Exception:  # a record for `status` must not stop sales
            log.debug("cannot store the wallet server's state", exc_info=True)

    def _note_reader(self, event: ReaderChanged) -> None:
        """Keep the reader's state where `taptill status` and `doctor` read it."""
        self.reader_health.changed(event.online, event.detail, self.clock())
        try:
            self.journal.cache_put(READER_CACHE_KEY, self.reader_health.to_json())
        except Exception:  # a record for `status` must not stop sales (a full disk shows elsewhere)
            log.debug("cannot store the reader's state", exc_info=True)

    # --- storage faults (issue 3): stop selling while the journal is unwritable, resume after a probe ---

    def _storage_failed(self, exc: JournalError) -> None:
        """Out of service after ``exc``: until a write probe succeeds, or for good when SQLite found the
        journal damaged (then the loop stops: the next start salvages the journal into a new one)."""
        if isinstance(exc, JournalDamaged):
            self._journal_damaged(exc)
            return
        if self._storage_ok:
            log.error("journal unwritable: declining every sale until a write succeeds (free disk space?)")
            self.post(StorageChanged(False, ASK_STAFF))
        self._storage_ok = False
        self._next_storage_probe = time.monotonic() + STORAGE_PROBE_S

    def _write_later(self, what: str, write: Callable[[], None]) -> None:
        """``write`` (that ``what``, a fact about a guest served) now, or once the journal can be written."""
        self._unwritten[what] = write
        self._write_unwritten()
        if what in self._unwritten:
            log.critical(
                "%s, but the journal cannot say so yet: it will once it can be written (until then "
                "taptill queue may list the sale to refund: it was served)",
                what,
            )

    def _write_unwritten(self) -> None:
        for what, write in list(self._unwritten.items()):
            try:
                write()
            except JournalError:
                continue
            del self._unwritten[what]

    def _journal_damaged(self, damage: JournalDamaged) -> None:
        if self.damaged is not None:
            return
        self.damaged = damage
        log.critical(
            "journal %s is damaged (%s): out of service; stopping, so that the next start moves it aside "
            "and salvages its sales into a new journal",
            damage.path,
            damage.problem,
        )
        self._stop_for_journal()

    def _journal_moved(self, why: str) -> None:
        """The journal's file was removed or replaced under us: the sales go on into a file no one will
        read. Out of service and stop; the service keeps a copy of the journal for the next start."""
        self.journal_moved = why
        log.critical(
            "journal %s was %s while taptill ran: out of service; stopping, to keep a copy of its sales "
            "for the next start",
            self.journal.path,
            why,
        )
        self._stop_for_journal()

    def _stop_for_journal(self) -> None:
        if self._storage_ok:
            self.post(StorageChanged(False, ASK_STAFF))
        self._storage_ok = False
        self._next_storage_probe = math.inf  # no write makes it whole or puts it back
        if self._stop is not None:
            self._stop.set()

    def _probe_storage(self, now: float) -> None:
        """While the journal is unwritable, try one small write now and then; sell again once it works."""
        if self._storage_ok or now < self._next_storage_probe:
            return
        try:
            self.journal.cache_put("storage_probe", {"at": self.clock()})
        except JournalError:
            self._next_storage_probe = now + STORAGE_PROBE_S
            return
        self._write_unwritten()
        self._storage_ok = True
        log.warning("journal writable again: selling")
        self.post(StorageChanged(True))

    # --- end of storage faults ---------------------------------------------------------------------------

    @staticmethod
    def _bill_rows(c: Charge) -> list[tuple[str, Sequence[object]]]:
        """The table bill a sale pays, as its ``table_bills`` row under the sale's own key."""
        if c.bill is None or c.key is None:
            return []
        bill = c.bill
        return [
            table_bill_statement(
                key=c.key,
                table_id=bill.table_id,
                party_id=bill.party_id,
                business_date=bill.business_date,
                orders=[(o.order_id, o.number, o.due_cents) for o in bill.orders],
                amount_cents=bill.amount_cents,
            )
        ]

    def _price_of(self, product: ProductId) -> int | None:
        """The catalog's price of ``product`` in cents (None: not listed)."""
        return next((p.price_cents for p in self.controller.catalog if str(p.id) == str(product)), None)

    def _take_seen(self, uid: str) -> list[tuple[str, Sequence[object]]]:
        seen, self._seen = self._seen, None
        return [seen[1]] if seen is not None and seen[0] == uid else []

    def _remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    async def _lookup(self, uid: str) -> Event:
        self._deadline = time.monotonic() + self.tap_budget_s
        try:
            return await self._ask_wallet(uid)
        except JournalError as exc:  # the terminal's own storage, not the server: out of service
            log.error("cannot read the journal at a tap: %s", exc)
            self._storage_failed(exc)
            return WalletRefused(uid, DeclineReason.STORAGE)
        except Exception as exc:  # the tap must end in a decision, whatever the server sent
            log.exception("wallet lookup failed")
            self.health.mark_down(f"lookup failed ({type(exc).__name__})")
            return WalletUnreachable(uid, self.journal.offline_view(uid, boot_clock.now(self.clock())))

    async def _ask_wallet(self, uid: str) -> Event:
        # A sale of this card under way (or settled) while we read makes the balance read stale for
        # reconciliation: such a tap goes through the outbox, which reads the balance again.
        pending_before = [s.id for s in self.journal.pending_for_card(uid)]
        busy_before = self.sender.busy(uid)
        self._fresh_balance_for = None
        if self.health.online:
            # The client's own deadline ends the whole request within the budget (no extra task here).
            res = await self.client.wallet(uid, timeout=self._remaining())
            match res:
                case Found(wallet):
                    self.health.mark_up()
                    # Committed with the tap's sale or decline: one fsync per tap, not two.
                    seen = remember_card_statement(uid, wallet.balance_cents, boot_clock.now(self.clock()))
                    self._seen = (uid, seen)
                    pending_now = self.journal.pending_for_card(uid)
                    if not busy_before and [p.id for p in pending_now] == pending_before:
                        self._fresh_balance_for = uid
                    pending = sum(-p.amount_cents for p in pending_now)
                    return WalletBalance(uid, wallet.balance_cents, pending)
                case NotFound():
                    self.health.mark_up()
                    return WalletRefused(uid, DeclineReason.UNKNOWN_CARD)
                case Refused(status, reason):
                    log.warning("wallet lookup refused (%d: %s)", status, reason)
                    return WalletRefused(
                        uid, DeclineReason.PERMISSION if status == 403 else DeclineReason.SERVER_TROUBLE
                    )
                case Unauthorized(detail):
                    self.health.mark_token_refused(detail)
                    return WalletRefused(uid, DeclineReason.OUT_OF_SERVICE)
                case Unavailable(reason, status=status):
                    self.health.mark_down(reason, status)
        return WalletUnreachable(uid, self.journal.offline_view(uid, boot_clock.now(self.clock())))

    def _remember_balance(self) -> None:
        """A tap that only showed the balance (an empty cart) journals no sale to commit the card's balance
        with: it is written alone, so a guest who checked their balance is known if the server drops
        before their next tap (the field saw "card never seen online" right after a balance check), and a
        denial of the card ends in the same write (remember_card_statement), as with a sale's."""
        seen, self._seen = self._seen, None
        if seen is None:
            return
        try:
            self.journal.execute_all([seen[1]])
        except JournalError as exc:
            log.error("cannot journal the balance a card showed: %s", exc)
            self._storage_failed(exc)

    def _over_shift_cap(self, c: Charge) -> Event | None:
        """A top-up that would take its operator past [topup] max_credit_per_shift_cents (a shift is
        the operator's local calendar day, counted in the journal so a restart does not reset it) is
        declined and journaled as such; None: within the cap (or no cap)."""
        cap = self.controller.settings.max_credit_per_shift_cents
        if cap is None or c.operator is None or c.amount_cents <= 0:
            return None
        midnight = (
            datetime.fromtimestamp(self.clock())
            .astimezone()
            .replace(hour=0, minute=0, second=0, microsecond=0)
        )
        try:
            done = self.journal.credited_by(c.operator, midnight)
            if done + c.amount_cents <= cap:
                return None
            note = f"operator {c.operator}: shift cap {cap} cents reached ({done} credited today)"
            self.journal.record_decline(
                token_id=c.uid,
                products=c.products,
                amount_cents=c.amount_cents,
                description=self.description,
                reason=note,
                offline=not c.online,
                operator=c.operator,
                also=self._take_seen(c.uid),
            )
        except JournalError as exc:
            log.error("not crediting: %s", exc)
            self._storage_failed(exc)
            return ChargeFailed(ASK_STAFF)
        log.warning("%s", note)
        return ChargeRejected("", DeclineReason.CREDIT_LIMIT)

    async def _charge(self, c: Charge) -> Event:
        if c.operator is not None and (over := self._over_shift_cap(c)) is not None:
            return over
        if c.key is not None and self.journal.sale_by_key(c.key) is not None:
            # The mode read the journal for this key moments ago; never a second sale under one key.
            log.error("a sale under key %s is journaled already; not charging again", c.key)
            return ChargeRejected(c.key, DeclineReason.SERVER_TROUBLE)
        try:
            fresh, self._fresh_balance_for = self._fresh_balance_for == c.uid, None
            # This card's sales still on their way, read once: they queue this one behind them, and the
            # balance a guest is shown without the server's word leaves them out (see _estimate).
            others = self.journal.pending_for_card(c.uid)
            queued = not c.online or not fresh or bool(others) or self.sender.busy(c.uid)
            if queued and not c.offline_ok:
                # Queued, it would be approved before the wallet's word (the lookup saw nothing pending,
                # but a sale of this card is under way now): declined, nothing journaled.
                log.info("not charging %s now: an earlier sale of the card is on its way", c.key or "")
                return ChargeRejected("", DeclineReason.EARLIER_PENDING)
            sale = self.journal.record_sale(
                key=c.key,
                also=[*self._take_seen(c.uid), *self._bill_rows(c)],
                token_id=c.uid,
                products=c.products,
                amount_cents=c.amount_cents,
                # The operator goes with the sale (a server that keeps descriptions shows who credited; the
                # real pretix plugin keeps none, so the journal and the ready2order invoice carry it).
                description=self.description
                if c.operator is None
                else f"{self.description} / operator {c.operator}",
                tag=self.tag,
                offline=not c.online,
                reason=c.reason,
                operator=c.operator,
                balance_before=c.balance_before,
                attempting=not queued,
                attempted_at=self.clock(),
                dispense=c.amount_cents < 0,  # debits give products; top-ups give none
                approved=queued,  # a queued sale is approved now; a sent one once the tap is decided
                goods=c.goods,
            )
        except JournalError as exc:
            log.error("not selling: %s", exc)
            self._storage_failed(exc)
            return ChargeFailed(ASK_STAFF)
        except Exception:  # nothing journaled, nothing sent: decline rather than hang
            log.exception("cannot journal the sale")
            return ChargeFailed(ASK_STAFF)
        crashpoint("after_journal")
        estimate = _estimate(c, others)
        if not queued:
            self.sender.deciding.add(sale.id)
        try:
            event = await self._send(sale, c, queued, estimate)
        except Exception:  # journaled: the outbox delivers it, so the guest gets what was paid for
            log.exception("sending sale %d failed; the outbox will deliver it", sale.id)
            event = ChargeQueued(sale.idempotency_key, estimate)
        try:
            if isinstance(event, ChargeQueued) and not queued and c.offline_ok:
                # Approved without the server's word: from now on it is delivered whatever it takes. A
                # sale whose tap never got this far (a stop, a kill, a decline) is never sent again.
                # One that needs the wallet's word stays unapproved: the outbox finds out whether it
                # was booked (then it is done) and never sends it again.
                self.journal.mark_approved(sale.id)
        except JournalError as exc:
            log.error("cannot journal that sale %d was approved: %s", sale.id, exc)
            self._storage_failed(exc)
            event = ChargeRejected(sale.idempotency_key, DeclineReason.STORAGE)
        finally:
            self.sender.deciding.discard(sale.id)
            if not isinstance(event, ChargeDone):
                self.sender.wake()  # left pending: the outbox takes it from here
        return event

    async def _send(self, sale: SaleRecord, c: Charge, queued: bool, estimate: int | None) -> Event:
        if queued:
            # Offline, or this card still has sales in the outbox: they go to the server in order.
            self.sender.wake()
            return ChargeQueued(sale.idempotency_key, estimate)
        task: asyncio.Task[object] = asyncio.ensure_future(
            self.sender.attempt(sale, fresh_balance=c.balance_before)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _t: self.server_changed())
        # A table bill is not a beer tap: its guest waits for the wallet's answer, up to the client's
        # own deadline (and a little for the journal), rather than being shown "Paid" on a guess.
        wait_s = self._remaining() if c.offline_ok else self.client.timeout_s + SEND_SLACK_S
        done, _ = await asyncio.wait({task}, timeout=wait_s)
        if task not in done:
            if c.key is not None:
                task.add_done_callback(lambda t: self._late_answer(t, sale.id))
            return ChargeQueued(sale.idempotency_key, estimate)
        result = task.result()
        if isinstance(result, Delivered) and result.unrecorded:
            # Booked, and the journal failed just then: the guest has paid and is served (the sale stays
            # pending in the journal, settled once it works); no further sale until it does.
            self._write_later(
                f"sale {sale.idempotency_key} was approved", partial(self.journal.mark_approved, sale.id)
            )
            self._storage_failed(self.journal.damaged or JournalError(result.unrecorded))
        if isinstance(result, Delivered) and result.already and c.key is not None:
            self._booked_elsewhere(sale.id)
            return ChargeDone(sale.idempotency_key, result.balance_after, already=True)
        if isinstance(result, Delivered):
            return ChargeDone(sale.idempotency_key, result.balance_after)
        if isinstance(result, Refusal):
            return ChargeRejected(sale.idempotency_key, result.reason)
        assert isinstance(result, Later)
        if result.status in FINAL_ERRORS:
            # The server is done with the request and says it failed: serve only what the balance shows
            # booked. Approved on a guess, a product the server can never book would be given away.
            settled = await self.sender.settle_after_error(
                sale, self._remaining() if c.offline_ok else self.client.timeout_s
            )
            if isinstance(settled, Delivered):
                return ChargeDone(sale.idempotency_key, settled.balance_after)
            reason = settled.reason if isinstance(settled, Refusal) else DeclineReason.SERVER_TROUBLE
            return ChargeRejected(sale.idempotency_key, reason)
        if result.server_error and {str(p) for p in c.products} & self.sender.unsellable:
            # The server keeps refusing this product with an error and booked nothing the last times:
            # don't serve it on a guess. The sale stays journaled; the outbox settles it either way.
            return ChargeRejected(sale.idempotency_key, DeclineReason.BAD_PRODUCT)
        return ChargeQueued(sale.idempotency_key, estimate)

    def _late_answer(self, task: asyncio.Task[object], sale_id: int) -> None:
        """The first request of a sale under a mode's key, answered after the tap was decided."""
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if isinstance(result, Delivered) and result.already:
            self._booked_elsewhere(sale_id)

    def _booked_elsewhere(self, sale_id: int) -> None:
        """The wallet answered 202 to the first request of a sale under a mode's key: this journal never
        sent that key before, so someone else booked it (a table bill paid at another terminal) and no
        money moved now. Done, noted so that this terminal does not count it as its own sale."""
        note = "the wallet had booked this key already (202); no money moved at this tap"
        try:
            self.journal.mark_booked_elsewhere(sale_id, note)
        except JournalError as exc:
            log.error("cannot journal that sale %d was booked elsewhere: %s", sale_id, exc)
        log.warning("sale %d: %s", sale_id, note)


def _estimate(c: Charge, others: Sequence[SaleRecord]) -> int | None:
    """The balance (cents) a guest is shown when the server has not confirmed: the balance read at the
    tap less ``others`` (this card's other sales still on their way, oldest first, read before this one
    was journaled) that the read does not include yet, less this one; None when that cannot be told.

    A sale whose request went out may be booked already (its answer lost) and then is in the read: the
    read is compared with the balance the oldest of ``others`` was sold on, less each of them in turn
    (they reach the server in order). Exactly one match tells how many are booked; none or several (the
    wallet moved elsewhere meanwhile) leave no figure rather than a wrong one. Arithmetic only: the tap
    path reads the journal once, not again for a figure that only a queued sale shows."""
    if c.balance_before is None:
        return None
    sent = max((i + 1 for i, p in enumerate(others) if p.maybe_sent or p.attempts), default=0)
    if not sent:
        return c.balance_before - sum(-p.amount_cents for p in others) + c.amount_cents
    anchor = others[0].balance_before
    if anchor is None:
        return None
    booked = [
        k for k in range(sent + 1) if anchor + sum(p.amount_cents for p in others[:k]) == c.balance_before
    ]
    if len(booked) != 1:
        return None
    return c.balance_before + sum(p.amount_cents for p in others[booked[0] :]) + c.amount_cents


@dataclass(frozen=True)
class _Awaited:
    """A tap whose decision a sim client waits for: its events, the answer's future and the client."""

    event: CardPresented
    removed: CardRemoved
    answer: concurrent.futures.Future[str]
    client: WaitingClient | None


def _answer(future: concurrent.futures.Future[str], line: str) -> None:
    """Answer a waiter unless it gave up (cancelled) or has its answer already."""
    if not future.done() and future.set_running_or_notify_cancel():
        future.set_result(line)


def _hold_loop(seconds: float) -> None:
    """The stall: a Python frame of ours, so the lag warning names it on any event loop (uvloop runs a
    C callback such as ``time.sleep`` with no Python frame that could name it)."""
    time.sleep(seconds)


def _fallback(effect: Effect) -> Event | None:
    """The event that ends a tap whose effect blew up, so the controller never waits forever."""
    if isinstance(effect, LookupWallet):
        return WalletRefused(effect.uid, DeclineReason.SERVER_TROUBLE)
    if isinstance(effect, Charge):
        return ChargeFailed(ASK_STAFF)
    if isinstance(effect, FetchBill):
        return BillRead(
            effect.token, effect.table_id, None, BillProblem.UNREACHABLE, "reading the bill failed"
        )
    return None
