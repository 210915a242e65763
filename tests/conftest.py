"""Shared fixtures: wallet emulators of both flavours on loopback, taptill installed as provisioning does;
the pytest-xdist groups of tests that must not run at the same time."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from terminal.emulator.readers.pcsc_lab import process_socket_dir
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal
from tests.terminal_lab import TerminalProcess


# `make test` runs the suite in pytest-xdist workers (-n, --dist loadgroup). Tests of one group go to one
# worker, one after another; a test belongs to the first group whose rule matches it.
# - pcscd: each runs a lab pcscd whose vpcd listens on a port pair picked as free just before; two labs
#   starting at once may pick the same pair.
# - systemd: systemd-analyze and the unit's ExecStart in its sandbox (mount namespaces over /etc, /run,
#   /tmp; a service uid per process); and taptill installed by provisioning (program_image, a pip install
#   of ~10 s per worker that needs it) is built once.
# - loop-fs: each mounts an ext4 image on a loop device and breaks it through /sys/fs/ext4/<loopN>; one
#   test remounting (its loop device freed and taken again) beside another breaking its own lets one hit
#   the other's filesystem (both flavours of the read-only test failed that way side by side).
def _runs_pcscd(item: pytest.Item) -> bool:
    return item.get_closest_marker("pcsc") is not None


def _runs_systemd_tools_or_the_program_image(item: pytest.Item) -> bool:
    return item.get_closest_marker("systemd") is not None or "program_image" in getattr(
        item, "fixturenames", ()
    )


def _mounts_loop_filesystems(item: pytest.Item) -> bool:
    return item.path.name == "test_storage_faults.py"


XDIST_GROUPS: tuple[tuple[str, Callable[[pytest.Item], bool]], ...] = (
    ("pcscd", _runs_pcscd),
    ("systemd", _runs_systemd_tools_or_the_program_image),
    ("loop-fs", _mounts_loop_filesystems),
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its xdist group (see XDIST_GROUPS); a test in two groups is a usage error,
    since xdist would make a third group of the two and let it run beside both."""
    for item in items:
        groups = [name for name, belongs in XDIST_GROUPS if belongs(item)]
        if len(groups) > 1:
            raise pytest.UsageError(
                f"{item.nodeid} is in the xdist groups {groups}: merge them in tests/conftest.py XDIST_GROUPS"
            )
        if groups:
            item.add_marker(pytest.mark.xdist_group(groups[0]))


@pytest.fixture(scope="session", autouse=True)
def private_pcscd_socket() -> None:
    """Each test process (each xdist worker) gets its own pcscd socket path before its first PC/SC call.

    libpcsclite reads PCSCLITE_CSOCK_NAME once per process: a test asking PC/SC before any lab pcscd
    started (``doctor`` with a pcsc reader) would pin the process to the system pcscd's path and leave
    every lab pcscd after it out of reach. Set in the worker, not in the xdist controller, whose
    environment every worker would inherit.
    """
    process_socket_dir()


@pytest.fixture(autouse=True)
def kill_leftover_terminals() -> Iterator[None]:
    """A test that fails (or times out) with its ``taptill run`` still up must not leave it running."""
    yield
    TerminalProcess.kill_leftovers()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A fresh journal file in the test's own folder, closed after the test (a module may define its own)."""
    opened = Journal.open(tmp_path / "journal.sqlite3")
    try:
        yield opened
    finally:
        opened.close()


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
