"""taptill: firmware for a Raspberry Pi NFC cashless terminal (the hardware-free core)."""

__version__ = "0.1.0"
