"""``taptill journal``, ``report``, ``queue``, ``status``, ``doctor`` (and ``settle``, which writes) on
missing, damaged, older and live journals: they never create, move aside or migrate a journal, say what is
wrong in one line, and leave no -wal/-shm behind, run by root or by the service's own user."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from terminal.emulator.wallet import WalletEmulator
from terminal.journal import MIGRATIONS
from tests.journal_damage import (
    fill_journal,
    index_root,
    overwrite_pages,
    quick_check,
    sales_by_key,
    sales_leaves,
)
from tests.terminal_lab import ERIKA, MAX, TerminalProcess, journal_lines, taptill, wait_for, write_config

READERS = (
    ("journal",),
    ("journal", "--json"),
    ("journal", "--csv", "--since", "2025-01-01"),
    ("report",),
    ("report", "--format", "json"),
    ("queue",),
    ("queue", "--rejected"),
    ("status",),
    ("status", "--json"),
)
SERVICE_UID = 65534  # nobody: stands in for the service's own user


def _files(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(state.iterdir())}


@pytest.fixture
def emulator() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc") as server:
        yield server


def test_reading_commands_on_a_missing_journal_create_nothing(
    tmp_path: Path, emulator: WalletEmulator
) -> None:
    config = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    line = f"taptill: no journal at {state / 'journal.sqlite3'} yet: `taptill run` creates it"
    for args in [*READERS, ("settle", "t" + "x" * 24, "--booked")]:
        proc = taptill(*args, "--config", str(config), check=False)
        assert (proc.returncode, proc.stderr.splitlines(), proc.stdout) == (1, [line], ""), args
        assert not state.exists(), args
    doctor = taptill("doctor", "--config", str(config), check=False)
    assert "OK   journal     none yet at" in doctor.stdout, doctor.stdout
    assert not state.exists()


@pytest.mark.parametrize("damage", ["header", "pages", "index"])
def test_reading_commands_on_a_damaged_journal_leave_it_as_it_is(
    tmp_path: Path, emulator: WalletEmulator, damage: str
) -> None:
    config = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    path = state / "journal.sqlite3"
    fill_journal(path, 120, MAX)
    key = next(iter(sales_by_key(path)))
    if damage == "header":
        path.write_bytes(b"\xa5" * 100 + path.read_bytes()[100:])
        said = "file is not a database"
    elif damage == "pages":
        overwrite_pages(path, [sales_leaves(path)[1].page])
        said = "database disk image is malformed"
    else:  # SQLite's check says this in two lines, "*** in database main ***" first
        page = index_root(path, "sqlite_autoindex_sales_1")
        overwrite_pages(path, [page])
        said = f"Page {page}: btreeInitPage() returns error code 11"
        assert quick_check(path) == f"*** in database main ***\n{said}"
    assert quick_check(path) != "ok"
    files = _files(state)
    line = f"taptill: journal {path} is damaged ({said}); stop the terminal and run `taptill recover`"
    for args in [*READERS, ("settle", key, "--booked")]:
        proc = taptill(*args, "--config", str(config), check=False)
        assert (proc.returncode, proc.stderr.splitlines()) == (1, [line]), (args, proc.stderr)
        assert _files(state) == files, f"taptill {' '.join(args)} changed the state directory"
    doctor = taptill("doctor", "--config", str(config), check=False)
    assert doctor.returncode == 1
    assert f"FAIL journal     journal {path} is damaged ({said}); stop the terminal" in doctor.stdout
    assert "WARN queue       unknown: the journal cannot be read" in doctor.stdout
    assert "WARN products    unknown: the journal cannot be read" in doctor.stdout, doctor.stdout
    assert all(line.startswith(("OK ", "WARN ", "FAIL ")) for line in doctor.stdout.splitlines()), (
        "one line per check"
    )
    assert _files(state) == files


def _version_2_journal(path: Path) -> str:
    """A journal as taptill wrote it before migration 3 (no attempted_at), with one pending sale."""
    path.parent.mkdir(mode=0o700)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        for script in MIGRATIONS[:2]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 2")
        key = "t" + "k" * 24
        db.execute(
            "INSERT INTO sales (idempotency_key, token_id, products, amount_cents, description, state,"
            " created_at, updated_at) VALUES (?, ?, '[\"espresso\"]', -250, 'Kaffee', 'pending', ?, ?)",
            (key, MAX, "2025-01-01T10:00:00.000+00:00", "2025-01-01T10:00:00.000+00:00"),
        )
    finally:
        db.close()
    return key


def test_an_older_journal_is_read_without_migrating_it(tmp_path: Path, emulator: WalletEmulator) -> None:
    config = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    key = _version_2_journal(state / "journal.sqlite3")
    files = _files(state)
    (sale,) = journal_lines(config)
    assert (sale["idempotency_key"], sale["state"]) == (key, "pending")
    assert key in taptill("queue", "--config", str(config)).stdout
    assert "pending:         1 (2,50 €)" in taptill("status", "--config", str(config)).stdout
    assert "OK   journal" in taptill("doctor", "--config", str(config), check=False).stdout
    settle = taptill("settle", key, "--booked", "--config", str(config), check=False)
    assert settle.returncode == 1
    assert settle.stderr.splitlines() == [
        f"taptill: journal {state / 'journal.sqlite3'} has schema 2, older than this taptill "
        f"({len(MIGRATIONS)}): start `taptill run` once, it migrates the journal"
    ]
    assert _files(state) == files, "read as it is: not migrated, nothing created"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's own tmp directory is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="taptill-owner-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_live_journal_is_read_by_root_and_by_its_owner_and_nothing_stays_behind(
    shared_dir: Path, emulator: WalletEmulator
) -> None:
    as_owner = ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups"]
    config = write_config(shared_dir, emulator)
    config.chmod(0o644)
    state = shared_dir / "state"
    state.mkdir(mode=0o700)
    for owned in (state, shared_dir / "wallet.token"):
        os.chown(owned, SERVICE_UID, SERVICE_UID)
    term = TerminalProcess(config, prefix=as_owner)  # the terminal runs as the journal's owner
    try:
        term.tap(MAX)
        wait_for(lambda: len(emulator.transactions()) == 1, what="the first sale")
        live = {"journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm", "taptill.lock", "tap.sock"}
        for who in ([], as_owner, [], as_owner):
            wait_for(
                lambda who=who: [s["state"] for s in _journal(config, who)] == ["done"],
                what=f"the live sale read {'as the owner' if who else 'as root'}",
            )
            assert {p.name for p in state.iterdir()} == live
            assert {p.stat().st_uid for p in state.iterdir()} == {SERVICE_UID}, "no root-owned file appears"
        term.tap(ERIKA)  # the running terminal still writes after being read
        wait_for(lambda: len(emulator.transactions()) == 2, what="a sale after the reads")
        wait_for(lambda: [s["state"] for s in _journal(config, [])] == ["done", "done"], what="it journaled")
    finally:
        assert term.stop() == 0
    stopped = {"journal.sqlite3", "taptill.lock"}
    assert {p.name for p in state.iterdir()} == stopped, "the terminal checkpointed and removed -wal/-shm"
    for who in ([], as_owner):
        assert [s["state"] for s in _journal(config, who)] == ["done", "done"]
        assert {p.name for p in state.iterdir()} == stopped, "a read of a stopped journal leaves no -wal/-shm"


def _journal(config: Path, prefix: Sequence[str]) -> list[dict[str, object]]:
    out = taptill("journal", "--json", "--config", str(config), prefix=prefix).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_every_reading_command_stops_quietly_when_its_reader_is_gone(
    tmp_path: Path, emulator: WalletEmulator
) -> None:
    """``taptill journal | head -1``: the pipe closes before the output is written; no traceback."""
    config = write_config(tmp_path, emulator)
    fill_journal(tmp_path / "state" / "journal.sqlite3", 30, ERIKA)
    for args in [*READERS, ("doctor",)]:
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first line: every write meets a closed pipe
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "terminal", *args, "--config", str(config)],
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            os.close(write_end)
        assert (proc.returncode, proc.stderr) == (141, ""), args
