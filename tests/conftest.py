"""Shared fixtures: wallet emulators of both flavours on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from terminal.emulator.wallet_server import WalletEmulator


@pytest.fixture(params=["doc", "real"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def wallet_server(flavour: str) -> Iterator[WalletEmulator]:
    """The demo wallets and products, in the document's flavour and in the real server's."""
    with WalletEmulator.demo(flavour) as emulator:  # type: ignore[arg-type]
        yield emulator
