"""The pure terminal controller: one tap-and-decide core (core.py) and one module per way to sell."""

from terminal.controller.core import TOKEN_REFUSED_TEXT, Controller, ControllerSettings, Phase, operator_hash

__all__ = ["TOKEN_REFUSED_TEXT", "Controller", "ControllerSettings", "Phase", "operator_hash"]
