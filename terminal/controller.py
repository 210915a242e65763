"""The pure tap controller: events in, effects out; no I/O, no clocks, no threads."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from terminal.config import OfflineConfig
from terminal.effects import Beep, Charge, Dispense, Effect, LookupWallet, RecordDecline, Show, StartTimer
from terminal.events import (
    ButtonPressed,
    CardPresented,
    CardRemoved,
    CatalogChanged,
    ChargeDone,
    ChargeFailed,
    ChargeQueued,
    ChargeRejected,
    Event,
    PricesChanged,
    ReaderChanged,
    ServerChanged,
    StorageChanged,
    TimerFired,
    WalletBalance,
    WalletRefused,
    WalletUnreachable,
)
from terminal.model import DeclineReason, Product, ProductId
from terminal.offline_policy import decide_offline
from terminal.screens import (
    ApprovedScreen,
    DeclinedScreen,
    IdleScreen,
    NotRegisteredScreen,
    OfflineScreen,
    OutOfServiceScreen,
    PriceLine,
    ProcessingScreen,
    ReaderOfflineScreen,
    Screen,
)


class Phase(Enum):
    IDLE = "idle"
    DECIDING = "deciding"  # waiting for the wallet lookup
    CHARGING = "charging"  # sale journaled, waiting for the server or the outbox
    RESULT = "result"  # showing approved/declined until the timer fires


@dataclass(frozen=True)
class ControllerSettings:
    products: tuple[ProductId, ...]
    offline: OfflineConfig
    screen_hold_s: float = 3.0
    pairing_url: str | None = None
    title: str = "Tap your card"


@dataclass
class _Tap:
    uid: str
    products: tuple[ProductId, ...]
    amount_cents: int  # what the guest pays, positive
    offline: bool = False
    balance_before: int | None = None


class Controller:
    """The tap-mode state machine: idle → deciding → charging → result → idle."""

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
        self.charge_as: dict[str, ProductId] = {}  # Partybroker ladder: the step charged right now
        self._tap: _Tap | None = None
        self._timer = 0

    # --- screens -------------------------------------------------------------------------------

    def idle_screen(self) -> Screen:
        if self.storage_error is not None:
            return OutOfServiceScreen(self.storage_error)
        if not self.reader_online:
            return ReaderOfflineScreen("reconnecting…")
        prices = self.prices if self.prices is not None else self._catalog_prices()
        if not self.server_online:
            accepting = self.settings.offline.mode == "accept"
            return OfflineScreen(unconfirmed=self.unconfirmed, accepting=accepting, prices=prices)
        return IdleScreen(prices=prices, title=self.settings.title, stale=self.prices_stale)

    def _catalog_prices(self) -> tuple[PriceLine, ...]:
        lines = []
        for pid in dict.fromkeys(self.settings.products):
            p = self._product(pid)
            if p is not None:
                lines.append(PriceLine(p.name, p.price_cents))
        return tuple(lines)

    def _product(self, pid: ProductId) -> Product | None:
        for p in self.catalog:
            if str(p.id) == str(pid):
                return p
        return None

    def _result(self, screen: Screen, *extra: Effect) -> list[Effect]:
        self.phase = Phase.RESULT
        self._tap = None
        self._timer += 1
        return [Show(screen), *extra, StartTimer(self._timer, self.settings.screen_hold_s)]

    def _back_to_idle_if_waiting(self) -> list[Effect]:
        if self.phase is Phase.IDLE:
            return [Show(self.idle_screen())]
        return []

    # --- events --------------------------------------------------------------------------------

    def start(self) -> list[Effect]:
        return [Show(self.idle_screen())]

    def handle(self, event: Event) -> list[Effect]:
        match event:
            case CardPresented(uid):
                return self._card(uid)
            case CardRemoved():
                self.card_on_reader = None
                return []
            case ReaderChanged(online):
                self.reader_online = online
                return self._back_to_idle_if_waiting()
            case WalletBalance() | WalletRefused() | WalletUnreachable():
                return self._looked_up(event)
            case ChargeDone() | ChargeQueued() | ChargeRejected() | ChargeFailed():
                return self._charged(event)
            case TimerFired(token):
                if self.phase is Phase.RESULT and token == self._timer:
                    self.phase = Phase.IDLE
                    return [Show(self.idle_screen())]
                return []
            case ServerChanged(online, unconfirmed):
                changed = (online, unconfirmed) != (self.server_online, self.unconfirmed)
                self.server_online, self.unconfirmed = online, unconfirmed
                return self._back_to_idle_if_waiting() if changed else []
            case StorageChanged(ok, message):
                self.storage_error = None if ok else (message or "cannot write the journal")
                return self._back_to_idle_if_waiting()
            case PricesChanged(prices, stale, charge):
                self.prices, self.prices_stale, self.charge_as = prices, stale, charge
                return self._back_to_idle_if_waiting()
            case CatalogChanged(products):
                self.catalog = products
                return self._back_to_idle_if_waiting()
            case ButtonPressed():
                return []
        return []

    def _card(self, uid: str) -> list[Effect]:
        if uid == self.card_on_reader:
            return []  # a card held on the reader is one tap
        self.card_on_reader = uid
        if self.phase in (Phase.DECIDING, Phase.CHARGING):
            return []  # one tap at a time; the guest sees "Processing"
        if self.storage_error is not None:
            return self._result(OutOfServiceScreen(self.storage_error), Beep("error"))
        products = tuple(self.charge_as.get(str(p), p) for p in self.settings.products)
        resolved = [self._product(p) for p in products]
        known = [p for p in resolved if p is not None]
        if len(known) != len(resolved) or not known:
            return self._result(DeclinedScreen(DeclineReason.BAD_PRODUCT), Beep("error"))
        amount = sum(p.price_cents for p in known)
        self._tap = _Tap(uid=uid, products=tuple(products), amount_cents=amount)
        self.phase = Phase.DECIDING
        return [Show(ProcessingScreen()), LookupWallet(uid)]

    def _decline(
        self,
        tap: _Tap,
        reason: DeclineReason,
        screen: Screen,
        *,
        offline: bool = False,
        note: str | None = None,
    ) -> list[Effect]:
        record = RecordDecline(tap.uid, tap.products, -tap.amount_cents, note or reason, offline)
        return self._result(screen, record, Beep("declined"))

    def _looked_up(self, event: WalletBalance | WalletRefused | WalletUnreachable) -> list[Effect]:
        tap = self._tap
        if self.phase is not Phase.DECIDING or tap is None or tap.uid != event.uid:
            return []
        match event:
            case WalletRefused(_, reason):
                if reason is DeclineReason.UNKNOWN_CARD:
                    screen: Screen = NotRegisteredScreen(tap.uid, self.settings.pairing_url)
                else:
                    screen = DeclinedScreen(reason)
                return self._decline(tap, reason, screen)
            case WalletBalance(_, balance, pending):
                available = balance - pending
                if available < tap.amount_cents:
                    return self._decline(
                        tap,
                        DeclineReason.INSUFFICIENT_BALANCE,
                        DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, available),
                    )
                tap.balance_before = balance
                self.phase = Phase.CHARGING
                return [Charge(tap.uid, tap.products, -tap.amount_cents, online=True, balance_before=balance)]
            case WalletUnreachable(_, view):
                decision = decide_offline(view, tap.amount_cents, self.settings.offline)
                if not decision.accept:
                    reason = decision.decline or DeclineReason.OFFLINE
                    shown = view.last_balance if reason is DeclineReason.INSUFFICIENT_BALANCE else None
                    return self._decline(
                        tap, reason, DeclinedScreen(reason, shown), offline=True, note=decision.reason
                    )
                tap.offline = True
                self.phase = Phase.CHARGING
                return [
                    Charge(
                        tap.uid,
                        tap.products,
                        -tap.amount_cents,
                        online=False,
                        balance_before=None,
                        reason=decision.reason,
                    )
                ]
        return []

    def _charged(self, event: ChargeDone | ChargeQueued | ChargeRejected | ChargeFailed) -> list[Effect]:
        tap = self._tap
        if self.phase is not Phase.CHARGING or tap is None:
            return []
        count = len(tap.products)
        match event:
            case ChargeDone(_, balance_after):
                return self._result(
                    ApprovedScreen(tap.amount_cents, balance_after), Dispense(count), Beep("approved")
                )
            case ChargeQueued(_, estimate):
                if tap.offline:
                    self.unconfirmed += 1
                return self._result(
                    ApprovedScreen(tap.amount_cents, estimate, confirmed=False),
                    Dispense(count),
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
                self.storage_error = message
                return self._result(OutOfServiceScreen(message), Beep("error"))
        return []
