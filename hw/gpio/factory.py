"""Chooses the gpiozero adapters or their software twins from the [gpio] config section."""

from __future__ import annotations

from typing import Protocol

from hw.gpio.base import ButtonListener, Outputs
from hw.gpio.buttons import GpioButtons, SoftwareButtons
from hw.gpio.outputs import GpioOutputs, LogOutputs
from terminal.config import GpioConfig


class Buttons(Protocol):
    """What the device loop holds on to: the configured button names, and close() on shutdown."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def close(self) -> None: ...


def make_outputs(cfg: GpioConfig) -> Outputs:
    """gpiozero relay/buzzer/LEDs when ``[gpio] enabled = true``, else the logging twin."""
    if not cfg.enabled:
        return LogOutputs()
    return GpioOutputs(cfg)


def make_buttons(cfg: GpioConfig, listener: ButtonListener) -> Buttons:
    """gpiozero buttons when ``[gpio] enabled = true``, else the twin pressed from code."""
    if not cfg.enabled:
        return SoftwareButtons(cfg, listener)
    return GpioButtons(cfg, listener)
