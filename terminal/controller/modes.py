"""The ways to sell by their ``[terminal] mode`` name: a new mode is one more module, one more line here."""

from __future__ import annotations

from collections.abc import Callable

from terminal.controller.mode import SellMode, Till
from terminal.controller.select import SelectMode
from terminal.controller.table import TableMode
from terminal.controller.tap import TapMode
from terminal.controller.topup import TopupMode

MODES: dict[str, Callable[[Till], SellMode]] = {
    "tap": TapMode,
    "select": SelectMode,
    "topup": TopupMode,
    "table": TableMode,
}
