"""``taptill recover`` and ``taptill run`` on a damaged journal: SQLite's own tools salvage every sale on an
undamaged page, with its key and delivery bookkeeping, into a sound journal; the damaged file is kept
byte for byte; a salvaged pending sale reaches the wallet exactly once."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.emulator.wallet_server import WalletEmulator
from terminal.journal import Journal
from tests.journal_damage import (
    fill_journal,
    index_root,
    overwrite_pages,
    quick_check,
    sales_by_key,
    sales_leaves,
)
from tests.terminal_lab import (
    ERIKA,
    MAX,
    REPO,
    TerminalProcess,
    espresso,
    journal_lines,
    taptill,
    wait_for,
    write_config,
)

SALES = 300


def _damaged_journal(
    path: Path, product: str | int = "espresso"
) -> tuple[dict[str, dict[str, object]], set[str]]:
    """A journal of SALES sales with two adjacent leaf pages of its sales table overwritten.
    Returns (every sale as it was, by key) and the keys of the sales on the damaged pages."""
    fill_journal(path, SALES, MAX, product)
    before = sales_by_key(path)
    leaves = sales_leaves(path)
    assert len(leaves) >= 8, "the sales table should span many pages"
    hit = leaves[len(leaves) // 2 - 1 : len(leaves) // 2 + 1]
    lost_ids = {i for leaf in hit for i in leaf.sale_ids}
    ids = {key: n for n, key in enumerate(before, start=1)}  # keys in id order; ids are dense from 1
    lost = {key for key, n in ids.items() if n in lost_ids}
    overwrite_pages(path, [leaf.page for leaf in hit])
    assert quick_check(path) != "ok", "the damage must be visible to SQLite"
    return before, lost


def _aside(state: Path) -> list[Path]:
    return sorted(
        p for p in state.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))
    )


def test_recover_salvages_exactly_the_sales_on_undamaged_pages(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    path = state / "journal.sqlite3"
    before, lost = _damaged_journal(path)
    damaged = path.read_bytes()
    assert 0 < len(lost) < SALES // 4

    proc = taptill("recover", "--config", str(config), check=False)

    assert proc.returncode == 0, proc.stderr
    expected = {key: row for key, row in before.items() if key not in lost}
    after = sales_by_key(path)
    assert after == expected, "every sale on an undamaged page comes back, every column as it was"
    assert quick_check(path) == "ok"
    listed = re.findall(r"^(DONE|PENDING|HELD|REJECTED|DECLINED) +key (\S+)  card (\S+)", proc.stdout, re.M)
    assert {key for _, key, _ in listed} == set(expected) and len(listed) == len(expected)
    for label, key, card in listed:
        row = expected[key]
        assert card == row["token_id"]
        assert label == ("HELD" if row["hold"] else str(row["state"]).upper())
    done = sum(1 for r in expected.values() if r["state"] == "done")
    pending = sum(1 for r in expected.values() if r["state"] == "pending")
    held = sum(1 for r in expected.values() if r["hold"])
    last = proc.stdout.strip().splitlines()[-1]
    assert re.match(
        rf"salvaged {len(expected)} sale\(s\) with sqlite3 \.(recover|clone): {done} done, ", last
    )
    assert f"{pending} pending ({held} held)" in last and str(_aside(state)[0]) in last
    # the journal's other tables: reports of the salvaged done sales, cards, cache
    db = sqlite3.connect(path)
    try:
        report_keys = {
            r[0]
            for r in db.execute("SELECT s.idempotency_key FROM reports r JOIN sales s ON s.id = r.sale_id")
        }
        cards = db.execute(
            "SELECT token_id, balance_cents, denied_reason FROM cards ORDER BY token_id"
        ).fetchall()
        cached = db.execute("SELECT key FROM cache").fetchall()
    finally:
        db.close()
    assert report_keys == {k for k, r in expected.items() if r["state"] == "done"}
    assert cards == [("04A1B2C3D4E5F6", 2000, None), ("04BADC0FFEE000", None, "unknown_card")]
    assert cached == [("terminal_info",)]
    (aside,) = _aside(state)
    assert aside.read_bytes() == damaged, "the damaged journal is kept byte for byte"
    assert not [p for p in state.iterdir() if p.name.startswith(".salvage-")], "no scratch left behind"


def test_recover_from_a_file_moved_aside_merges_into_the_journal_once(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    old = state / "journal.sqlite3.corrupt-20250101T000000Z"  # moved aside by an older taptill
    before, lost = _damaged_journal(old)
    damaged = old.read_bytes()
    journal = Journal.open(state / "journal.sqlite3")  # the terminal started a new journal meanwhile
    try:
        newer = journal.record_sale(
            token_id=MAX,
            products=["espresso"],
            amount_cents=-250,
            description="Kaffee",
            tag=None,
            offline=False,
        )
    finally:
        journal.close()

    first = taptill("recover", "--config", str(config), "--from", str(old), check=False)
    again = taptill("recover", "--config", str(config), "--from", str(old), check=False)

    assert first.returncode == 0, first.stderr
    after = sales_by_key(state / "journal.sqlite3")
    assert set(after) == {newer.idempotency_key} | (set(before) - lost)
    assert all(after[k] == before[k] for k in set(before) - lost)
    assert again.returncode == 0, again.stderr
    assert (
        "salvaged 0 sale(s)" in again.stdout and f"{SALES - len(lost)} already in the journal" in again.stdout
    )
    assert sales_by_key(state / "journal.sqlite3") == after, "a second recover adds nothing"
    assert old.read_bytes() == damaged


def test_recover_on_an_intact_or_missing_journal_changes_nothing(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    missing = taptill("recover", "--config", str(config), check=False)
    assert missing.returncode == 1 and "nothing to recover" in missing.stderr
    assert sorted(p.name for p in state.iterdir()) == ["taptill.lock"]
    fill_journal(state / "journal.sqlite3", 12, MAX)
    data = (state / "journal.sqlite3").read_bytes()
    intact = taptill("recover", "--config", str(config), check=False)
    assert intact.returncode == 0 and "is intact" in intact.stdout
    assert sorted(p.name for p in state.iterdir()) == ["journal.sqlite3", "taptill.lock"]
    assert (state / "journal.sqlite3").read_bytes() == data


def test_recover_without_the_sqlite3_tool_names_the_package_and_touches_nothing(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    _damaged_journal(state / "journal.sqlite3")
    damaged = (state / "journal.sqlite3").read_bytes()
    names = sorted(p.name for p in state.iterdir())
    empty = tmp_path / "no-tools"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    proc = subprocess.run(
        [sys.executable, "-m", "terminal", "recover", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "taptill: the sqlite3 command-line tool is missing; install it: apt-get install sqlite3"
    ]
    assert sorted(p.name for p in state.iterdir()) == sorted([*names, "taptill.lock"])
    assert (state / "journal.sqlite3").read_bytes() == damaged


def test_run_on_a_damaged_journal_salvages_and_delivers_the_pending_sales_exactly_once(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    config = write_config(tmp_path, wallet_server)
    path = tmp_path / "state" / "journal.sqlite3"
    product = espresso(wallet_server.flavour)
    journal = Journal.open(path)
    try:
        for _ in range(200):  # sales settled long ago: never to be sent again
            sale = journal.record_sale(
                token_id=MAX,
                products=[product],
                amount_cents=-250,
                description="Kaffee",
                tag=None,
                offline=True,
            )
            journal.mark_done(sale.id, 1750)
        pending = [
            journal.record_sale(
                token_id=MAX,
                products=[product],
                amount_cents=-250,
                description="Kaffee",
                tag=None,
                offline=True,
            ).idempotency_key
            for _ in range(2)
        ]
        journal.query("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        journal.close()
    leaves = sales_leaves(path)
    overwrite_pages(path, [leaves[len(leaves) // 2].page])  # done sales only; the pending ones are last
    assert quick_check(path) != "ok"

    term = TerminalProcess(config)
    try:
        log = term.log()
        assert re.search(
            r"was damaged \(.*\); moved it to .*\.corrupt-\S+ and salvaged \d+ sale\(s\)", log
        ), log
        assert "2 pending" in log, log
        wait_for(
            lambda: len(wallet_server.transactions()) >= 2, what="the salvaged pending sales to be delivered"
        )
        wait_for(
            lambda: all(s["state"] != "pending" for s in journal_lines(config)),
            what="the salvaged sales settled",
        )
    finally:
        assert term.stop() == 0
    assert [t.idempotency_key for t in wallet_server.transactions()] == pending, "each exactly once, in order"
    assert len(_aside(tmp_path / "state")) == 1


@pytest.mark.parametrize("damage", ["header", "every data page"])
def test_run_on_a_journal_with_nothing_to_salvage_says_so_and_sells(tmp_path: Path, damage: str) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        path = tmp_path / "state" / "journal.sqlite3"
        fill_journal(path, 60, MAX)
        data = bytearray(path.read_bytes())
        if damage == "header":
            data[0:100] = b"\xa5" * 100
        else:
            overwrite_pages(path, list(range(2, len(data) // 4096 + 1)))  # page 1 (the schema) survives
            data = bytearray(path.read_bytes())
        path.write_bytes(bytes(data))
        term = TerminalProcess(config)
        try:
            assert "nothing could be salvaged" in term.log(), term.log()
            term.tap(MAX)
            wait_for(lambda: len(emulator.transactions()) == 1, what="a sale on the new journal")
        finally:
            assert term.stop() == 0
    (aside,) = _aside(tmp_path / "state")
    assert aside.read_bytes() == bytes(data)


def test_run_without_the_sqlite3_tool_sells_on_a_new_journal_and_recover_from_delivers_later(
    tmp_path: Path,
) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        state = tmp_path / "state"
        path = state / "journal.sqlite3"
        journal = Journal.open(path)
        try:
            key = journal.record_sale(
                token_id=MAX,
                products=["espresso"],
                amount_cents=-250,
                description="Kaffee",
                tag=None,
                offline=True,
            ).idempotency_key
        finally:
            journal.close()
        page = index_root(path, "sqlite_autoindex_sales_1")
        overwrite_pages(path, [page])  # the root of an index: the sale itself stays readable
        assert quick_check(path).splitlines() == [
            "*** in database main ***",
            f"Page {page}: btreeInitPage() returns error code 11",
        ]
        empty = tmp_path / "no-tools"
        empty.mkdir()
        term = TerminalProcess(config, {"PATH": str(empty)})
        try:
            (aside,) = _aside(state)
            (line,) = [line for line in term.log().splitlines() if "is damaged" in line or "***" in line]
            assert (
                f"is damaged (Page {page}: btreeInitPage() returns error code 11); moved it to {aside} and "
                "started a new one, but could not salvage its sales: the sqlite3 command-line tool is "
                f"missing; install it: apt-get install sqlite3; then run: taptill recover --from {aside}"
            ) in line, term.log()
            term.tap(ERIKA)
            wait_for(lambda: len(emulator.transactions()) == 1, what="a sale on the new journal")
        finally:
            assert term.stop() == 0
        recovered = taptill("recover", "--config", str(config), "--from", str(aside))
        assert key in recovered.stdout and "1 pending" in recovered.stdout
        term = TerminalProcess(config)
        try:
            wait_for(lambda: len(emulator.transactions()) == 2, what="the recovered sale delivered")
        finally:
            assert term.stop() == 0
        assert [t.idempotency_key for t in emulator.transactions()][1] == key
