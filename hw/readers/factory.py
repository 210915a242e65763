"""Chooses the card reader adapter ([reader] kind: sim, pcsc, nfcpy) for a terminal's config."""

from __future__ import annotations

from hw.gpio.base import ButtonListener
from hw.readers.base import Reader
from terminal.config import ReaderConfig


def make_reader(cfg: ReaderConfig, buttons: ButtonListener | None = None) -> Reader:
    """The configured reader; hardware libraries are imported only for the kind in use."""
    if cfg.kind == "pcsc":
        from hw.readers.pcsc import PcscReader

        return PcscReader(cfg.name)
    if cfg.kind == "nfcpy":
        from hw.readers.nfcpy_reader import NfcpyReader

        return NfcpyReader(cfg.device, cfg.targets, cfg.poll_interval_s)
    from hw.readers.sim import SimReader

    return SimReader(cfg.socket, buttons)
