"""The pure terminal controller: events in, effects out; one tap-and-decide core, one module per way to sell.

``core.py`` is the flow every tap shares (guards, lookup, offline policy, charge, result); ``mode.py`` the
hooks a way to sell implements; ``tap.py`` debits the configured products on every tap; ``select.py``
lets buttons fill a cart that the next tap pays (an empty cart shows the balance); ``topup.py`` is a
kiosk locked until an operator card is tapped, where the operator picks credit products with buttons
and the guest's tap books them (``operators.py``: operator cards and PINs as keyed hashes); ``modes.py``
names them for ``[terminal] mode``.
"""

from terminal.controller.core import TOKEN_REFUSED_TEXT, Controller, Phase
from terminal.controller.settings import ControllerSettings

__all__ = ["TOKEN_REFUSED_TEXT", "Controller", "ControllerSettings", "Phase"]
