"""What the controller is configured with: what a tap pays, the offline policy, each mode's knobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from terminal.config import Mode, OfflineConfig
from terminal.controller.operators import OperatorBook
from terminal.model import ProductId


@dataclass(frozen=True)
class PinRecord:
    """A kiosk operator's PIN entries as the journal knows them at start: wrong PINs in a row, and the
    seconds of lockout still to run (None: not locked out)."""

    wrong: int = 0
    locked_for_s: float | None = None


@dataclass(frozen=True)
class ControllerSettings:
    products: tuple[ProductId, ...]
    offline: OfflineConfig
    screen_hold_s: float = 3.0
    retap_guard_s: float = 3.0  # a card charged this recently, or whose result shows, is not (0: off)
    rearm_absent_s: float = 1.0  # ...nor one not away from the reader this long since (0: not asked)
    pairing_url: str | None = None
    mode: Mode = "tap"
    buttons: dict[str, ProductId] = field(default_factory=dict)  # select: product, topup: credit
    cancel_button: str | None = None  # select: empty the cart; topup: reset the amount
    cart_timeout_s: float = 30.0
    operators: OperatorBook | None = None  # topup: who may unlock (keyed hashes of cards and PINs)
    unlock_s: float = 300.0
    pin_required: bool = False  # topup: every operator card is followed by its PIN on the buttons
    pin_length: int = 4  # button presses
    pin_attempts: int = 3  # wrong PINs in a row before that operator card is locked out
    pin_lockout_s: float = 300.0
    pins: dict[str, PinRecord] = field(default_factory=dict)  # topup: by operator name, from the journal
    max_credit_per_unlock_cents: int | None = None  # topup: credits booked in one unlock; None: no cap
    max_credit_per_shift_cents: int | None = None  # per operator per local day (the device loop checks)
    max_offline_credit_cents: int | None = None  # unconfirmed credits booked offline; None: no cap
    unsellable: frozenset[str] = frozenset()  # product ids the server could not book, as the journal knows
    tables: tuple[int, ...] = ()  # table: the tables staff choose from (next/prev/ok)
    table_id: int | None = None  # table: the one table this terminal is mounted at (reads its bill itself)
    denominations: dict[int, ProductId] = field(default_factory=dict)  # table: cents -> wallet product
    apply_payment: bool = False  # table: the POS is told of payments (else staff close the table there)
    bill_refresh_s: float = 30.0  # table: a bill on screen is read again this often while idle
