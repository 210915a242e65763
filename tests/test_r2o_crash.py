"""Crash tests of the ready2order mirror: ``taptill run`` SIGKILLed at every step of a mirror (after the
invoice record is journaled with the sale, after ``begin``, with the request in flight, after the answer
before it is recorded, after a search), with faults on; restarted, it leaves exactly one invoice per
booked sale, none missing, and the emulator never answered 429 at the configured rate."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.ready2order import Ready2OrderEmulator
from terminal.emulator.wallet import WalletEmulator
from tests.r2o_lab import invoice_records, live_invoices, r2o_section, total
from tests.terminal_lab import TerminalProcess, journal_lines, settled, wait_for, write_config

pytestmark = [pytest.mark.crash, pytest.mark.ready2order]

CARD = "04F00DF00DF00D"
RATE = 600  # a minute's requests this terminal may send (10 a second)


@pytest.fixture
def r2o() -> Iterator[Ready2OrderEmulator]:
    # the account allows a little more than this terminal's share, per second rather than per minute, so a
    # burst beyond the configured rate would be answered 429 (and block the rest of the test)
    with Ready2OrderEmulator(rate_limit=11, rate_window_s=1.0) as emulator:
        yield emulator


@pytest.fixture
def wallet() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc") as emulator:
        emulator.add_wallet(CARD, 100_000)
        yield emulator


def _config(tmp_path: Path, wallet: WalletEmulator, r2o: Ready2OrderEmulator) -> Path:
    return write_config(tmp_path, wallet, extra=r2o_section(tmp_path, r2o, rate=RATE, timeout_s=1.0))


def _booked(config: Path) -> list[str]:
    return [s["idempotency_key"] for s in journal_lines(config) if s["state"] == "done"]


def _mirrored(config: Path, count: int) -> bool:
    records = invoice_records(config)
    return len(records) >= count and all(r["state"] == "done" for r in records)


def _restart_and_mirror(config: Path, count: int, *, booked_only: bool = False) -> None:
    """Start again and wait until ``count`` taps are settled and mirrored (``booked_only``: as many as
    were booked, for a run whose kills may land during a tap's debit)."""
    term = TerminalProcess(config)

    def mirrored() -> bool:
        return settled(config, count) and _mirrored(config, len(_booked(config)) if booked_only else count)

    try:
        wait_for(mirrored, timeout=30, what="the mirror")
    finally:
        assert term.stop() == 0


def _assert_one_invoice_per_booked_sale(config: Path, r2o: Ready2OrderEmulator, count: int) -> None:
    booked = _booked(config)
    assert len(booked) == count
    invoices = live_invoices(r2o)
    assert sorted(i["invoice_externalReferenceNumber"] for i in invoices) == sorted(booked)
    assert all(total(i) == Decimal("2.50") and i["invoice_testMode"] is False for i in invoices)
    assert len(r2o.invoices()) == count, "no invoice was cancelled or doubled"
    records = invoice_records(config)
    assert [r["state"] for r in records] == ["done"] * count
    assert {r["payload"]["invoice_id"] for r in records} == {i["invoice_id"] for i in invoices}
    assert r2o.rate.refused == 0, "the emulator answered 429 at the configured rate"


@pytest.mark.parametrize(
    ("point", "created"),
    [
        ("wallet.outbox_after_apply", 0),  # the invoice record committed with the sale's done
        ("ready2order.outbox_after_begin", 0),  # noted as maybe sent, nothing sent yet
        ("ready2order.outbox_after_attempt", 1),  # created; the answer never recorded
        ("ready2order.outbox_after_apply", 1),
    ],
)
def test_kill_at_a_step_of_the_mirror(
    tmp_path: Path, wallet: WalletEmulator, r2o: Ready2OrderEmulator, point: str, created: int
) -> None:
    config = _config(tmp_path, wallet, r2o)
    term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": point})
    term.tap(CARD)
    assert term.wait_dead() == -9, "the crash point did not fire"
    assert len(r2o.invoices()) == created
    (record,) = invoice_records(config)  # journaled before anything was sent, whatever came after
    assert record["ref"] == journal_lines(config)[0]["idempotency_key"]
    _restart_and_mirror(config, 1)
    _assert_one_invoice_per_booked_sale(config, r2o, 1)
    searched = r2o.stats()["requests_by_route"].get("invoice_search", 0)
    assert (searched >= 1) == (
        point != "wallet.outbox_after_apply" and point != "ready2order.outbox_after_apply"
    )


@pytest.mark.parametrize("applied", [True, False], ids=["server-applied", "server-never-applied"])
def test_kill_while_the_create_is_in_flight(
    tmp_path: Path, wallet: WalletEmulator, r2o: Ready2OrderEmulator, applied: bool
) -> None:
    config = _config(tmp_path, wallet, r2o)
    if applied:  # the server sits on the request, then creates the invoice after the terminal is gone
        r2o.faults.inject(FaultKind.LATENCY, ms=1500, route="invoice_create", times=1)
    else:
        r2o.faults.inject(FaultKind.HANG, route="invoice_create", times=1, cap_s=30)
    term = TerminalProcess(config)
    term.tap(CARD)
    wait_for(lambda: r2o.stats()["requests_by_route"].get("invoice_create", 0) >= 1, what="the create")
    term.kill()
    if applied:
        wait_for(lambda: len(r2o.invoices()) == 1, what="the server to create the invoice")
    else:
        r2o.faults.clear()  # the hanging request is dropped: nothing created
    assert invoice_records(config)[0]["maybe_sent"] == 1
    _restart_and_mirror(config, 1)
    _assert_one_invoice_per_booked_sale(config, r2o, 1)
    assert r2o.stats()["requests_by_route"]["invoice_create"] == (1 if applied else 2)


def test_kill_after_a_search_before_it_is_recorded(
    tmp_path: Path, wallet: WalletEmulator, r2o: Ready2OrderEmulator
) -> None:
    config = _config(tmp_path, wallet, r2o)
    r2o.faults.inject(FaultKind.DROP_AFTER, route="invoice_create", times=1)
    term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": "ready2order.after_search"})
    term.tap(CARD)
    assert term.wait_dead(timeout=20) == -9
    assert r2o.stats()["requests_by_route"]["invoice_search"] >= 1 and len(r2o.invoices()) == 1
    _restart_and_mirror(config, 1)
    _assert_one_invoice_per_booked_sale(config, r2o, 1)


def test_faults_and_kills_through_a_run_of_sales(
    tmp_path: Path, wallet: WalletEmulator, r2o: Ready2OrderEmulator
) -> None:
    """Drops and errors after and before creating, failed searches, and a kill at another step of the
    mirror every few sales: still one invoice per booked sale."""
    r2o.faults.reseed(13)
    for kind, p in (
        (FaultKind.DROP_AFTER, 0.25),
        (FaultKind.ERROR500_AFTER, 0.15),
        (FaultKind.DROP_BEFORE, 0.15),
        (FaultKind.GARBAGE_TRUNCATED, 0.1),
    ):
        r2o.faults.inject(kind, probability=p, route="invoice_create")
    r2o.faults.inject(FaultKind.ERROR500_BEFORE, probability=0.2, route="invoice_search")
    config = _config(tmp_path, wallet, r2o)
    points = [
        "ready2order.outbox_after_attempt:2",
        "ready2order.outbox_after_begin:3",
        "ready2order.after_search",
    ]
    sold = 0
    for point in points:
        term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": point})
        for _ in range(10):
            term.tap(CARD)
            sold += 1
            _wait_sold_or_dead(config, term, sold)
            if not term.alive():
                break
        assert term.wait_dead(timeout=30) == -9, f"{point} never fired"
        # A kill in the mirror can land during the next tap's balance lookup, before its sale is
        # journaled: that tap sold nothing (nothing was sent), so the sales are counted, not the taps.
        sold = len(journal_lines(config))
    # The mirror works beside the taps: a kill in it can land while the next tap's debit is under way.
    # That sale is settled after the restart, booked or not (never approved: on the refund list if
    # booked); every booked sale, and only those, gets its invoice.
    _restart_and_mirror(config, sold, booked_only=True)
    booked = _booked(config)
    assert len(booked) >= sold - len(points), "more than one tap per kill went unbooked"
    assert sorted(booked) == sorted(str(t.idempotency_key) for t in wallet.transactions())
    _assert_one_invoice_per_booked_sale(config, r2o, len(booked))
    faults = r2o.faults.applied()
    assert faults.get("drop_after", 0) + faults.get("error500_after", 0) >= 2, faults
    assert r2o.stats()["requests_by_route"]["invoice_search"] >= 2


def _wait_sold_or_dead(config: Path, term: TerminalProcess, count: int) -> None:
    wait_for(lambda: settled(config, count) or not term.alive(), what="the sale")
