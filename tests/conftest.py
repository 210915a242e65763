"""Shared fixtures: wallet emulators of both flavours on loopback, taptill installed as provisioning does."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.emulator.wallet import WalletEmulator
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


@pytest.fixture(scope="session")
def program_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree holding taptill installed by provisioning's own installer at /opt/taptill/venv (built once:
    a pip install takes seconds); ``seed_program`` puts it into a test's --root so provisioning finds
    it up to date instead of building it again."""
    from provisioning import install

    root = tmp_path_factory.mktemp("program")
    program = install.Program.in_prefix(install.DEFAULT_PREFIX)
    install.install(root, program, install.venv_python(None), ())
    return root


def seed_program(program_image: Path, root: Path) -> None:
    """Hard links: provisioning replaces a venv by renaming, never writes into one in place."""
    shutil.copytree(program_image / "opt", root / "opt", symlinks=True, copy_function=os.link)
