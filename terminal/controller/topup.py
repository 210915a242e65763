"""Top-up mode (a kiosk): locked until an operator card (and its PIN, where one is required) unlocks it;
the operator picks credit products with buttons and the guest's tap books them (negative prices credit
the wallet), within the operator's caps."""

from __future__ import annotations

from terminal.controller.mode import BalanceCheck, CardAnswer, Redraw, Refusal, Sale, SellMode, Till
from terminal.effects import Beep, Effect, RecordDecline, RecordPin, StartTimer
from terminal.model import DeclineReason
from terminal.screens import DeclinedScreen, Screen
from terminal.screens.topup import KioskLockedScreen, KioskScreen, PinScreen

# What a declined tap of an operator card journals as its card: the config keeps operator card UIDs
# only as keyed hashes (a leaked journal must not give them away); the operator's name says whose it was.
OPERATOR_CARD = "operator card"


class TopupMode(SellMode):
    """An operator card unlocks (and locks again); the kiosk locks by itself ``unlock_s`` after the
    operator's last card or press. Where the operator has a PIN, the card is followed by the PIN on
    the buttons; ``pin_attempts`` wrong PINs in a row lock that card out for ``pin_lockout_s``. Every
    wrong PIN and lockout is journaled (``RecordPin``) before it is shown, and the settings bring back
    what the journal holds at start, so a restart neither resets the count nor ends a lockout. A guest's
    tap with no amount chosen shows the balance. ``operator`` is the operator's name."""

    credits = True

    def __init__(self, till: Till) -> None:
        super().__init__(till)
        self._unlock_token = 0
        self._pin_for: str | None = None  # the operator whose card was tapped and whose PIN is awaited
        self._presses: list[str] = []
        pins = till.settings.pins
        self._wrong_pins = {n: r.wrong for n, r in pins.items() if r.locked_for_s is None and r.wrong > 0}
        self._locked_out: dict[int, str] = {}  # lockout timer token → operator name
        self._credited_cents = 0  # booked in this unlock
        self._pending_cents = 0  # the credit of the tap under way, counted once it is journaled

    def start(self) -> tuple[Effect, ...]:
        """Lockouts journaled before the restart run on for what is left of them."""
        timers = []
        for name, record in self.till.settings.pins.items():
            if record.locked_for_s is not None and record.locked_for_s > 0:
                token = self.till.token()
                self._locked_out[token] = name
                timers.append(StartTimer(token, record.locked_for_s))
        return tuple(timers)

    def idle_screen(self) -> Screen:
        if self._pin_for is not None:
            return PinScreen(len(self._presses), self.till.settings.pin_length)
        if self.operator is None:
            return KioskLockedScreen()
        return KioskScreen(self._credit_cents(), self._amount_buttons())

    def card(self, uid: str) -> CardAnswer:
        book = self.till.settings.operators
        name = book.operator_for(uid) if book is not None else None
        if name is not None:
            if self.operator is not None or self._pin_for is not None:
                self._lock()
                return Redraw((Beep("approved"),))
            if name in self._locked_out.values():
                return Refusal(
                    DeclinedScreen(DeclineReason.PIN_LOCKED_OUT),
                    "error",
                    f"operator {name}: locked out",
                    effects=(_operator_decline(name, DeclineReason.PIN_LOCKED_OUT),),
                )
            if self.till.settings.pin_required or (book is not None and book.has_pin(name)):
                self._pin_for, self._presses = name, []
                return Redraw((self._stay_unlocked(), Beep("approved")))
            return self._unlock(name)
        if self.operator is None:
            decline = RecordDecline(uid, (), 0, DeclineReason.KIOSK_LOCKED)
            return Refusal(DeclinedScreen(DeclineReason.KIOSK_LOCKED), "declined", effects=(decline,))
        amount = self._credit_cents()
        if not self.cart or amount <= 0:
            return BalanceCheck()
        cap = self.till.settings.max_credit_per_unlock_cents
        if cap is not None and self._credited_cents + amount > cap:
            note = (
                f"operator {self.operator}: {self._credited_cents + amount} cents would pass "
                f"[topup] max_credit_per_unlock_cents = {cap}; lock and unlock again"
            )
            decline = RecordDecline(uid, tuple(self.cart), amount, note, operator=self.operator)
            return Refusal(DeclinedScreen(DeclineReason.CREDIT_LIMIT), "declined", note, (decline,))
        self._pending_cents = amount
        return Sale(tuple(self.cart), operator=self.operator)

    def button(self, name: str) -> Refusal | Redraw | None:
        if self._pin_for is not None:
            return self._pin_press(name)
        if self.operator is None:
            return Refusal(DeclinedScreen(DeclineReason.KIOSK_LOCKED), "declined")
        if (refusal := self.unavailable(name)) is not None:
            return refusal
        if not self.pick(name):
            return None
        return Redraw((self._stay_unlocked(),))  # the operator is busy: stay unlocked

    def timer(self, token: int) -> bool:
        if token in self._locked_out:
            name = self._locked_out.pop(token)
            self._wrong_pins.pop(name, None)
            return False
        if token == self._unlock_token and (self.operator is not None or self._pin_for is not None):
            self._lock()
            return True
        return False

    def paid(self) -> None:
        self._credited_cents += self._pending_cents
        self._pending_cents = 0
        super().paid()

    def declined(self) -> None:
        """The amount stays chosen while the kiosk is unlocked, as at a staffed top-up till: the operator
        chose it, holds the guest's cash for it and watches the tap, so a card that is not registered,
        blocked or over a cap is tapped again (or another card is) without the amount keyed in again. It
        goes with the unlock: ``unlock_s`` after the operator's last card or press, the operator's card
        tapped again, or the clear button."""
        self._pending_cents = 0  # not credited: not counted against max_credit_per_unlock_cents

    def _pin_press(self, button: str) -> Refusal | Redraw:
        name = self._pin_for
        assert name is not None
        self._presses.append(button)
        s = self.till.settings
        if len(self._presses) < s.pin_length:
            return Redraw((self._stay_unlocked(),))
        presses, self._pin_for, self._presses = self._presses, None, []
        if s.operators is not None and s.operators.pin_matches(name, presses):
            had_wrong = self._wrong_pins.pop(name, 0) > 0
            return self._unlock(name, forget=(RecordPin(name, 0),) if had_wrong else ())
        wrong = self._wrong_pins.get(name, 0) + 1
        self._wrong_pins[name] = wrong
        if wrong < s.pin_attempts:
            note = f"operator {name}: wrong PIN ({wrong} of {s.pin_attempts})"
            return Refusal(
                DeclinedScreen(DeclineReason.WRONG_PIN),
                "declined",
                note,
                effects=(RecordPin(name, wrong), _operator_decline(name, DeclineReason.WRONG_PIN)),
            )
        token = self.till.token()
        self._locked_out[token] = name
        note = f"operator {name}: {wrong} wrong PINs, card locked out for {s.pin_lockout_s:.0f}s"
        return Refusal(
            DeclinedScreen(DeclineReason.PIN_LOCKED_OUT),
            "error",
            note,
            effects=(
                RecordPin(name, wrong, locked=True),
                _operator_decline(name, DeclineReason.PIN_LOCKED_OUT),
                StartTimer(token, s.pin_lockout_s),
            ),
        )

    def _unlock(self, name: str, forget: tuple[Effect, ...] = ()) -> Redraw:
        self.operator = name
        self._credited_cents = 0
        return Redraw((*forget, self._stay_unlocked(), Beep("approved")))

    def _stay_unlocked(self) -> StartTimer:
        self._unlock_token = self.till.token()
        return StartTimer(self._unlock_token, self.till.settings.unlock_s)

    def _lock(self) -> None:
        self.operator = None
        self._pin_for, self._presses = None, []
        self.cart.clear()

    def _credit_cents(self) -> int:
        """What the chosen credit products add to the wallet (positive)."""
        return -sum(p.price_cents for pid in self.cart if (p := self.till.product(pid)) is not None)

    def _amount_buttons(self) -> tuple[tuple[str, int], ...]:
        """(button, cents it adds) for the kiosk's amount buttons, in their configured order."""
        return tuple(
            (name, -p.price_cents)
            for name, pid in self.till.settings.buttons.items()
            if (p := self.till.product(pid)) is not None and self.sells(pid)
        )


def _operator_decline(name: str, reason: DeclineReason) -> RecordDecline:
    """The declined tap that a wrong PIN or a locked-out card is, counted with the guests' declines."""
    return RecordDecline(OPERATOR_CARD, (), 0, reason, operator=name)
