"""The PAR Brink Ordering service emulator (GetParty, ApplyPayment over SOAP on loopback) for tests, demo."""

from terminal.emulator.brink.parties import Deposit, Entry, Location, Order, Party, Payment
from terminal.emulator.brink.server import DEMO_ACCESS_TOKEN, DEMO_LOCATION_TOKEN, BrinkEmulator

__all__ = [
    "DEMO_ACCESS_TOKEN",
    "DEMO_LOCATION_TOKEN",
    "BrinkEmulator",
    "Deposit",
    "Entry",
    "Location",
    "Order",
    "Party",
    "Payment",
]
