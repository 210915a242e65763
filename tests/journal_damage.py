"""Test rig: journals with sales in every state, and damage to chosen pages, to measure a salvage exactly."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from terminal.journal import Journal
from terminal.model import DeclineReason, ProductId

PAGE_SIZE = 4096  # SQLite's default, which the journal uses


def fill_journal(path: Path, count: int, token: str, product: ProductId = "espresso") -> None:
    """``count`` sales cycling through every state the journal knows, a Partybroker report for each done
    sale, a remembered card and a cached entry; checkpointed, so everything is in the main file."""
    journal = Journal.open(path)
    try:
        journal.remember_card(token, 2000, now=1000.0)
        journal.deny_card("04BADC0FFEE000", "unknown_card")
        journal.cache_put("terminal_info", {"products": [{"id": str(product), "price": 250}]})
        for i in range(count):
            kind = i % 6
            if kind == 5:
                journal.record_decline(
                    token_id=token,
                    products=[product],
                    amount_cents=-250,
                    description="Kaffee",
                    reason=DeclineReason.INSUFFICIENT_BALANCE,
                )
                continue
            sale = journal.record_sale(
                token_id=token,
                products=[product],
                amount_cents=-250,
                description="Kaffee",
                tag="coffee",
                offline=kind == 1,
                balance_before=2000 - i if kind in (2, 3) else None,
                attempting=kind in (2, 3),
                attempted_at=1_700_000_000.0 + i,
            )
            if kind == 0:
                journal.mark_done(sale.id, 1750)
                journal.execute(
                    "INSERT INTO outbox (destination, ref, sale_id, payload, state, created_at, updated_at)"
                    " VALUES ('partybroker', ?, ?, ?, 'done', ?, ?)",
                    (
                        f"{sale.idempotency_key}/espresso",
                        sale.id,
                        '{"drink_key":"espresso","quantity":1}',
                        sale.created_at,
                        sale.created_at,
                    ),
                )
            elif kind == 3:
                journal.hold(sale.id, "unclear whether booked")
            elif kind == 4:
                journal.mark_rejected(sale.id, "bad_product: 400")
        journal.query("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        journal.close()


def sales_by_key(path: Path) -> dict[str, dict[str, Any]]:
    """Every column of every sale but its id (a salvaged sale may get a new one), by idempotency key."""
    db = sqlite3.connect(path)
    try:
        cur = db.execute("SELECT * FROM sales ORDER BY id")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur]
    finally:
        db.close()
    return {row["idempotency_key"]: {k: v for k, v in row.items() if k != "id"} for row in rows}


@dataclass(frozen=True)
class Leaf:
    page: int  # page number, 1-based
    sale_ids: tuple[int, ...]


def sales_leaves(path: Path) -> list[Leaf]:
    """The sales table's leaf pages in key order and the sale ids on each, from SQLite's dbstat table
    (rowids are dense from 1, so the n-th leaf holds the next ``ncell`` ids)."""
    db = sqlite3.connect(path)
    try:
        leaves = db.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = 'sales' AND pagetype = 'leaf' ORDER BY path"
        ).fetchall()
        ids = [int(r[0]) for r in db.execute("SELECT id FROM sales ORDER BY id")]
    finally:
        db.close()
    assert ids == list(range(1, len(ids) + 1)), "the journal never deletes a sale"
    out, start = [], 0
    for page, cells in leaves:
        out.append(Leaf(int(page), tuple(ids[start : start + cells])))
        start += cells
    assert start == len(ids)
    return out


def index_root(path: Path, index: str) -> int:
    """The root page of ``index``: overwriting it damages the journal and loses no row of any table."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)).fetchone()[0])
    finally:
        db.close()


def overwrite_pages(path: Path, pages: list[int]) -> None:
    """Replace whole pages with noise, as a failing SD card or a stray write would; in place, so a terminal
    that has the journal open never sees it short or empty."""
    noise = bytes((i * 131 + 7) % 256 for i in range(PAGE_SIZE))
    with path.open("r+b") as f:
        for page in pages:
            f.seek((page - 1) * PAGE_SIZE)
            f.write(noise)


def damage_in_use(path: Path, table_or_index: str) -> None:
    """What a failing SD card does under a running terminal: the journal is checkpointed (its pages are in
    the main file, as after any long night) and the root page of ``table_or_index`` reads back as noise.
    The terminal's connection reads it anew at its next transaction (the checkpoint changed the -wal)."""
    db = sqlite3.connect(path)
    try:
        for _ in range(100):  # the terminal may be in a write of its own (a status record) just then
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy == 0:
                break
            time.sleep(0.05)
        assert busy == 0, "the terminal held the journal for 5 s: nothing was checkpointed"
    finally:
        db.close()
    overwrite_pages(path, [index_root(path, table_or_index)])


def quick_check(path: Path) -> str:
    """'ok', or what SQLite's quick_check (or opening the file) says is wrong; creates no -wal/-shm."""
    try:
        db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            return str(db.execute("PRAGMA quick_check").fetchone()[0])
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
