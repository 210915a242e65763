"""The layout shows the architecture: the package root keeps only the core, and every folder says its job."""

from __future__ import annotations

import ast
from pathlib import Path

import terminal
from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import MAX, TerminalProcess, wait_for, write_config

ROOT = Path(terminal.__file__).resolve().parent

# The terminal's own core, and the domain types every part shares (model, money, uid).
CORE = {
    "__init__.py",
    "__main__.py",
    "cli.py",
    "config.py",
    "config_section.py",
    "controller.py",  # until the controller is a package of its own
    "device_loop.py",
    "effects.py",
    "events.py",
    "journal.py",
    "model.py",
    "money.py",
    "screens.py",  # until the screens are a package of their own
    "uid.py",
}


def test_the_package_root_keeps_only_the_core() -> None:
    allowed = set(CORE)
    if not (ROOT / "controller").is_dir():
        allowed.add("offline_policy.py")  # the controller's decision rule sits next to the controller module
    extra = sorted(p.name for p in ROOT.glob("*.py") if p.name not in allowed)
    assert extra == [], f"{extra} belong in a folder (wallet/, service/, ops/, net/ …), not the root"


def test_every_folder_is_a_package_whose_docstring_says_its_job() -> None:
    folders = [d for d in ROOT.rglob("*") if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))]
    assert len(folders) >= 5
    for folder in folders:
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder.relative_to(ROOT.parent)} has modules but no __init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc.split("\n")[0].strip(), f"{init.relative_to(ROOT.parent)}: no docstring saying its job"


# The controller is pure: events in, effects out. What it may take from the journal are values and rules,
# never a statement to run or a clock reading (a table bill's journal row is the device loop's to write).
NO_IO_MODULES = {
    "sqlite3",
    "aiohttp",
    "httpx",
    "httpcore",
    "asyncio",
    "socket",
    "threading",
    "time",
    "subprocess",
    "os",
}
JOURNAL_VALUES = {"OfflineView", "offline_reason"}


def test_the_controller_imports_no_io_and_no_journal_writes() -> None:
    found: list[str] = []
    for path in sorted((ROOT / "controller").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [f"{path.name}: import {a.name}" for a in node.names if a.name in NO_IO_MODULES]
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                if node.module.split(".")[0] in NO_IO_MODULES:
                    found.append(f"{path.name}: from {node.module}")
                elif node.module == "terminal.journal":
                    found += [
                        f"{path.name}: from terminal.journal import {a.name}"
                        for a in node.names
                        if a.name not in JOURNAL_VALUES
                    ]
    assert found == [], f"the controller must stay pure (no I/O, no clock, no SQL): {found}"


# What `taptill run` must not load unless its config asks for it (issue 10: RSS and start-up on a Pi).
# Each external system's runtime is imported where its section is read; reporting and metrics libraries
# belong to their own commands or endpoints, never to a plain terminal's start.
NOT_AT_A_PLAIN_START = {
    "aiohttp.web",  # the yourbarmate webhook's server: [yourbarmate] (aiohttp's client is the clients')
    "httpx",  # tests and `make bench` only: the terminal's clients talk aiohttp
    "defusedxml",  # PAR Brink's XML: table mode
    "PIL",  # drawing: an oled, image or GIF display
    "qrcode",
    "matplotlib",
    "prometheus_client",
    "sqlite_utils",
    "terminal.brink.client",
    "terminal.partybroker.runtime",
    "terminal.ready2order.runtime",
    "terminal.yourbarmate.receiver",
}


def test_a_plain_terminal_loads_no_library_its_config_does_not_ask_for(tmp_path: Path) -> None:
    """A real ``taptill run`` (tap mode, sim reader, no display, no other system) that sells once; every
    module it imported, read from CPython's own import log (PYTHONPROFILEIMPORTTIME) in its output."""
    with WalletEmulator.demo("doc") as emulator:
        term = TerminalProcess(write_config(tmp_path, emulator), env={"PYTHONPROFILEIMPORTTIME": "1"})
        try:
            term.tap(MAX)  # what the first sale imports lazily counts too
            wait_for(lambda: len(emulator.transactions()) == 1, what="the sale's debit")
        finally:
            assert term.stop() == 0
    imported = {
        line.rsplit("|", 1)[1].strip() for line in term.log().splitlines() if line.startswith("import time:")
    }
    assert {"terminal.device_loop", "aiohttp", "sqlite3"} <= imported, "the import log was not read"
    loaded = sorted(
        name for name in NOT_AT_A_PLAIN_START if any(m == name or m.startswith(f"{name}.") for m in imported)
    )
    assert loaded == [], f"taptill run loaded {loaded} although its config uses none of them"
