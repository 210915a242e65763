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

from terminal import journal as journal_module
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal
from terminal.money import format_cents
from terminal.ops.salvage import salvage_in_place, salvage_into
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
    Returns (every sale as it was, by key) and the keys of the sales on the damaged pages (their ids
    are one run: ``_lost_ids``)."""
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


def _lost_ids(before: dict[str, dict[str, object]], lost: set[str]) -> tuple[int, int]:
    """The first and last id of the lost sales (ids are dense from 1, in key order of ``before``)."""
    ids = [n for n, key in enumerate(before, start=1) if key in lost]
    assert ids == list(range(ids[0], ids[-1] + 1)), "adjacent pages: one run of ids"
    return ids[0], ids[-1]


def _euros(cents: int) -> str:
    return format_cents(cents, "de", "EUR")


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
    n = {s: sum(1 for r in expected.values() if r["state"] == s) for s in ("done", "pending", "rejected")}
    held = sum(1 for r in expected.values() if r["hold"])
    declined = len(expected) - sum(n.values())
    first, last_id = _lost_ids(before, lost)
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"salvaged {len(expected)} sale\(s\) with sqlite3 \.(recover|clone): "
        + re.escape(
            f"{n['done']} done {_euros(n['done'] * 250)}, {n['pending']} pending "
            f"{_euros(n['pending'] * 250)} ({held} held {_euros(held * 250)}), {n['rejected']} rejected "
            f"{_euros(n['rejected'] * 250)}, {declined} declined; {len(lost)} sales could not be salvaged: "
            f"ids {first}-{last_id}; {n['done']} outbox record(s), 2 card(s), 1 cached server "
            f"answer(s); the damaged journal is kept at {_aside(state)[0]}"
        ),
        last,
    ), last
    # the journal's other tables: reports of the salvaged done sales, cards, cache
    db = sqlite3.connect(path)
    try:
        report_keys = {
            r[0]
            for r in db.execute("SELECT s.idempotency_key FROM outbox r JOIN sales s ON s.id = r.sale_id")
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
    hit = leaves[len(leaves) // 2]
    overwrite_pages(path, [hit.page])  # done sales only; the pending ones are last
    assert quick_check(path) != "ok"

    term = TerminalProcess(config)
    try:
        log = term.log()
        (line,) = [line for line in log.splitlines() if "was damaged" in line]
        assert re.search(
            r"was damaged \(.*\); moved it to .*\.corrupt-\S+ and salvaged \d+ sale\(s\)", line
        ), log
        assert ", 2 pending 5,00 €, " in line, line
        lost = hit.sale_ids
        assert f"; {len(lost)} sales could not be salvaged: ids {lost[0]}-{lost[-1]}" in line, line
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


# --- every column of every table, whatever the migrations add ------------------------------------------

FUTURE_MIGRATION = """
    ALTER TABLE sales ADD COLUMN later_flag INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cards ADD COLUMN later_note TEXT;
    CREATE TABLE tips (
        sale_id INTEGER NOT NULL REFERENCES sales (id),
        cents INTEGER NOT NULL,
        note TEXT NOT NULL DEFAULT 'none'
    );
"""  # what a later taptill might add: a column with a default, one without, a table tied to the sales
EVERY_COLUMN_KEY = "tEveryColumnSet" + "x" * 10
_SOUND = {  # values the money path and the tables' CHECKs insist on; every other column gets a made-up one
    ("sales", "idempotency_key"): EVERY_COLUMN_KEY,
    ("sales", "token_id"): MAX,
    ("sales", "products"): '["espresso", 7]',
    ("sales", "state"): "pending",
    ("outbox", "state"): "ambiguous",
    ("cache", "value"): '{"every": "column"}',
    ("ybm_events", "kind"): "cancel-delivery",
    ("ybm_events", "delivery_type"): "RETURN",
    ("stock_moves", "kind"): "count",
}


def _schema(db: sqlite3.Connection) -> dict[str, list[tuple[str, str, object, bool]]]:
    """Each table's columns (name, declared type, default, is the rowid), sales first."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    out = {}
    for name in sorted(names, key=lambda n: n != "sales"):
        info = db.execute(f"PRAGMA table_info({name})").fetchall()
        keys = [r for r in info if r[5]]
        rowid = keys[0][1] if len(keys) == 1 and keys[0][2].upper() == "INTEGER" else None
        out[name] = [(r[1], r[2].upper(), r[4], r[1] == rowid) for r in info]
    return out


def _every_column_set(path: Path) -> None:
    """A journal of the current schema (MIGRATIONS as they are at the call) with one row in every table,
    each column holding a value other than its default; a column tied to a sale names the one sale."""
    Journal.open(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for table, columns in _schema(db).items():
            # A reference to a sale names the one sale: by its id, or by its idempotency key.
            refs = {r[3]: r[4] for r in db.execute(f"PRAGMA foreign_key_list({table})") if r[2] == "sales"}
            row: dict[str, object] = {}
            for n, (name, declared, _, rowid) in enumerate(columns):
                if rowid:
                    continue
                if (table, name) in _SOUND:
                    row[name] = _SOUND[(table, name)]
                elif name in refs:
                    row[name] = EVERY_COLUMN_KEY if refs[name] == "idempotency_key" else 1
                elif "INT" in declared:
                    row[name] = 40 + n
                elif declared == "REAL":
                    row[name] = 1234.5 + n
                else:
                    row[name] = f"{table}.{name}"
            marks = ", ".join("?" for _ in row)
            db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))
    finally:
        db.close()


def _rows(path: Path) -> dict[str, list[dict[str, object]]]:
    """Every row of every table but its rowid (a salvaged row may get a new one)."""
    db = sqlite3.connect(path)
    try:
        out = {}
        for table, columns in _schema(db).items():
            names = [name for name, _, _, rowid in columns if not rowid]
            cur = db.execute(f"SELECT {', '.join(names)} FROM {table}")
            out[table] = [dict(zip(names, r, strict=True)) for r in cur]
    finally:
        db.close()
    return out


def _damage_an_index(path: Path) -> None:
    """SQLite finds the journal damaged, but every row of every table is still readable."""
    overwrite_pages(path, [index_root(path, "sqlite_autoindex_sales_1")])
    assert quick_check(path) != "ok"


def test_every_column_of_every_table_survives_taptill_recover(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
    path = tmp_path / "state" / "journal.sqlite3"
    _every_column_set(path)
    before = _rows(path)
    assert all(len(rows) == 1 for rows in before.values()), before
    _damage_an_index(path)

    proc = taptill("recover", "--config", str(config), check=False)

    assert proc.returncode == 0, proc.stderr
    assert _rows(path) == before
    (sale,) = journal_lines(config)
    assert sale["dispensed"] is True and sale["held"] is True


@pytest.mark.parametrize("written_by", ["a taptill with the migration", "the taptill before it"])
def test_a_column_a_new_migration_adds_is_salvaged_without_editing_the_salvage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written_by: str
) -> None:
    damaged = tmp_path / "state" / "journal.sqlite3"
    later = (*journal_module.MIGRATIONS, FUTURE_MIGRATION)
    if written_by == "a taptill with the migration":
        monkeypatch.setattr(journal_module, "MIGRATIONS", later)
    _every_column_set(damaged)
    before = _rows(damaged)
    _damage_an_index(damaged)
    monkeypatch.setattr(journal_module, "MIGRATIONS", later)  # the taptill that salvages has it
    (tmp_path / "new").mkdir(mode=0o700)

    result = salvage_into(damaged, tmp_path / "new" / "journal.sqlite3")

    after = _rows(tmp_path / "new" / "journal.sqlite3")
    assert [s.idempotency_key for s in result.sales] == [EVERY_COLUMN_KEY]
    if written_by == "a taptill with the migration":
        assert after == before
        assert after["sales"][0]["later_flag"] not in (0, None) and after["tips"] == before["tips"] != []
    else:  # a column the damaged journal lacks takes its default; a table it lacks stays empty
        assert "later_flag" not in before["sales"][0] and "tips" not in before
        assert after["sales"] == [{**before["sales"][0], "later_flag": 0}]
        assert after["cards"] == [{**before["cards"][0], "later_note": None}]
        assert after["tips"] == []
        assert {t: r for t, r in after.items() if t not in ("sales", "cards", "tips")} == {
            t: r for t, r in before.items() if t not in ("sales", "cards")
        }


# --- what could not be salvaged, and the money of what was -----------------------------------------------


def test_recover_from_keeps_the_sales_charged_but_not_dispensed_on_the_queue(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
    copy = tmp_path / "copy" / "journal.sqlite3"  # the terminal's state directory does not exist yet
    journal = Journal.open(copy)
    charged = []
    try:
        for i in range(6):
            sale = journal.record_sale(
                token_id=MAX,
                products=["espresso"],
                amount_cents=-120,
                description="Kaffee",
                tag=None,
                offline=False,
                dispense=True,
            )
            journal.mark_done(sale.id, 2000 - 120 * (i + 1))
            if i % 2:
                journal.mark_dispensed(sale.idempotency_key)
            else:
                charged.append(sale.idempotency_key)  # the relay never finished: a refund to check
        topup = journal.record_sale(
            token_id=ERIKA,
            products=["topup"],
            amount_cents=1000,
            description="Aufladung",
            tag=None,
            offline=False,
        )  # nothing to dispense
        journal.mark_done(topup.id, 1500)
        unapproved = journal.record_sale(
            token_id=ERIKA,
            products=["espresso"],
            amount_cents=-250,
            description="Kaffee",
            tag=None,
            offline=False,
            dispense=True,
            approved=False,
        )  # the terminal stopped before the guest was told; the server booked it all the same
        journal.mark_done(unapproved.id, 1250)
        journal.query("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        journal.close()
    before = sales_by_key(copy)
    dispensed = {key: row["dispensed"] for key, row in before.items()}
    assert sorted(dispensed.values(), key=str) == [0, 0, 0, 0, 1, 1, 1, None]
    assert [row["approved"] for row in before.values()] == [1] * 7 + [0]
    _damage_an_index(copy)

    recovered = taptill("recover", "--config", str(config), "--from", str(copy))
    queue = taptill("queue", "--config", str(config))

    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["journal.sqlite3", "taptill.lock"]

    to_check = [
        *(("CHARGED, NOT DISPENSED", key) for key in charged),
        ("CHARGED, NEVER APPROVED", unapproved.idempotency_key),
    ]
    assert re.findall(r"^(CHARGED, N[A-Z ]+) key (\S+)", recovered.stdout, re.M) == to_check
    summary = recovered.stdout.splitlines()[-1]
    assert "salvaged 8 sale(s)" in summary
    assert ": 8 done -0,30 € (3 not dispensed 3,60 €, 1 never approved 2,50 €), " in summary
    assert re.findall(r"^(CHARGED, N[A-Z ]+) .* key (\S+)", queue.stdout, re.M) == to_check
    assert [(s["idempotency_key"], s["dispensed"], s["approved"]) for s in journal_lines(config)] == [
        (key, None if row["dispensed"] is None else bool(row["dispensed"]), bool(row["approved"]))
        for key, row in before.items()
    ]


def _one_sale_per_page(path: Path, plan: list[tuple[str, int]]) -> list[str]:
    """A sale for each (kind, cents) of ``plan`` (ids from 1), each on a leaf page of its own; returns
    the keys. Kinds: done, undispensed (charged, the relay did not finish), pending, offline, held,
    rejected, declined."""
    journal = Journal.open(path)
    keys = []
    try:
        for kind, cents in plan:
            pad = "x" * 2200  # two such sales do not fit on a 4 KiB page
            if kind == "declined":
                journal.record_decline(
                    token_id=MAX,
                    products=["espresso"],
                    amount_cents=-cents,
                    description=pad,
                    reason="insufficient_balance",
                )
                keys.append(str(journal.query("SELECT idempotency_key FROM sales ORDER BY id DESC")[0][0]))
                continue
            sale = journal.record_sale(
                token_id=MAX,
                products=["espresso"],
                amount_cents=-cents,
                description=pad,
                tag=None,
                offline=kind == "offline",
                dispense=kind in ("done", "undispensed"),
            )
            keys.append(sale.idempotency_key)
            if kind in ("done", "undispensed"):
                journal.mark_done(sale.id, 1000)
            if kind == "done":
                journal.mark_dispensed(sale.idempotency_key)
            elif kind == "held":
                journal.hold(sale.id, "unclear whether booked")
            elif kind == "rejected":
                journal.mark_rejected(sale.id, "bad_product: 400")
        journal.query("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        journal.close()
    assert [leaf.sale_ids for leaf in sales_leaves(path)] == [(n,) for n in range(1, len(plan) + 1)]
    return keys


def _damage_rows_in_place(path: Path, keys: list[str]) -> None:
    """Spoil these sales' keys byte for byte (the record still parses, the key is no key), and an
    index, so that SQLite finds the journal damaged."""
    data = path.read_bytes()
    for key in keys:
        assert key.encode() in data
        data = data.replace(key.encode(), b"!" + key.encode()[1:])
    path.write_bytes(data)
    _damage_an_index(path)


def test_recover_names_the_sales_it_could_not_salvage_and_sums_the_money_by_state(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    path = state / "journal.sqlite3"
    plan = [
        ("done", 250), ("done", 250), ("undispensed", 120), ("pending", 250), ("declined", 250),
        ("done", 300), ("offline", 120), ("held", 120), ("offline", 120), ("rejected", 300),
        ("done", 250), ("undispensed", 120), ("declined", 250), ("pending", 250), ("done", 250),
        ("done", 250),
    ]  # fmt: skip
    keys = _one_sale_per_page(path, plan)
    _damage_rows_in_place(path, [keys[6], keys[8]])  # ids 7 and 9: offline, pending, 1,20 € each

    proc = taptill("recover", "--config", str(config), check=False)

    assert proc.returncode == 0, proc.stderr
    assert set(sales_by_key(path)) == set(keys) - {keys[6], keys[8]}
    *listed, summary = proc.stdout.strip().splitlines()
    assert len(listed) == 14
    assert re.fullmatch(
        r"salvaged 14 sale\(s\) with sqlite3 \.(recover|clone): "
        + re.escape(
            "8 done 17,90 € (2 not dispensed 2,40 €), 3 pending 6,20 € (1 held 1,20 €), 1 rejected 3,00 €, "
            "2 declined; 2 sales could not be salvaged (2 came back damaged): ids 7, 9; "
            f"the damaged journal is kept at {_aside(state)[0]}"
        ),
        summary,
    ), summary


@pytest.mark.parametrize("evidence", ["the last row came back damaged", "the id sequence"])
def test_sales_lost_after_the_last_salvaged_one_are_named(tmp_path: Path, evidence: str) -> None:
    path = tmp_path / "journal.sqlite3"
    if evidence == "the id sequence":
        # A journal whose sales ids never repeat (AUTOINCREMENT): SQLite keeps the highest in
        # sqlite_sequence, so a lost last page still shows.
        path.parent.mkdir(exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        try:
            first, *rest = journal_module.MIGRATIONS
            assert first.count("id INTEGER PRIMARY KEY,") == 1
            for script in (
                first.replace("id INTEGER PRIMARY KEY,", "id INTEGER PRIMARY KEY AUTOINCREMENT,"),
                *rest,
            ):
                db.executescript(script)
            db.execute(f"PRAGMA user_version = {len(journal_module.MIGRATIONS)}")
        finally:
            db.close()
    keys = _one_sale_per_page(path, [("pending", 250)] * 12)
    if evidence == "the id sequence":
        overwrite_pages(path, [sales_leaves(path)[-1].page])
        assert quick_check(path) != "ok"
    else:
        _damage_rows_in_place(path, [keys[-1]])

    result = salvage_in_place(path)

    assert [s.idempotency_key for s in result.sales] == keys[:-1]
    damaged = " (1 came back damaged)" if evidence == "the last row came back damaged" else ""
    assert result.lost_line() == f"1 sale could not be salvaged{damaged}: id 12"
    assert f"; 1 sale could not be salvaged{damaged}: id 12" in result.summary()


def test_a_sale_lost_on_the_last_page_is_named_from_an_index(tmp_path: Path) -> None:
    """The journal's sales table keeps no id sequence: a lost last page leaves no gap among the salvaged
    ids, but every index entry carries its row's id, so the loss is still named (a user's finding: a
    pending offline sale vanished from the end without a word)."""
    path = tmp_path / "journal.sqlite3"
    keys = _one_sale_per_page(path, [("pending", 250)] * 12)
    overwrite_pages(path, [sales_leaves(path)[-1].page])
    assert quick_check(path) != "ok"

    result = salvage_in_place(path)

    assert [s.idempotency_key for s in result.sales] == keys[:-1]
    assert result.lost_line() == "1 sale could not be salvaged: id 12"


def _sale(journal: Journal, uid: str = MAX) -> str:
    record = journal.record_sale(
        token_id=uid, products=["espresso"], amount_cents=-250, description="Kaffee", tag=None, offline=True
    )
    return record.idempotency_key


def test_a_merge_brings_the_journals_pending_sales_up_to_date_and_never_back(tmp_path: Path) -> None:
    # An older journal put back under a running terminal: its copy, merged at the next start, has some
    # of the same sales further along. Left pending, a booked one would be sent, and charged, again.
    path = tmp_path / "state" / "journal.sqlite3"
    newer = tmp_path / "newer.sqlite3"
    journal = Journal.open(path)
    booked, sent, unsent, settled_here = (_sale(journal) for _ in range(4))
    journal.mark_done(journal.sale_by_key(settled_here).id, 1000)  # type: ignore[union-attr]
    journal.copy_to(newer)  # the copy: done, maybe sent, pending, and one done here pending there
    copy = Journal.open(newer)
    copy.mark_done(copy.sale_by_key(booked).id, 1750)  # type: ignore[union-attr]
    copy.mark_attempt(copy.sale_by_key(sent).id, 2000)  # type: ignore[union-attr]
    copy.execute("UPDATE sales SET state = 'pending' WHERE idempotency_key = ?", (settled_here,))
    later = _sale(copy, ERIKA)
    copy.close()
    journal.close()

    result = salvage_into(newer, path)
    assert [s.idempotency_key for s in result.sales] == [later]
    assert (result.already_there, result.brought_forward) == (4, 2)
    assert "4 already in the journal (2 brought up to date from it)" in result.summary()
    rows = sales_by_key(path)
    assert (rows[booked]["state"], rows[booked]["balance_after"]) == ("done", 1750)
    assert (rows[sent]["state"], rows[sent]["maybe_sent"], rows[sent]["attempts"]) == ("pending", 1, 1)
    assert (rows[unsent]["state"], rows[unsent]["maybe_sent"]) == ("pending", 0)
    assert rows[settled_here]["state"] == "done", "a settled sale never goes back to pending"
