"""What the controller is configured with: what a tap pays, the offline policy, each mode's knobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from terminal.config import Mode, OfflineConfig
from terminal.model import ProductId


@dataclass(frozen=True)
class ControllerSettings:
    products: tuple[ProductId, ...]
    offline: OfflineConfig
    screen_hold_s: float = 3.0
    retap_guard_s: float = 3.0  # a card charged this recently, or whose result shows, is not (0: off)
    pairing_url: str | None = None
    mode: Mode = "tap"
    buttons: dict[str, ProductId] = field(default_factory=dict)  # select: product, topup: credit
    cancel_button: str | None = None  # select: empty the cart; topup: reset the amount
    cart_timeout_s: float = 30.0
    operators: frozenset[str] = frozenset()  # SHA-256 of operator card UIDs
    unlock_s: float = 300.0
    unsellable: frozenset[str] = frozenset()  # product ids the server could not book, as the journal knows
