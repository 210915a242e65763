"""Effects the controller asks for; the device loop carries them out."""

from __future__ import annotations

from dataclasses import dataclass, field

from hw.gpio.base import Signal
from terminal.events import TableBill
from terminal.model import DeclineReason, ProductId
from terminal.screens import Screen


@dataclass(frozen=True)
class Show:
    screen: Screen


@dataclass(frozen=True)
class LookupWallet:
    """Ask the server for the card's balance within what is left of the tap budget."""

    uid: str


@dataclass(frozen=True)
class Charge:
    """Journal the sale durably, then (online) send it; answered by a Charge* event.

    ``amount_cents`` is signed as the wallet books it: negative debits, positive credits.
    """

    uid: str
    products: tuple[ProductId, ...]
    amount_cents: int
    online: bool
    balance_before: int | None
    reason: str = ""
    operator: str | None = None
    key: str | None = None  # the idempotency key the mode chose (a table bill's); None: a fresh one
    bill: TableBill | None = None  # the table bill it pays: journaled in the sale's own transaction
    # False: the sale needs the wallet's word (a table bill): never queued behind this card's earlier
    # sales, and its debit's answer is awaited up to the wallet client's deadline, not the tap budget
    offline_ok: bool = True
    # What the relays give out once it is paid (the drink, where a Partybroker ladder books a price step)
    goods: tuple[ProductId, ...] = ()


@dataclass(frozen=True)
class FetchBill:
    """Read table ``table_id``'s open bill from the POS; answered by BillRead ``token``. ``tap``: a tap
    waits on it (awaited in the loop, as a tap's wallet lookup is); else it is read in the background and
    the loop goes on taking cards and presses meanwhile."""

    table_id: int
    token: int
    tap: bool = False


@dataclass(frozen=True)
class RecordDecline:
    uid: str
    products: tuple[ProductId, ...]
    amount_cents: int
    reason: DeclineReason | str
    offline: bool = False
    operator: str | None = None  # the kiosk operator whose card, PIN or cap turned it down


@dataclass(frozen=True)
class RecordPin:
    """Journal that kiosk operator ``operator`` has entered ``wrong`` wrong PINs in a row (0: a right
    one), and with ``locked`` that their card is locked out from now. Comes before the answer is shown,
    so a restart (a power cut, a provoked crash) gives a PIN guesser no fresh attempts."""

    operator: str
    wrong: int
    locked: bool = False


@dataclass(frozen=True)
class Dispense:
    """Release the sale's goods, one relay pulse per product on that product's relay: only ever after
    ChargeDone/ChargeQueued. ``products`` are the configured product ids in the order sold (a
    Partybroker ladder step is dispensed as its drink); ``key`` is the sale's idempotency key, so the
    journal can note once its pulses are given in full."""

    products: tuple[ProductId, ...]
    key: str | None = field(default=None, compare=False)

    @property
    def count(self) -> int:
        return len(self.products)


@dataclass(frozen=True)
class Beep:
    kind: Signal


@dataclass(frozen=True)
class StartTimer:
    token: int
    delay_s: float


@dataclass(frozen=True)
class Notice:
    """One line for staff in the log (warning level): what a guest was refused and what to fix."""

    message: str


Effect = (
    Show
    | LookupWallet
    | Charge
    | FetchBill
    | RecordDecline
    | RecordPin
    | Dispense
    | Beep
    | StartTimer
    | Notice
)
