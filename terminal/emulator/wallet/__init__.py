"""The wallet API emulator (pretix wallet PointOfSale, doc and real flavours) on loopback."""

from terminal.emulator.wallet.flavours import FLAVOURS, Flavour
from terminal.emulator.wallet.server import WalletEmulator

__all__ = ["FLAVOURS", "Flavour", "WalletEmulator"]
