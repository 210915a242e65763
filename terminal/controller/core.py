"""The tap-and-decide core every way to sell shares: a card's tap → wallet lookup → decision (online,
or the offline policy) → charge → result screen and its timer; no I/O, no clocks, no threads.

One physical tap is one sale: a card charged is not charged again while its result shows, nor
before ``retap_guard_s`` has passed and it has been away from the reader ``rearm_absent_s`` without a
break (``retap_guard.py``), and a card the reader reports as already present when it (re)started is
not a tap until it has been taken away. What a tap pays, the idle screen and the buttons are the mode's
(``terminal/controller/tap.py``, ``select.py``, ``topup.py``), called through the hooks of ``mode.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from terminal.controller.mode import Ask, BalanceCheck, CardAnswer, Redraw, Refusal, Sale
from terminal.controller.modes import MODES
from terminal.controller.offline_policy import decide_offline
from terminal.controller.retap_guard import RetapGuard
from terminal.controller.settings import ControllerSettings
from terminal.effects import (
    Beep,
    Charge,
    Dispense,
    Effect,
    LookupWallet,
    Notice,
    RecordDecline,
    Show,
    StartTimer,
)
from terminal.events import (
    ButtonPressed,
    CardPresented,
    CardRemoved,
    CatalogChanged,
    ChargeDone,
    ChargeFailed,
    ChargeQueued,
    ChargeRejected,
    Closing,
    Event,
    PricesChanged,
    ReaderChanged,
    ServerChanged,
    StockChanged,
    StorageChanged,
    TableBill,
    TimerFired,
    TokenChanged,
    UnsellableChanged,
    WalletBalance,
    WalletRefused,
    WalletUnreachable,
)
from terminal.journal import offline_reason
from terminal.model import DeclineReason, Product, ProductId
from terminal.screens import (
    ASK_STAFF,
    BalanceScreen,
    CreditScreen,
    DeclinedScreen,
    NotRegisteredScreen,
    OutOfServiceScreen,
    PriceLine,
    ProcessingScreen,
    ReaderOfflineScreen,
    Screen,
)
from terminal.wallet.balance import pays

# What the out-of-service screen says while the wallet server refuses the terminal's API token: guest
# words; the reason (and the token file to fix) is in the log, `taptill status` and `taptill doctor`.
TOKEN_REFUSED_TEXT = ASK_STAFF
# What it says while there is no product list (none loaded yet, none cached): nothing can be priced.
NO_PRODUCTS_TEXT = ASK_STAFF


class Phase(Enum):
    IDLE = "idle"
    DECIDING = "deciding"  # waiting for the wallet lookup
    CHARGING = "charging"  # sale journaled, waiting for the server or the outbox
    RESULT = "result"  # showing approved/declined until the timer fires


@dataclass
class _Tap:
    uid: str
    products: tuple[ProductId, ...] = ()
    amount_cents: int = 0  # signed as the wallet books it: negative debit, positive credit
    kind: Literal["sale", "balance"] = "sale"
    offline: bool = False
    goods: tuple[ProductId, ...] = ()  # what the relays release: the configured products, not ladder steps
    operator: str | None = None  # who is responsible for a credit (the kiosk's operator)
    key: str | None = None  # the idempotency key the mode chose (a table bill's)
    bill: TableBill | None = None  # the table bill the sale pays, journaled with it
    offline_ok: bool = True  # False: declined while the wallet server cannot be asked

    @property
    def credit(self) -> bool:
        return self.amount_cents > 0


class Controller:
    """The state machine: idle → deciding → charging → result → idle; ``mode`` (from
    ``settings.mode``) holds what the way to sell adds, such as a cart or a kiosk lock."""

    def __init__(self, settings: ControllerSettings, catalog: tuple[Product, ...]) -> None:
        self.settings = settings
        self.catalog = catalog
        self.phase = Phase.IDLE
        self.card_on_reader: str | None = None
        self.reader_online = True
        self.server_online = True
        self.unconfirmed = 0
        self.prices: tuple[PriceLine, ...] | None = None
        self.prices_stale = False
        self.storage_error: str | None = None
        self.token_refused = False  # the wallet server refuses our API token: nothing can be booked
        self.charge_as: dict[str, ProductId] = {}  # Partybroker ladder: the step charged right now
        self.unsellable: frozenset[str] = settings.unsellable  # not sold offline: the server cannot book them
        # The stock ledger's word (yourbarmate), by wallet product id: whole servings left of what is sold
        # only while it lasts, none left (not sold at all), or running low (marked for staff)
        self.stock_left: Mapping[str, int] = {}
        self.sold_out: frozenset[str] = frozenset()
        self.low_stock: frozenset[str] = frozenset()
        self._stock_seq = 0  # the newest numbered word of the stock watch taken
        self.closing = False  # stopping: the tap under way finishes, no new one starts
        self._tap: _Tap | None = None
        self._tokens = 0
        self._result_token = 0
        # One physical tap, one sale: a card that flickers out of the field and back (or a reader that
        # reports a resting card again) must not pay twice. The cards charged lately, and the card whose
        # charge the result screen shows.
        self.guard = RetapGuard(settings.retap_guard_s, settings.rearm_absent_s, self.token)
        self._result_uid: str | None = None
        self._asking: str | None = None  # the card whose tap waits for the mode's Ask to be answered
        # A tap took a Sale from the mode and has not ended: its end tells the mode paid() or declined().
        self._selling = False
        self.mode = MODES[settings.mode](self)

    # --- screens -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A tap is under way: its decision is not made yet."""
        return self.phase in (Phase.DECIDING, Phase.CHARGING)

    def idle_screen(self) -> Screen:
        if self.closing:
            return OutOfServiceScreen("closing, back in a moment")
        if self.storage_error is not None:
            return OutOfServiceScreen(self.storage_error)
        if self.token_refused:
            return OutOfServiceScreen(TOKEN_REFUSED_TEXT)
        if not self.catalog:
            return OutOfServiceScreen(NO_PRODUCTS_TEXT)
        if not self.reader_online:
            return ReaderOfflineScreen("reconnecting…")
        return self.mode.idle_screen()

    @property
    def cart(self) -> list[ProductId]:
        """What the guest or operator chose for the next tap (select, topup); empty in tap mode."""
        return self.mode.cart

    @property
    def operator(self) -> str | None:
        """The operator (by name) who unlocked the kiosk, while it is unlocked."""
        return self.mode.operator

    def product(self, pid: ProductId) -> Product | None:
        """The catalog's product with this id, or None."""
        for p in self.catalog:
            if str(p.id) == str(pid):
                return p
        return None

    def _price_of(self, products: tuple[ProductId, ...]) -> int:
        """What ``products`` cost at the catalog's prices (cents; unknown products count nothing)."""
        return sum(p.price_cents for pid in products if (p := self.product(pid)) is not None)

    def token(self) -> int:
        """A fresh timer token, unique across the core and its mode."""
        # Tokens are only compared for equality: any step keeps them unique (mutating it is equivalent).
        self._tokens += 1  # pragma: no mutate
        return self._tokens

    def _result(self, screen: Screen, *extra: Effect) -> list[Effect]:
        if self._selling:
            # Every end of a tap passes here; one that was not paid (declined, refused, not journaled)
            # tells the mode, so a choice the next card must not pay goes before the idle screen is back.
            self._selling = False
            self.mode.declined()
        self.phase = Phase.RESULT
        self._tap = None
        # Whose charge the result shows: none until _charged says so. A UID is never "" (normalised hex at
        # the reader), so "" would match no card either (an equivalent mutant).
        self._result_uid = None  # pragma: no mutate
        self._result_token = self.token()
        return [Show(screen), *extra, StartTimer(self._result_token, self.settings.screen_hold_s)]

    def _back_to_idle_if_waiting(self) -> list[Effect]:
        if self.phase is Phase.IDLE:
            return [Show(self.idle_screen())]
        return []

    # --- events --------------------------------------------------------------------------------

    def start(self) -> list[Effect]:
        return [Show(self.idle_screen()), *self.mode.start()]

    def handle(self, event: Event) -> list[Effect]:
        match event:
            case CardPresented(uid, already_present):
                # Another card in the field: the one before it is gone, whether or not the reader said so.
                before = self.card_on_reader
                left = self.guard.removed(before) if before is not None and before != uid else []
                self.guard.presented(uid)
                if already_present:
                    self.card_on_reader = uid  # resting since before the reader (re)started: no tap
                    return left
                return [*left, *self._card(uid)]
            case CardRemoved():
                gone, self.card_on_reader = self.card_on_reader, None
                return self.guard.removed(gone) if gone is not None else []
            case ReaderChanged(online):
                self.reader_online = online
                return self._back_to_idle_if_waiting()
            case WalletBalance() | WalletRefused() | WalletUnreachable():
                return self._looked_up(event)
            case ChargeDone() | ChargeQueued() | ChargeRejected() | ChargeFailed():
                return self._charged(event)
            case TimerFired(token):
                return self._timer(token)
            case ServerChanged(online, unconfirmed):
                changed = (online, unconfirmed) != (self.server_online, self.unconfirmed)
                self.server_online, self.unconfirmed = online, unconfirmed
                return self._back_to_idle_if_waiting() if changed else []
            case TokenChanged(refused):
                self.token_refused = refused
                return self._back_to_idle_if_waiting()
            case StorageChanged(ok, message):
                self.storage_error = None if ok else (message or ASK_STAFF)
                return self._back_to_idle_if_waiting()
            case PricesChanged(prices, stale, charge):
                self.prices, self.prices_stale, self.charge_as = prices, stale, charge
                return self._back_to_idle_if_waiting()
            case CatalogChanged(products):
                self.catalog = products
                self.mode.catalog_changed()
                return self._back_to_idle_if_waiting()
            case UnsellableChanged(products):
                self.unsellable = products
                return []
            case StockChanged(left, low) as stock:
                # The stock watch numbers each word anew (a counter): one numbered as the newest taken is
                # that word again, and taking or dropping it leaves the same state (`<=` is equivalent).
                older = stock.seq < self._stock_seq  # pragma: no mutate
                if stock.seq and older:
                    return []  # read before a sale whose own word came first: stale
                self._stock_seq = stock.seq or self._stock_seq
                # Only the marks are on screen: a serving fewer of a product still on sale redraws nothing.
                changed = (stock.sold_out, low) != (self.sold_out, self.low_stock)
                self.stock_left, self.sold_out, self.low_stock = left, stock.sold_out, low
                return self._back_to_idle_if_waiting() if changed else []
            case Closing():
                self.closing = True
                return self._back_to_idle_if_waiting()
            case ButtonPressed(name):
                return self._button(name)
        return self._mode_event(event)

    def _mode_event(self, event: Event) -> list[Effect]:
        """An event only the mode knows (the answer to an effect it asked for)."""
        answer = self.mode.answer(event)
        if answer is None:
            return []
        if self.phase is Phase.DECIDING and self._asking is not None and self._tap is None:
            uid, self._asking = self._asking, None
            return self._card_answer(uid, answer)
        if self.phase is Phase.IDLE and isinstance(answer, Redraw | Refusal):
            return self._answer(answer)
        return []  # a tap or its result is on screen: the idle screen shows the news when it is back

    def _timer(self, token: int) -> list[Effect]:
        if self.guard.timer(token):
            return []
        if token == self._result_token and self.phase is Phase.RESULT:
            self.phase = Phase.IDLE
            return [Show(self.idle_screen()), *self.mode.resumed()]
        changed = self.mode.timer(token)
        if isinstance(changed, Redraw):
            return self._answer(changed) if self.phase is Phase.IDLE else []
        if changed:
            return self._back_to_idle_if_waiting()
        return []

    def _button(self, name: str) -> list[Effect]:
        if self.closing or self.busy:
            return []
        if not self.catalog:
            return self._result(OutOfServiceScreen(NO_PRODUCTS_TEXT), Beep("error"))
        return self._answer(self.mode.button(name))

    def _answer(self, answer: CardAnswer | None) -> list[Effect]:
        """Carry out what the mode answered to a card or a button that needed no lookup."""
        match answer:
            case Refusal(screen, beep, note, effects):
                return [*effects, *self._result(screen, Beep(beep), *([Notice(note)] if note else []))]
            case Redraw(effects):
                self.phase = Phase.IDLE
                return [Show(self.idle_screen()), *effects]
        return []

    def _card(self, uid: str) -> list[Effect]:
        if self.closing:
            return []  # stopping: a tap now could not be finished
        if uid == self.card_on_reader:
            return []  # a card held on the reader is one tap
        self.card_on_reader = uid
        if self.phase in (Phase.DECIDING, Phase.CHARGING):
            return []  # one tap at a time; the guest sees "Processing"
        if self.guard.blocks(uid) or (self.phase is Phase.RESULT and uid == self._result_uid):
            # The same card back too soon (or never away long enough): still the tap it paid for.
            self.guard.refused(uid)
            return []
        if self.storage_error is not None:
            return self._result(OutOfServiceScreen(self.storage_error), Beep("error"))
        if self.token_refused:
            # Not asked again for every guest: the outbox probes, and TokenChanged ends this.
            return self._result(OutOfServiceScreen(TOKEN_REFUSED_TEXT), Beep("error"))
        if not self.catalog:
            return self._result(OutOfServiceScreen(NO_PRODUCTS_TEXT), Beep("error"))
        return self._card_answer(uid, self.mode.card(uid))

    def _card_answer(self, uid: str, answer: CardAnswer) -> list[Effect]:
        """Carry out what the mode says the tap of ``uid`` does."""
        match answer:
            case BalanceCheck():
                return self._lookup(_Tap(uid, kind="balance"))  # pays nothing
            case Sale(products, goods, operator, key, bill, expect, offline_ok):
                self._selling = True
                short = self._short_of(goods or products)
                if short:
                    # Before any lookup: nothing is asked, charged or poured of what the bar has run out of.
                    note = f"sold out (taptill stock): {', '.join(short)}; nothing charged"
                    return self._result(
                        DeclinedScreen(DeclineReason.SOLD_OUT),
                        RecordDecline(uid, products, -self._price_of(products), DeclineReason.SOLD_OUT),
                        Beep("declined"),
                        Notice(note),
                    )
                resolved = [self.product(p) for p in products]
                known = [p for p in resolved if p is not None and self.mode.sells(p.id)]
                if len(known) != len(resolved) or not known:
                    return self._result(DeclinedScreen(DeclineReason.BAD_PRODUCT), Beep("error"))
                amount = -sum(p.price_cents for p in known)
                if expect is not None and -amount != expect:
                    # What the guest was shown is what is charged, or nothing is.
                    note = (
                        f"the wallet prices of {', '.join(str(p) for p in products)} add up to {-amount} "
                        f"cents, not the {expect} cents shown; nothing charged"
                    )
                    return self._result(
                        DeclinedScreen(DeclineReason.BAD_PRODUCT), Beep("error"), Notice(note)
                    )
                tap = _Tap(
                    uid,
                    products,
                    amount,
                    goods=goods,
                    operator=operator,
                    key=key,
                    bill=bill,
                    offline_ok=offline_ok,
                )
                return self._lookup(tap)
            case Ask(effects):
                self._asking = uid
                self.phase = Phase.DECIDING
                return [Show(ProcessingScreen()), *effects]
        return self._answer(answer)

    def _lookup(self, tap: _Tap) -> list[Effect]:
        self._tap = tap
        self.phase = Phase.DECIDING
        return [Show(ProcessingScreen()), LookupWallet(tap.uid)]

    def _decline(
        self,
        tap: _Tap,
        reason: DeclineReason,
        screen: Screen,
        *,
        offline: bool = False,
        note: str | None = None,
    ) -> list[Effect]:
        if tap.kind == "balance":
            return self._result(screen, Beep("declined"))  # a balance check is not a sale
        record = RecordDecline(tap.uid, tap.products, tap.amount_cents, note or reason, offline)
        return self._result(screen, record, Beep("declined"))

    def _short_of(self, poured: tuple[ProductId, ...]) -> list[str]:
        """What stops a sale pouring ``poured`` (the goods, or what a sale without goods books): each
        product of which it needs more servings than the stock ledger has left, as "id (N left, M wanted)"."""
        wanted = Counter(str(p) for p in poured)
        return [
            f"{p} ({self.stock_left[p]} left, {n} wanted)"
            for p, n in sorted(wanted.items())
            if p in self.stock_left and n > self.stock_left[p]
        ]

    def _charge(self, tap: _Tap, *, online: bool, balance: int | None, reason: str = "") -> list[Effect]:
        self.phase = Phase.CHARGING
        return [
            Charge(
                tap.uid,
                tap.products,
                tap.amount_cents,
                online=online,
                balance_before=balance,
                reason=reason,
                operator=tap.operator if tap.credit else None,
                key=tap.key,
                bill=tap.bill,
                offline_ok=tap.offline_ok,
                goods=tap.goods,
            )
        ]

    def _looked_up(self, event: WalletBalance | WalletRefused | WalletUnreachable) -> list[Effect]:
        tap = self._tap
        if self.phase is not Phase.DECIDING or tap is None or tap.uid != event.uid:
            return []
        match event:
            case WalletRefused(_, reason):
                if reason is DeclineReason.UNKNOWN_CARD:
                    screen: Screen = NotRegisteredScreen(tap.uid, self.settings.pairing_url)
                elif reason is DeclineReason.OUT_OF_SERVICE:
                    screen = OutOfServiceScreen(TOKEN_REFUSED_TEXT)
                else:
                    screen = DeclinedScreen(reason)
                return self._decline(tap, reason, screen)
            case WalletBalance(_, balance, pending):
                available = balance - pending
                if tap.kind == "balance":
                    return self._result(BalanceScreen(available))
                if not tap.offline_ok and pending:
                    # It would be queued behind the card's earlier sale, unconfirmed: a table bill is
                    # never shown paid on a guess. Nothing is journaled as a sale; the guest taps again.
                    reason = DeclineReason.EARLIER_PENDING
                    note = "an earlier sale of this card is still being confirmed by the wallet"
                    return self._decline(tap, reason, DeclinedScreen(reason), note=note)
                if not pays(available, -tap.amount_cents):
                    return self._decline(
                        tap,
                        DeclineReason.INSUFFICIENT_BALANCE,
                        DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, available),
                    )
                return self._charge(tap, online=True, balance=balance)
            case WalletUnreachable(_, view):
                if tap.kind == "balance":
                    return self._result(DeclinedScreen(DeclineReason.OFFLINE, view.last_balance))
                if tap.credit:
                    # The operator holds the cash: a top-up can be booked later, up to a cap, as the
                    # server cannot check the operator's card or the wallet meanwhile.
                    cap = self.settings.max_offline_credit_cents
                    if cap is not None and view.unconfirmed_credit_cents + tap.amount_cents > cap:
                        return self._decline(
                            tap,
                            DeclineReason.OFFLINE_LIMIT,
                            DeclinedScreen(DeclineReason.OFFLINE_LIMIT),
                            offline=True,
                            note=offline_reason("top-up limit ([topup] max_offline_credit_cents)"),
                        )
                    if self.settings.offline.mode == "accept":
                        tap.offline = True
                        return self._charge(tap, online=False, balance=None, reason=offline_reason("top-up"))
                    return self._decline(
                        tap,
                        DeclineReason.OFFLINE,
                        DeclinedScreen(DeclineReason.OFFLINE),
                        offline=True,
                        note=offline_reason("policy declines"),
                    )
                if not tap.offline_ok:
                    note = offline_reason("this sale is never made without the wallet server's word")
                    screen = DeclinedScreen(DeclineReason.OFFLINE)
                    return self._decline(tap, DeclineReason.OFFLINE, screen, offline=True, note=note)
                unsellable = sorted({str(p) for p in tap.products} & self.unsellable)
                if unsellable:
                    # Sold offline it would be served now and refused by the server later.
                    named = ", ".join(_named(self.product(pid), pid) for pid in unsellable)
                    note = offline_reason(f"the server cannot book product {named}")
                    screen = DeclinedScreen(DeclineReason.BAD_PRODUCT)
                    return self._decline(tap, DeclineReason.BAD_PRODUCT, screen, offline=True, note=note)
                decision = decide_offline(view, -tap.amount_cents, self.settings.offline)
                if not decision.accept:
                    reason = decision.decline or DeclineReason.OFFLINE
                    # What the guest can still spend: the last balance less this card's unconfirmed sales.
                    shown = (
                        view.last_balance - view.card_unconfirmed_cents
                        if reason is DeclineReason.INSUFFICIENT_BALANCE and view.last_balance is not None
                        else None
                    )
                    return self._decline(
                        tap, reason, DeclinedScreen(reason, shown), offline=True, note=decision.reason
                    )
                tap.offline = True
                return self._charge(tap, online=False, balance=None, reason=decision.reason)
        return []

    def _charged(self, event: ChargeDone | ChargeQueued | ChargeRejected | ChargeFailed) -> list[Effect]:
        tap = self._tap
        if self.phase is not Phase.CHARGING or tap is None:
            return []
        effects = self._charge_result(tap, event)
        if isinstance(event, ChargeDone | ChargeQueued) and self.guard.on:
            # Money moved (or will): guard the card while its result shows, for retap_guard_s, and
            # until it has been away rearm_absent_s.
            self._result_uid = tap.uid
            effects += self.guard.charged(tap.uid, on_reader=self.card_on_reader == tap.uid)
        return effects

    def _paid(self) -> None:
        """The tap's sale is journaled: the mode's choice is spent (and the tap is no decline)."""
        self._selling = False
        self.mode.paid()

    def _charge_result(
        self, tap: _Tap, event: ChargeDone | ChargeQueued | ChargeRejected | ChargeFailed
    ) -> list[Effect]:
        match event:
            case ChargeDone(_, balance_after, already):
                self._paid()
                if tap.credit:
                    return self._result(CreditScreen(tap.amount_cents, balance_after), Beep("approved"))
                if already and tap.key is not None:
                    # Booked under the mode's key before this tap: no money moved now, nothing to give.
                    screen = self.mode.already_booked_screen(-tap.amount_cents, balance_after)
                    return self._result(screen, Beep("declined"))
                return self._result(
                    self.mode.approved_screen(-tap.amount_cents, balance_after),
                    Dispense(tap.goods, event.key),
                    Beep("approved"),
                )
            case ChargeQueued(_, estimate):
                self._paid()
                if tap.offline:
                    self.unconfirmed += 1
                if tap.credit:
                    return self._result(CreditScreen(tap.amount_cents), Beep("approved"))  # no balance yet
                # Not confirmed yet: offline (the policy decided), or queued behind this card's earlier
                # sale or an answer still on its way while the server is up. Only the first is "offline".
                return self._result(
                    self.mode.approved_screen(
                        -tap.amount_cents, estimate, confirmed=False, offline=tap.offline
                    ),
                    Dispense(tap.goods, event.key),
                    Beep("approved"),
                )
            case ChargeRejected(_, reason):
                screen = (
                    NotRegisteredScreen(tap.uid, self.settings.pairing_url)
                    if reason is DeclineReason.UNKNOWN_CARD
                    else DeclinedScreen(reason)
                )
                return self._result(screen, Beep("declined"))
            case ChargeFailed(message):
                # Nothing was journaled, so nothing is sold; a lasting storage fault arrives as
                # StorageChanged and keeps the terminal out of service until a write succeeds.
                return self._result(OutOfServiceScreen(message), Beep("error"))
        return []


def _named(product: Product | None, pid: str) -> str:
    """``Mate (id 3)`` for staff reading a decline; the id alone when the catalog does not list it."""
    return f"{product.name} (id {pid})" if product is not None else pid
