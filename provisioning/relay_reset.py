"""ExecStopPost helper: after any stop, even SIGKILL, put every relay GPIO back to input with pull-down.

A killed process leaves the line driven as it was, so a relay that was open for a sale stays open.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from terminal.config import DEFAULT_CONFIG_PATH, ConfigError, GpioConfig, load_config


def reset_relays(gpio: GpioConfig, pin_factory: Any = None) -> tuple[int, ...]:
    """Claim every relay pin (``relay_pin`` and each product's in ``relays``) as an input with its
    releasing pull and let go; returns the pins reset, none without GPIO or relays."""
    if not gpio.enabled:
        return ()
    pins = tuple(dict.fromkeys(p for p in (gpio.relay_pin, *gpio.relays.values()) if p is not None))
    if not pins:
        return ()
    from gpiozero import DigitalInputDevice  # only this helper needs gpiozero

    for pin in pins:
        # An active-low relay board is released by a high line: pull up instead of down.
        device = DigitalInputDevice(pin, pull_up=not gpio.relay_active_high, pin_factory=pin_factory)
        device.close()  # closing keeps the pin an input with its pull; it stops driving the relay
    return pins


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m provisioning.relay_reset", description=__doc__)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    args = p.parse_args(argv)
    try:
        pins = reset_relays(load_config(args.config).gpio)
    except ConfigError as exc:
        print(f"relay_reset: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # gpiozero, lgpio or /proc: one line in the journal, not a traceback
        print(
            f"relay_reset: could not release the relays ({type(exc).__name__}: {exc}); "
            "check the [gpio] pins and that /dev/gpiochip* is readable by group gpio",
            file=sys.stderr,
        )
        return 1
    for pin in pins:
        print(f"relay_reset: GPIO{pin} is an input again", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
