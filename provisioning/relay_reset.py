"""ExecStopPost helper: after any stop, even SIGKILL, put the relay GPIO back to input with pull-down.

A killed process leaves the line driven as it was, so a relay that was open for a sale stays open.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from terminal.config import DEFAULT_CONFIG_PATH, ConfigError, GpioConfig, load_config


def reset_relay(gpio: GpioConfig, pin_factory: Any = None) -> int | None:
    """Claim the relay pin as an input with pull-down and let go; returns the pin, None without a relay."""
    if not gpio.enabled or gpio.relay_pin is None:
        return None
    from gpiozero import DigitalInputDevice  # only this helper needs gpiozero

    # An active-low relay board is released by a high line: pull up instead of down.
    device = DigitalInputDevice(gpio.relay_pin, pull_up=not gpio.relay_active_high, pin_factory=pin_factory)
    device.close()  # closing keeps the pin an input with its pull; it stops driving the relay
    return gpio.relay_pin


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m provisioning.relay_reset", description=__doc__)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    args = p.parse_args(argv)
    try:
        pin = reset_relay(load_config(args.config).gpio)
    except ConfigError as exc:
        print(f"relay_reset: {exc}", file=sys.stderr)
        return 2
    if pin is not None:
        print(f"relay_reset: GPIO{pin} is an input again", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
