"""The Partybroker API emulator on loopback."""

from terminal.emulator.partybroker.server import EmulatedDrink, PartybrokerEmulator

__all__ = ["EmulatedDrink", "PartybrokerEmulator"]
