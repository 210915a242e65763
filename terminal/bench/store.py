"""Journal throughput: durable sale writes against bare SQLite, and draining a backlog to the emulator."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from terminal.bench.config import BIG_BALANCE_CENTS, bench_dir, espresso_id
from terminal.emulator.wallet import Flavour, WalletEmulator
from terminal.journal import MIGRATIONS, Journal, new_idempotency_key
from terminal.service.secret import Secret
from terminal.wallet.client import WalletClient
from terminal.wallet.health import ServerHealth
from terminal.wallet.sale_sender import SaleSender

# The two writers alternate in rounds of 20 writes, which of the two goes first alternating, and make the
# same commits with the same sync. Their rate is wall time (each writer's median round), but the comparison
# (enqueue_vs_raw) is of CPU time, the process's own user and system time, the writes' syscalls included:
# how long a commit waits for the disk is the disk's and its neighbours' doing, not the code's. Beside the
# suite, wall-time comparisons swung: a median of the rounds' ratios 0.44-1.0 (with CPU hogs and an fsync
# loop), the best rounds' 0.415 in one run of three; the CPU-time ratio stayed within 0.59-0.64 there.
# It also bounds the wall ratio from below: with a disk wait d common to both, (raw + d) / (journal + d)
# is at least raw / journal.
ROUNDS = 50
DRAIN_TIMEOUT_S = 120.0
SALES_PER_CARD = 4  # the default offline limit of 10,00 € allows about four espressos per card


class Took(NamedTuple):
    """A round's wall time and the process's CPU time in it (user and system), seconds."""

    wall_s: float
    cpu_s: float


def _journal_writes(journal: Journal, count: int) -> Took:
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        journal.record_sale(
            token_id=f"04{i % 500:012X}",
            products=["espresso"],
            amount_cents=-250,
            description="Kaffee (bench)",
            tag="coffee",
            offline=False,
            balance_before=10_000,
            attempting=True,
        )
    return Took(time.perf_counter() - start, time.process_time() - cpu)


def _raw_connection(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(MIGRATIONS[0])  # the journal's own table and indexes: the only difference is the code
    return conn


def _raw_writes(conn: sqlite3.Connection, count: int) -> Took:
    sql = (
        "INSERT INTO sales (idempotency_key, token_id, products, amount_cents, description, tag, state,"
        " reason, offline, balance_before, maybe_sent, attempts, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, 'pending', '', 0, ?, 1, 1, ?, ?)"
    )
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            sql,
            (
                new_idempotency_key(),
                f"04{i % 500:012X}",
                '["espresso"]',
                -250,
                "Kaffee (bench)",
                "coffee",
                10_000,
                "2024-01-01T00:00:00.000+00:00",
                "2024-01-01T00:00:00.000+00:00",
            ),
        )
        conn.execute("COMMIT")
    return Took(time.perf_counter() - start, time.process_time() - cpu)


def measure_enqueue(n: int = 1000) -> dict[str, float]:
    """Journal.record_sale and a bare INSERT+COMMIT (WAL, synchronous=FULL), ``n`` each, on one disk, in
    alternating rounds: each one's writes per second (its median round, wall time) and ``enqueue_vs_raw``,
    bare SQLite's CPU time over the journal's for the same writes (1.0: the journal's code costs nothing)."""
    workdir = Path(tempfile.mkdtemp(prefix="taptill-bench-sqlite-"))
    try:
        journal = Journal.open(workdir / "journal.sqlite")
        raw = _raw_connection(workdir / "raw.sqlite")
        rounds = max(1, min(ROUNDS, n))
        per_round = max(1, n // rounds)
        journal_s: list[Took] = []
        raw_s: list[Took] = []
        try:
            for i in range(rounds):
                if i % 2:
                    raw_s.append(_raw_writes(raw, per_round))
                    journal_s.append(_journal_writes(journal, per_round))
                else:
                    journal_s.append(_journal_writes(journal, per_round))
                    raw_s.append(_raw_writes(raw, per_round))
        finally:
            journal.close()
            raw.close()
        return {
            "enqueue_per_s": round(per_round / statistics.median(t.wall_s for t in journal_s), 1),
            "raw_sqlite_per_s": round(per_round / statistics.median(t.wall_s for t in raw_s), 1),
            "enqueue_vs_raw": round(sum(t.cpu_s for t in raw_s) / sum(t.cpu_s for t in journal_s), 3),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _card(i: int) -> str:
    return f"04D0{i:010X}"


def measure_drain(n: int = 2000, flavour: Flavour = "doc", dedupes: bool = True) -> float:
    """Sales per second while SaleSender.run delivers an offline backlog of ``n`` sales to the emulator.

    The journal lives in memory (``bench_dir``): the figure is the outbox's own rate. On a disk each
    delivered sale pays its durable writes, whose cost ``enqueue_per_s`` and ``raw_sqlite_per_s`` show.
    """
    cards = max(1, n // SALES_PER_CARD)
    workdir = bench_dir("taptill-bench-drain-", memory=True)
    try:
        wallets = {_card(i): BIG_BALANCE_CENTS for i in range(cards)}
        with WalletEmulator(flavour, wallets=wallets) as emulator:
            journal = Journal.open(workdir / "journal.sqlite")
            try:
                product = espresso_id(emulator)
                for i in range(n):
                    journal.record_sale(
                        token_id=_card(i % cards),
                        products=[product],
                        amount_cents=-250,
                        description="Kaffee (bench)",
                        tag="coffee",
                        offline=True,
                        reason="offline: bench backlog",
                    )
                took = asyncio.run(_drain(journal, emulator, dedupes))
            finally:
                journal.close()
            booked = len(emulator.transactions())
            if booked != n:
                raise RuntimeError(f"the drain booked {booked} transactions on the emulator, expected {n}")
        return round(n / took, 1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _drain(journal: Journal, emulator: WalletEmulator, dedupes: bool) -> float:
    client = WalletClient(emulator.base_url, Secret(emulator.api_token), timeout_s=5.0)
    sender = SaleSender(journal, client, ServerHealth(), dedupes=dedupes, probe_interval_s=0.2)
    stop = asyncio.Event()
    try:
        start = time.perf_counter()
        task = asyncio.ensure_future(sender.run(stop))
        deadline = start + DRAIN_TIMEOUT_S
        while journal.unconfirmed_count() > 0:
            if time.perf_counter() > deadline or task.done():
                raise RuntimeError(
                    f"the backlog did not drain: {journal.unconfirmed_count()} sales still pending"
                )
            await asyncio.sleep(0.01)
        took = time.perf_counter() - start
        stop.set()
        sender.wake()
        await asyncio.wait_for(task, 10.0)
        return took
    finally:
        await client.aclose()
