"""The ready2order API emulator (account data, invoices, daily report, grant flow, rate limit) on loopback."""

from terminal.emulator.clock import EmulatorClock
from terminal.emulator.ready2order.catalog import EmulatedProduct
from terminal.emulator.ready2order.server import Ready2OrderEmulator

__all__ = ["EmulatedProduct", "EmulatorClock", "Ready2OrderEmulator"]
