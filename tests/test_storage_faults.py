"""Disk and database faults: a full disk and a read-only state directory stop sales (never sell what cannot
be journaled) until the journal is writable again; a corrupt journal is moved aside at start, never
overwritten, and what SQLite can read of it salvaged. The state directory is a real small tmpfs mounted
for the test (the suite runs as root)."""

from __future__ import annotations

import errno
import logging
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal, JournalError
from terminal.ops.salvage import open_journal_salvaging
from tests.journal_damage import damage_in_use, sales_by_key
from tests.terminal_lab import ERIKA, MAX, TerminalProcess, taptill, wait_for, write_config

OUT_OF_SERVICE = "Out of service"


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"mount {' '.join(args)} failed (the storage tests need root): {proc.stderr}"


@pytest.fixture
def state_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs as the terminal's state directory: small enough to fill in a moment."""
    state = tmp_path / "state"
    state.mkdir()
    _mount("-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(state))
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def _console_config(tmp_path: Path, server: WalletEmulator, **settings: Any) -> Path:
    """A terminal config whose display prints every screen into the process log."""
    config = write_config(tmp_path, server, **settings)
    text = config.read_text()
    assert '[display]\nkind = "none"' in text
    config.write_text(text.replace('[display]\nkind = "none"', '[display]\nkind = "console"'))
    return config


def _sales(state: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(state / "journal.sqlite3", timeout=5.0)
    try:
        return [(str(r[0]), str(r[1])) for r in db.execute("SELECT state, token_id FROM sales ORDER BY id")]
    finally:
        db.close()


def _fill(directory: Path) -> Path:
    """Write into ``directory`` until the filesystem says it is full."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def _log_has(term: TerminalProcess, text: str, after: int = 0) -> Callable[[], bool]:
    return lambda: text in term.log()[after:]


def _sells_until_storage_breaks(
    tmp_path: Path,
    server: WalletEmulator,
    state: Path,
    break_it: Callable[[], object],
    mend: Callable[[], object] | None,
) -> None:
    config = _console_config(tmp_path, server)
    term = TerminalProcess(config)
    try:
        term.tap(MAX)
        wait_for(lambda: len(server.transactions()) == 1, what="the first sale")
        wait_for(lambda: _sales(state) == [("done", MAX)], what="the first sale to be journaled done")
        # The screen follows the journal: wait for it, or the first sale's screen lands after the mark.
        wait_for(_log_has(term, "relay: 1 pulse(s)"), what="the first sale's relay pulse")
        break_it()
        mark = len(term.log())
        term.tap(MAX)
        wait_for(_log_has(term, OUT_OF_SERVICE, mark), what="the out-of-service screen")
        log = term.log()[mark:]
        assert "not selling: journal write failed" in log, log
        assert "journal unwritable: declining every sale" in log, log
        assert "Freigegeben" not in log and "Approved" not in log, log
        # A second tap while out of service is declined at once, without asking the server.
        lookups = server.stats()["requests_by_route"].get("wallet", 0)
        mark = len(term.log())
        term.tap(MAX)
        if mend is not None:
            mend()
            wait_for(
                _log_has(term, "journal writable again: selling", mark), what="the storage probe to succeed"
            )
        assert server.stats()["requests_by_route"].get("wallet", 0) == lookups
        assert len(server.transactions()) == 1, "a sale the journal could not record reached the server"
        if mend is not None:
            assert _sales(state) == [("done", MAX)]
            term.tap(MAX)
            wait_for(lambda: len(server.transactions()) == 2, what="a sale after the storage recovered")
            wait_for(lambda: [s for s, _ in _sales(state)] == ["done", "done"], what="the second sale done")
    finally:
        if mend is None:
            # Not SIGTERM: the sim reader's clean stop unlinks its socket, which a read-only directory
            # refuses (reported); a failed SD card ends in a watchdog restart or power cycle anyway.
            term.kill()
        else:
            assert term.stop() == 0, term.log()
    assert "journal writable again" not in term.log() or mend is not None
    keys = {t.idempotency_key for t in server.transactions()}
    db = sqlite3.connect(state / "journal.sqlite3")
    try:
        assert keys == {str(r[0]) for r in db.execute("SELECT idempotency_key FROM sales")}
    finally:
        db.close()


def test_a_full_disk_stops_sales_until_space_is_freed(
    tmp_path: Path, wallet_server: WalletEmulator, state_fs: Path
) -> None:
    filler: list[Path] = []
    _sells_until_storage_breaks(
        tmp_path,
        wallet_server,
        state_fs,
        break_it=lambda: filler.append(_fill(state_fs)),
        mend=lambda: filler[0].unlink(),
    )


@pytest.fixture
def ext4_state(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A small ext4 on a loop device as the state directory, mounted ``errors=remount-ro``: the kernel can
    be told to fail it as a dying SD card does, read-only under the open journal."""
    image, state = tmp_path / "sd.img", tmp_path / "state"
    state.mkdir()
    with image.open("wb") as f:
        f.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    _mount("-o", "loop,errors=remount-ro", str(image), str(state))
    try:
        yield image, state
    finally:
        subprocess.run(["umount", str(state)], check=False)


def _fail_ext4(state: Path) -> None:
    source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(state)], capture_output=True, text=True)
    Path(f"/sys/fs/ext4/{Path(source.stdout.strip()).name}/trigger_fs_error").write_text("1")


def test_a_state_directory_gone_read_only_stops_sales_and_keeps_the_journal(
    tmp_path: Path, wallet_server: WalletEmulator, ext4_state: tuple[Path, Path]
) -> None:
    image, state = ext4_state
    _sells_until_storage_breaks(tmp_path, wallet_server, state, break_it=lambda: _fail_ext4(state), mend=None)
    # A filesystem the kernel made read-only stays so until it is checked; after that the terminal
    # starts on the same journal and sells again.
    subprocess.run(["umount", str(state)], check=True)
    subprocess.run(["e2fsck", "-f", "-y", str(image)], capture_output=True, check=False)
    _mount("-o", "loop,errors=remount-ro", str(image), str(state))
    assert _sales(state) == [("done", MAX)]
    term = TerminalProcess(_console_config(tmp_path, wallet_server))
    try:
        term.tap(MAX)
        wait_for(lambda: len(wallet_server.transactions()) == 2, what="a sale after the repair")
        wait_for(lambda: [s for s, _ in _sales(state)] == ["done", "done"], what="the sale journaled done")
    finally:
        assert term.stop() == 0


def test_a_read_only_state_directory_at_start_is_refused_and_the_journal_kept(
    tmp_path: Path, wallet_server: WalletEmulator, state_fs: Path
) -> None:
    config = write_config(tmp_path, wallet_server)
    journal = Journal.open(state_fs / "journal.sqlite3")
    journal.close()
    before = sorted(p.name for p in state_fs.iterdir())
    _mount("-o", "remount,ro", str(state_fs))
    proc = taptill("run", "--config", str(config), check=False, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "cannot lock state directory" in proc.stderr and "make the state directory writable" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in state_fs.iterdir()) == before, "nothing may be moved aside"


def _journal_with_sales(path: Path, count: int) -> None:
    journal = Journal.open(path)
    try:
        for _ in range(count):
            journal.record_sale(
                token_id=MAX,
                products=["espresso"],
                amount_cents=-250,
                description="Kaffee",
                tag=None,
                offline=True,
            )
    finally:
        journal.close()


def _spoil(path: Path, where: str) -> None:
    data = bytearray(path.read_bytes())
    assert len(data) >= 3 * 4096, "the journal should span several pages"
    if where == "header":
        data[0:100] = b"\xa5" * 100
    else:  # every page but the first (the schema): the sales table's b-tree pages
        for i in range(4096, len(data)):
            data[i] = (i * 131 + 7) % 256
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["pages", "header"])
def test_a_corrupt_journal_is_moved_aside_never_overwritten(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state" / "journal.sqlite3"
    _journal_with_sales(path, 40)
    _spoil(path, where)
    spoilt = path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="terminal.ops.salvage"):
        journal = open_journal_salvaging(path)
    try:
        assert list(journal.sales()) == [], "nothing was left to salvage: a fresh journal starts empty"
    finally:
        journal.close()
    aside = [
        p
        for p in path.parent.iterdir()
        if p.name.startswith("journal.sqlite3.corrupt-") and not p.name.endswith(("-wal", "-shm"))
    ]
    assert len(aside) == 1, list(path.parent.iterdir())
    assert aside[0].read_bytes() == spoilt, "the corrupt journal must be kept byte for byte"
    message = caplog.text
    assert "was damaged" in message and f"moved it to {aside[0]}" in message
    assert "nothing could be salvaged" in message


def test_a_corrupt_journal_is_reported_at_start_and_the_terminal_sells_again(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    config = write_config(tmp_path, wallet_server)
    path = tmp_path / "state" / "journal.sqlite3"
    _journal_with_sales(path, 40)
    _spoil(path, "pages")
    spoilt = path.read_bytes()
    term = TerminalProcess(config)
    try:
        assert "was damaged" in term.log() and "moved it to" in term.log(), term.log()
        term.tap(MAX)
        wait_for(lambda: len(wallet_server.transactions()) == 1, what="a sale on the fresh journal")
    finally:
        assert term.stop() == 0
    (aside,) = [
        p
        for p in path.parent.iterdir()
        if p.name.startswith("journal.sqlite3.corrupt-") and not p.name.endswith(("-wal", "-shm"))
    ]
    assert aside.read_bytes() == spoilt


def test_a_journal_that_cannot_be_moved_aside_is_an_error_not_a_crash(tmp_path: Path, state_fs: Path) -> None:
    path = state_fs / "journal.sqlite3"
    _journal_with_sales(path, 40)
    _spoil(path, "header")
    spoilt = path.read_bytes()
    _mount("-o", "remount,ro", str(state_fs))
    with pytest.raises(JournalError, match=r"cannot be moved aside \(Read-only file system\); move it away"):
        open_journal_salvaging(path)
    assert path.read_bytes() == spoilt and [p.name for p in state_fs.iterdir()] == ["journal.sqlite3"]


# --- a journal damaged under the running terminal ------------------------------------------------------


def _done_keys(state: Path) -> set[str]:
    db = sqlite3.connect(state / "journal.sqlite3")
    try:
        return {str(r[0]) for r in db.execute("SELECT idempotency_key FROM sales WHERE state = 'done'")}
    finally:
        db.close()


def _all_dispensed(state: Path) -> bool:
    """Every sale's relay pulses are over and journaled (``dispensed`` is set after the last pulse)."""
    db = sqlite3.connect(state / "journal.sqlite3")
    try:
        return bool(db.execute("SELECT COUNT(*) FROM sales WHERE dispensed = 0").fetchone()[0] == 0)
    finally:
        db.close()


def _a_sale_and_one_served_offline(
    term: TerminalProcess, server: WalletEmulator, state: Path
) -> dict[str, dict[str, Any]]:
    """A sale booked, then, with the server down, one served offline (approved on the journal's word,
    not charged yet); its pulses journaled. Returns the journal's sales by key."""
    term.tap(MAX)
    wait_for(lambda: len(_done_keys(state)) == 1, what="the first sale journaled done")
    server.faults.set_down(True)
    term.tap(MAX)
    wait_for(lambda: term.log().count("relay: 1 pulse(s)") == 2, what="the offline sale's pulse")
    wait_for(lambda: _all_dispensed(state), what="the pulses journaled dispensed")
    before = sales_by_key(state / "journal.sqlite3")
    assert sorted(s["state"] for s in before.values()) == ["done", "pending"]
    return before


def _charged_once_each(server: WalletEmulator, state: Path, before: dict[str, dict[str, Any]]) -> None:
    """Both sales of ``_a_sale_and_one_served_offline`` are in the journal and on the server once each."""
    wait_for(lambda: len(server.transactions()) == 2, what="the offline sale charged")
    wait_for(
        lambda: _done_keys(state) == {t.idempotency_key for t in server.transactions()},
        what="every sale journaled done, the same keys as the server's",
    )
    assert set(sales_by_key(state / "journal.sqlite3")) == set(before)


def _stopped_for_salvage(term: TerminalProcess, mark: int) -> str:
    """The terminal stops by itself, exit 1, saying why in one line: its log since ``mark``."""
    assert term.wait_dead(30) == 1, term.log()
    log = term.log()[mark:]
    assert "is damaged (database disk image is malformed): out of service; stopping" in log, log
    assert "taptill stopped so that its next start salvages the sales into a new journal" in log, log
    assert "Traceback" not in log, log
    # The journal's fault is not the server's: no tap is decided offline for it.
    assert "wallet server unreachable" not in log, log
    return log


def _starts_on_the_salvaged_journal(
    config: Path, server: WalletEmulator, state: Path, before: dict[str, dict[str, object]]
) -> None:
    """The next start moves the damaged journal aside, salvages every sale and sells on; nothing is lost
    or doubled: the server's ledger and the journal's done sales are the same keys."""
    term = TerminalProcess(config)
    try:
        salvage_line = r"journal \S+ was damaged \(.+\); moved it to \S+ and salvaged"
        assert re.search(salvage_line, term.log()), term.log()
        salvaged = sales_by_key(state / "journal.sqlite3")
        assert set(before) <= set(salvaged), "a sale was lost to the damage"
        # A pending sale may be delivered already (done, with its balance after); a done one is as it was.
        done = {k: v for k, v in before.items() if v["state"] == "done"}
        assert {k: salvaged[k] for k in done} == done, "the salvage changed a sale"
        # The salvaged pending sale is delivered first, then the new one
        wait_for(lambda: len(server.transactions()) == len(before), what="the salvaged pending sale sent")
        term.tap(ERIKA)
        wait_for(lambda: len(server.transactions()) == len(before) + 1, what="a sale after the salvage")
        wait_for(
            lambda: _done_keys(state) == {t.idempotency_key for t in server.transactions()},
            what="every sale on the server journaled done, and no other",
        )
    finally:
        assert term.stop() == 0, term.log()


def test_a_journal_damaged_under_a_tap_stops_the_terminal_and_its_next_start_salvages_every_sale(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    config = _console_config(tmp_path, wallet_server)
    state = tmp_path / "state"
    term = TerminalProcess(config)
    try:
        for n in (1, 2):
            term.tap(MAX)
            wait_for(lambda n=n: len(_done_keys(state)) == n, what=f"sale {n} journaled done")
            wait_for(lambda n=n: term.log().count("relay: 1 pulse(s)") == n, what=f"sale {n}'s pulse")
        wait_for(lambda: _all_dispensed(state), what="the pulses journaled dispensed")
        before = sales_by_key(state / "journal.sqlite3")
        # The cards table: read by a tap alone (its balance is written with the sale), never by an
        # outbox, so the tap is what finds the damage.
        damage_in_use(state / "journal.sqlite3", "cards")
        mark = len(term.log())
        term.tap(MAX)
        log = _stopped_for_salvage(term, mark)
        assert OUT_OF_SERVICE in log, log
        assert "Approved" not in log and "relay: 1 pulse" not in log, log
    finally:
        term.kill()
    assert len(wallet_server.transactions()) == 2, "the tap that found the damage reached the server"
    _starts_on_the_salvaged_journal(config, wallet_server, state, before)


def _maybe_sent(state: Path) -> bool:
    db = sqlite3.connect(state / "journal.sqlite3")
    try:
        return bool(db.execute("SELECT COUNT(*) FROM sales WHERE maybe_sent = 1").fetchone()[0])
    finally:
        db.close()


def test_a_journal_damaged_while_a_debit_is_on_its_way_serves_the_guest_who_paid(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    # The guest's debit is booked; only the journal's "done" fails. Declined, they would have paid for
    # nothing: they are served, and the sale, pending in the journal, is settled after the salvage.
    config = _console_config(tmp_path, wallet_server, budget_ms=3000, timeout_s=4.0)
    state = tmp_path / "state"
    term = TerminalProcess(config)
    try:
        term.tap(MAX)
        wait_for(lambda: len(_done_keys(state)) == 1, what="the first sale journaled done")
        wait_for(lambda: _all_dispensed(state), what="its pulses journaled dispensed")
        wallet_server.faults.inject("latency", method="POST", ms=1000, times=1)
        mark = len(term.log())
        term.tap(MAX)
        wait_for(lambda: _maybe_sent(state), what="the second debit on its way")
        before = sales_by_key(state / "journal.sqlite3")
        # The done is written with the card's new balance: the cards table's damage fails that write.
        damage_in_use(state / "journal.sqlite3", "cards")
        log = _stopped_for_salvage(term, mark)
        assert "wallet: the server answered Done, but the journal cannot record it" in log, log
        served = log.split("the journal cannot record it")[1]
        assert "Approved" in served and "relay: 1 pulse(s)" in served, log
        # told what the server booked, not "Booked shortly" as for a sale still on its way
        assert "Balance 15,00" in served and "Booked shortly" not in log, log
        assert "Declined" not in log, log
    finally:
        term.kill()
    assert len(wallet_server.transactions()) == 2
    _starts_on_the_salvaged_journal(config, wallet_server, state, before)


def test_a_journal_damaged_while_no_one_taps_stops_the_terminal_once_its_outbox_finds_it(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    config = _console_config(tmp_path, wallet_server)
    state = tmp_path / "state"
    term = TerminalProcess(config)
    try:
        before = _a_sale_and_one_served_offline(term, wallet_server, state)
        # The index the outbox reads a card's earlier pending sales through: no tap reads it now.
        damage_in_use(state / "journal.sqlite3", "sales_token")
        mark = len(term.log())
        wallet_server.faults.set_down(False)  # the outbox goes to deliver the pending sale
        log = _stopped_for_salvage(term, mark)
        assert "outbox paused: journal" in log, log
    finally:
        term.kill()
    assert len(wallet_server.transactions()) == 1
    _starts_on_the_salvaged_journal(config, wallet_server, state, before)


def test_a_journal_from_a_newer_taptill_stops_run_with_the_one_fix_that_helps(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    config = write_config(tmp_path, wallet_server)
    path = tmp_path / "state" / "journal.sqlite3"
    Journal.open(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 999")
    db.close()
    proc = taptill("run", "--config", str(config), check=False, timeout=30)
    assert proc.returncode == 2, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("taptill:")]
    assert line.startswith(f"taptill: journal {path} has schema 999, newer than this taptill knows"), line
    assert line.endswith("; upgrade taptill"), "not: check [terminal] state_dir and free disk space"


def test_a_journal_gone_read_only_while_a_debit_is_on_its_way_serves_the_guest_who_paid(
    tmp_path: Path, wallet_server: WalletEmulator, ext4_state: tuple[Path, Path]
) -> None:
    # Neither the done nor the approval can be written: the guest, whose debit was booked, was declined.
    image, state = ext4_state
    config = _console_config(tmp_path, wallet_server, budget_ms=3000, timeout_s=4.0)
    term = TerminalProcess(config)
    try:
        term.tap(MAX)
        wait_for(lambda: len(_done_keys(state)) == 1, what="the first sale journaled done")
        wait_for(lambda: _all_dispensed(state), what="its pulses journaled dispensed")
        wallet_server.faults.inject("latency", method="POST", ms=1000, times=1)
        mark = len(term.log())
        term.tap(MAX)
        wait_for(lambda: _maybe_sent(state), what="the second debit on its way")
        _fail_ext4(state)
        wait_for(_log_has(term, OUT_OF_SERVICE, mark), what="the out-of-service screen after the sale")
        log = term.log()[mark:]
        assert "wallet: the server answered Done, but the journal cannot record it" in log, log
        served = log.split("the journal cannot record it")[1]
        assert "Approved" in served and "relay: 1 pulse(s)" in served, log
        assert "Declined" not in log, log
    finally:
        term.kill()
    assert len(wallet_server.transactions()) == 2
    subprocess.run(["umount", str(state)], check=True)
    subprocess.run(["e2fsck", "-f", "-y", str(image)], capture_output=True, check=False)
    _mount("-o", "loop,errors=remount-ro", str(image), str(state))
    # Pending in the journal, maybe sent: settled with the server after the restart, never sent twice.
    term = TerminalProcess(config)
    try:
        wait_for(
            lambda: _done_keys(state) == {t.idempotency_key for t in wallet_server.transactions()},
            what="the paid sale journaled done",
        )
    finally:
        assert term.stop() == 0, term.log()
    assert len(wallet_server.transactions()) == 2


# --- a journal removed or replaced under the running terminal -----------------------------------------


@pytest.mark.parametrize("how", ["removed", "renamed", "replaced", "its -wal removed"])
def test_a_journal_removed_or_replaced_under_the_terminal_stops_it_and_its_next_start_merges_every_sale(
    tmp_path: Path, wallet_server: WalletEmulator, how: str
) -> None:
    # An operator "resetting" a running terminal: its sales would go on into a file no one reads, and
    # those served offline (never charged yet) would be lost with the process.
    config = _console_config(tmp_path, wallet_server)
    state = tmp_path / "state"
    path = state / "journal.sqlite3"
    term = TerminalProcess(config)
    try:
        before = _a_sale_and_one_served_offline(term, wallet_server, state)
        mark = len(term.log())
        if how == "removed":
            path.unlink()
        elif how == "renamed":
            path.rename(state / "journal.old")
        elif how == "its -wal removed":
            Path(f"{path}-wal").unlink()
        else:
            path.unlink()
            path.write_text("not a journal\n")
        assert term.wait_dead(30) == 1, term.log()
        log = term.log()[mark:]
        said = {"replaced": "replaced by another file", "its -wal removed": "left without its -wal (removed)"}
        assert f"journal {path} was {said.get(how, 'removed')} while taptill ran" in log, log
        kept = re.search(r"taptill kept its sales in (\S+) and stopped: its next start merges them", log)
        assert kept is not None, log
        assert "Traceback" not in log, log
    finally:
        term.kill()
    assert len(wallet_server.transactions()) == 1, "the offline sale is not charged yet"
    if how == "removed":  # the copy is no secret while it waits: doctor says so
        doctor = taptill("doctor", "--config", str(config), check=False, timeout=60)
        (line,) = [line for line in doctor.stdout.splitlines() if line.split()[1:2] == ["journal"]]
        assert line.startswith("WARN") and f"{Path(kept[1]).name} (sales a terminal kept" in line, line
        assert "waits to be merged: start taptill run, which merges it" in line, line
    wallet_server.faults.set_down(False)
    term = TerminalProcess(config)
    try:
        assert f"merged {kept[1]}, the copy a terminal kept" in term.log(), term.log()
        assert Path(f"{kept[1]}.merged").exists() and not Path(kept[1]).exists()
        _charged_once_each(wallet_server, state, before)
    finally:
        assert term.stop() == 0, term.log()
    if how == "replaced":  # what was put there is kept, moved aside, never read as the journal
        (aside,) = state.glob("journal.sqlite3.corrupt-*")
        assert aside.read_text() == "not a journal\n"


@pytest.mark.parametrize("freed", ["while selling", "while stopping"])
def test_a_full_disk_while_a_debit_is_on_its_way_serves_the_guest_and_journals_the_approval_once_freed(
    tmp_path: Path, wallet_server: WalletEmulator, state_fs: Path, freed: str
) -> None:
    # Served while the journal could not say so: once it can, it says so, or settling the sale would list
    # it "charged, never approved: refund it" for a guest who got their drink. A stop (SIGTERM) waits
    # for that within its drain.
    config = _console_config(tmp_path, wallet_server, budget_ms=3000, timeout_s=4.0)
    term = TerminalProcess(config)
    try:
        term.tap(MAX)
        wait_for(lambda: len(_done_keys(state_fs)) == 1, what="the first sale journaled done")
        wait_for(lambda: _all_dispensed(state_fs), what="its pulses journaled dispensed")
        wallet_server.faults.inject("latency", method="POST", ms=1000, times=1)
        mark = len(term.log())
        term.tap(MAX)
        wait_for(lambda: _maybe_sent(state_fs), what="the second debit on its way")
        filler = _fill(state_fs)
        wait_for(_log_has(term, OUT_OF_SERVICE, mark), what="the out-of-service screen after the sale")
        log = term.log()[mark:]
        assert "wallet: the server answered Done, but the journal cannot record it" in log, log
        served = log.split("the journal cannot record it")[1]
        assert "Approved" in served and "relay: 1 pulse(s)" in served and "Declined" not in log, log
        if freed == "while stopping":
            wait_for(_log_has(term, "was dispensed, but the journal cannot say so yet", mark), what="pulses")
            term.proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert term.alive(), "stopped without waiting for what the journal could not record"
            filler.unlink()
            assert term.wait_dead(20) == 0, term.log()
            term = TerminalProcess(config)
        else:
            filler.unlink()
            wait_for(_log_has(term, "journal writable again: selling", mark), what="the storage probe")
        wait_for(
            lambda: _done_keys(state_fs) == {t.idempotency_key for t in wallet_server.transactions()},
            what="the paid sale settled done",
        )
    finally:
        assert term.stop() == 0, term.log()
    assert len(wallet_server.transactions()) == 2
    db = sqlite3.connect(state_fs / "journal.sqlite3")
    try:
        assert db.execute("SELECT state, approved FROM sales ORDER BY id").fetchall() == [("done", 1)] * 2
    finally:
        db.close()
    queue = taptill("queue", "--config", str(config), check=False, timeout=30)
    assert "NEVER APPROVED" not in queue.stdout and "refund" not in queue.stdout, queue.stdout


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_a_journal_removed_and_the_terminal_stopped_before_it_looked_loses_no_sale(
    tmp_path: Path, wallet_server: WalletEmulator, stop: str
) -> None:
    # `rm journal.sqlite3; systemctl restart taptill`, or a kill right after the rm: the stop keeps the
    # copy; after a kill, the next start keeps the removed journal's -wal rather than let SQLite delete it.
    config = _console_config(tmp_path, wallet_server)
    state = tmp_path / "state"
    path = state / "journal.sqlite3"
    term = TerminalProcess(config)
    try:
        before = _a_sale_and_one_served_offline(term, wallet_server, state)
        path.unlink()
        if stop == "SIGTERM":
            assert term.stop() == 1, term.log()
            assert "taptill kept its sales in" in term.log(), term.log()
        else:
            term.kill()
    finally:
        term.kill()
    wallet_server.faults.set_down(False)
    term = TerminalProcess(config)
    try:
        if stop == "SIGKILL":
            assert "is missing, but the -wal of a journal removed under a terminal is there" in term.log()
        assert "merged" in term.log() and "the copy a terminal kept" in term.log(), term.log()
        _charged_once_each(wallet_server, state, before)
    finally:
        assert term.stop() == 0, term.log()


def test_a_journal_removed_when_its_copy_cannot_be_written_keeps_the_terminal_alive_until_it_can(
    tmp_path: Path, wallet_server: WalletEmulator, state_fs: Path
) -> None:
    # The process holds the only copy of the sales since the last look: exiting would throw them away.
    config = _console_config(tmp_path, wallet_server)
    path = state_fs / "journal.sqlite3"
    term = TerminalProcess(config)
    try:
        before = _a_sale_and_one_served_offline(term, wallet_server, state_fs)
        filler = _fill(state_fs)
        mark = len(term.log())
        path.unlink()
        wait_for(_log_has(term, "and its sales cannot be copied", mark), what="the copy to fail")
        assert term.alive(), term.log()
        assert "trying again every 2 s (free space, or make the state directory writable)" in term.log()
        filler.unlink()
        assert term.wait_dead(30) == 1, term.log()
        assert "taptill kept its sales in" in term.log()[mark:], term.log()
    finally:
        term.kill()
    wallet_server.faults.set_down(False)
    term = TerminalProcess(config)
    try:
        _charged_once_each(wallet_server, state_fs, before)
    finally:
        assert term.stop() == 0, term.log()
    # one copy, written whole once there was room: no half-written tries left about
    kept = sorted(p.name.split(".orphan-")[1][16:] for p in state_fs.glob("journal.sqlite3.orphan-*"))
    assert kept in ([".merged"], [".left-shm", ".left-wal", ".merged"]), kept
