"""Shared fixtures: wallet emulators of both flavours on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from terminal.emulator.wallet_server import WalletEmulator
from tests.terminal_lab import TerminalProcess


@pytest.fixture(autouse=True)
def kill_leftover_terminals() -> Iterator[None]:
    """A test that fails (or times out) with its ``taptill run`` still up must not leave it running."""
    yield
    TerminalProcess.kill_leftovers()


@pytest.fixture(params=["doc", "real"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def wallet_server(flavour: str) -> Iterator[WalletEmulator]:
    """The demo wallets and products, in the document's flavour (answering at once) and in the real
    server's (answering as slowly as a real pretix: GET 20-60 ms, POST 150-400 ms)."""
    latency = "real" if flavour == "real" else "fast"
    with WalletEmulator.demo(flavour, latency=latency) as emulator:  # type: ignore[arg-type]
        yield emulator
