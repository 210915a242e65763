"""The ready2order mirror draining a backlog: invoices a minute against the configured rate, nothing lost.

A backlog of booked sales is journaled (in memory, as the outbox's drain is measured: ``bench_dir``) with
their invoice records, then the real runtime delivers them to the emulator over HTTP. The emulator allows
a tenth more than the configured rate, counted over one second instead of a minute, so any burst beyond
the configured rate (searches included) is answered 429 and shows. Done again with answers lost after
the invoice was created: each is searched for, never sent twice, and the searches count against the rate.

At a real venue ``requests_per_minute`` is about 20 (one terminal's share of the account's 60): the drain
then takes ``backlog / 20`` minutes; the figure here shows the mirror keeps up with whatever rate is set.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from typing import Any

from terminal.bench.config import bench_dir
from terminal.emulator.faults import FaultKind
from terminal.emulator.ready2order import Ready2OrderEmulator
from terminal.journal import Journal
from terminal.model import Product
from terminal.outbox.table import rows
from terminal.ready2order.config import ProductMapping, Ready2OrderConfig
from terminal.ready2order.runtime import Ready2OrderRuntime
from terminal.service.secret import Secret

DRAIN_TIMEOUT_S = 240.0
ESPRESSO = Product("espresso", "Espresso", 250)
HEADROOM = 1.1  # the emulator's limit over the configured rate
REAL_SHARE_PER_MIN = 20


def measure_r2o_drain(
    n: int = 1000, requests_per_minute: int = 3000, lost_share: float = 0.0
) -> dict[str, Any]:
    """Drain ``n`` invoice records at ``requests_per_minute``; ``lost_share`` of the creates lose their
    answer after the invoice was made. Raises RuntimeError when an invoice is missing or doubled."""
    per_s = requests_per_minute / 60.0
    workdir = bench_dir("taptill-bench-r2o-", memory=True)
    try:
        with Ready2OrderEmulator(rate_limit=math.ceil(per_s * HEADROOM), rate_window_s=1.0, seed=3) as emu:
            if lost_share:
                emu.faults.inject(FaultKind.DROP_AFTER, probability=lost_share, route="invoice_create")
            journal = Journal.open(workdir / "journal.sqlite3")
            try:
                cfg = Ready2OrderConfig(
                    account_token_file=None,
                    payment_method_id=3,
                    user_id=5678,
                    base_url=emu.base_url,
                    requests_per_minute=requests_per_minute,
                    timeout_s=1.0,
                    products={"espresso": ProductMapping(111, 2)},
                )
                runtime = Ready2OrderRuntime(
                    cfg, journal, Secret(emu.account_token), terminal="bench", catalog=(ESPRESSO,)
                )
                refs = []
                for i in range(n):
                    sale = journal.record_sale(
                        token_id=f"04B0{i:010X}",
                        products=["espresso"],
                        amount_cents=-250,
                        description="bench",
                        tag=None,
                        offline=False,
                    )
                    journal.mark_done(sale.id, None, runtime.records_for(sale))
                    refs.append(sale.idempotency_key)
                took = asyncio.run(_drain(runtime, journal))
            finally:
                journal.close()
            invoices = emu.invoices()
            stats = emu.stats()
        made = [i["invoice_externalReferenceNumber"] for i in invoices]
        if sorted(made) != sorted(refs):
            raise RuntimeError(f"{len(made)} invoices for {n} sales ({len(set(made))} distinct references)")
        requests = sum(stats["requests_by_route"].values())
        return {
            "backlog": n,
            "invoices": len(invoices),
            "allowed_per_min": requests_per_minute,
            "invoices_per_min": round(n / took * 60, 1),
            "requests_per_min": round(requests / took * 60, 1),
            "searches": stats["requests_by_route"].get("invoice_search", 0),
            "lost_answers": stats["faults"].get("drop_after", 0),
            "rate_limited": stats["rate_limited"],
            "seconds": round(took, 2),
            "minutes_at_20_per_min": round(n / REAL_SHARE_PER_MIN, 1),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _drain(runtime: Ready2OrderRuntime, journal: Journal) -> float:
    def waiting() -> int:
        return int(journal.query("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")[0][0])

    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.ensure_future(runtime.run(stop))
    try:
        deadline = start + DRAIN_TIMEOUT_S
        while waiting():
            if time.perf_counter() > deadline or task.done():
                held = [r.reason for r in rows(journal, "ready2order", ("pending",))][:3]
                raise RuntimeError(f"the backlog did not drain: {waiting()} records left ({held})")
            await asyncio.sleep(0.01)
        return time.perf_counter() - start
    finally:
        stop.set()
        await asyncio.wait_for(task, 10.0)
