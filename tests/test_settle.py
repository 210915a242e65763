"""``taptill settle``: a person resolves a sale held for reconciliation, and the outbox acts on it."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal, SaleRecord
from tests.terminal_lab import (
    MAX,
    TerminalProcess,
    espresso,
    journal_lines,
    settled,
    taptill,
    wait_for,
    write_config,
)


def _espresso_sale(journal: Journal, flavour: str, **fields: Any) -> SaleRecord:
    """An espresso (2,50 €) sold online to MAX, journaled with ``fields`` (balance_before, attempting, …)."""
    return journal.record_sale(
        token_id=MAX,
        products=[espresso(flavour)],
        amount_cents=-250,
        description="Kaffee",
        tag=None,
        offline=False,
        **fields,
    )


def _held_sale(config: Path, flavour: str) -> str:
    journal = Journal.open(config.parent / "state" / "journal.sqlite3")
    try:
        sale = _espresso_sale(journal, flavour, balance_before=2000, attempting=True)
        journal.hold(sale.id, "unclear whether booked: balance 1500, before the attempt 2000")
        return sale.idempotency_key
    finally:
        journal.close()


def test_queue_shows_the_held_sale_and_settle_not_booked_sends_it_again(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    config = write_config(tmp_path, wallet_server)
    key = _held_sale(config, wallet_server.flavour)
    queue = taptill("queue", "--config", str(config)).stdout
    assert "HELD" in queue and key in queue and "unclear whether booked" in queue
    assert (
        "held: 1, the terminal cannot tell whether the wallet booked them: check each card's wallet in "
        "pretix, then taptill settle KEY --booked (or --not-booked)"
    ) in queue
    term = TerminalProcess(config)
    try:
        assert journal_lines(config)[0]["state"] == "pending"  # held: never retried on its own
        assert wallet_server.transactions() == []
        out = taptill("settle", key, "--not-booked", "--config", str(config)).stdout
        assert "sent again" in out
        wait_for(lambda: settled(config, 1), timeout=20, what="the settled sale to be delivered")
    finally:
        term.stop()
    assert [t.idempotency_key for t in wallet_server.transactions()] == [key]


def test_settle_booked_marks_it_done_without_sending(tmp_path: Path, wallet_server: WalletEmulator) -> None:
    config = write_config(tmp_path, wallet_server)
    key = _held_sale(config, wallet_server.flavour)
    taptill("settle", key, "--booked", "--config", str(config))
    (sale,) = journal_lines(config)
    assert sale["state"] == "done" and "settled by hand" in sale["reason"]
    again = taptill("settle", key, "--booked", "--config", str(config), check=False)
    assert again.returncode == 1 and again.stderr == (
        f"taptill: sale {key} is not held (it is done); only held ones are settled: taptill queue\n"
    )
    assert wallet_server.transactions() == []


def _charged_never_served(config: Path, flavour: str) -> tuple[str, str]:
    """As the restarted terminal leaves them: a sale the server booked while the terminal was killed
    before telling the guest (reconciled with a retry note first), and one whose relay pulse was cut."""
    journal = Journal.open(config.parent / "state" / "journal.sqlite3")
    try:
        keys = []
        for approved in (False, True):
            sale = _espresso_sale(
                journal, flavour, balance_before=2000, attempting=True, dispense=True, approved=approved
            )
            journal.schedule_retry(sale.id, 0.0, "waiting before reconciling")
            journal.mark_done(sale.id, 1750)
            keys.append(sale.idempotency_key)
        return keys[0], keys[1]
    finally:
        journal.close()


def _doctor_line(config: Path, name: str) -> str:
    doctor = taptill("doctor", "--config", str(config), check=False).stdout
    (line,) = [line for line in doctor.splitlines() if line.split()[1:2] == [name]]
    return line


def test_a_guest_charged_but_never_served_is_listed_to_refund_until_settled(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    config = write_config(tmp_path, wallet_server)
    unapproved, undispensed = _charged_never_served(config, wallet_server.flavour)

    queue = taptill("queue", "--config", str(config)).stdout
    assert "to refund: 2 (5,00 €), charged but never served: refund the guest in pretix" in queue
    assert "taptill settle --refunded KEY (or --served KEY)" in queue
    lines = [line for line in queue.splitlines() if line.startswith("CHARGED")]
    assert [(line.split(" 20")[0], line.split(" key ")[1].split()[0]) for line in lines] == [
        ("CHARGED, NEVER APPROVED", unapproved),
        ("CHARGED, NOT DISPENSED", undispensed),
    ]
    assert "card " + MAX in lines[0] and "2,50 €" in lines[0]
    assert "waiting before reconciling" not in queue, "reconciled: the retry note is stale"
    status = taptill("status", "--config", str(config)).stdout
    assert "sales booked:    2: 0 served, 2 to refund, 0 refunded\n" in status
    assert "to refund:       2 (5,00 €), charged but never served: taptill queue lists them" in status
    as_json = json.loads(taptill("status", "--json", "--config", str(config)).stdout)
    assert (as_json["done"], as_json["to_refund"], as_json["to_refund_cents"]) == (2, 2, 500)
    queue_check = _doctor_line(config, "queue")
    assert queue_check.startswith("WARN queue ") and "2 to refund (5,00 €)" in queue_check
    assert "taptill settle --refunded KEY (or --served KEY)" in queue_check
    assert [s["reason"] for s in journal_lines(config)] == ["", ""]

    booked = taptill("settle", unapproved, "--booked", "--config", str(config), check=False)
    assert booked.returncode == 1
    assert booked.stderr.splitlines() == [
        f"taptill: sale {unapproved} is booked already, but its guest was not served; once they are "
        f"refunded or served by hand: taptill settle --refunded {unapproved} (or --served {unapproved})"
    ]
    term = TerminalProcess(config)  # settle writes while the terminal runs
    try:
        refunded = taptill("settle", unapproved, "--refunded", "--config", str(config))
        served = taptill("settle", undispensed, "--served", "--config", str(config))
    finally:
        assert term.stop() == 0
    assert f"settled: sale {unapproved} recorded as refunded by " in refunded.stdout
    assert f"settled: sale {undispensed} recorded as served by " in served.stdout

    sales = journal_lines(config)
    assert [(s["resolved"]["how"], s["to_refund"]) for s in sales] == [("refunded", False), ("served", False)]
    assert all(s["resolved"]["at"] and s["resolved"]["by"] for s in sales)
    queue = taptill("queue", "--config", str(config)).stdout
    assert queue == "queue empty: every sale is confirmed and served\n"
    status = taptill("status", "--config", str(config)).stdout
    assert (
        "sales booked:    2: 1 served, 0 to refund, 1 refunded\n" in status
        and "to refund:       0 (0,00 €); 1 refunded; 1 served by hand" in status
    )
    assert _doctor_line(config, "queue").startswith("OK   queue ")
    again = taptill("settle", unapproved, "--served", "--config", str(config), check=False)
    assert again.returncode == 1 and len(again.stderr.splitlines()) == 1
    assert f"sale {unapproved} was closed already: refunded at " in again.stderr
    assert wallet_server.transactions() == []  # closing a sale sends nothing


def test_a_top_up_credited_but_never_confirmed_is_listed_in_its_own_words(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    """A kiosk killed mid-request: the wallet holds the credit, the operator never saw it confirmed and
    may have handed the cash back. Not a guest to refund: the operator checks the cash."""
    config = write_config(tmp_path, wallet_server)
    journal = Journal.open(config.parent / "state" / "journal.sqlite3")
    try:
        sale = journal.record_sale(
            token_id=MAX,
            products=["topup10"],
            amount_cents=1000,
            description="Kaffee",
            tag=None,
            offline=False,
            balance_before=2000,
            attempting=True,
            approved=False,
            operator="op1",
        )
        journal.mark_done(sale.id, 3000)
    finally:
        journal.close()
    queue = taptill("queue", "--config", str(config)).stdout
    (line,) = [line for line in queue.splitlines() if sale.idempotency_key in line]
    assert line.startswith("CREDITED, NEVER CONFIRMED"), queue
    assert "if the cash was not taken, take the credit back in pretix" in line, line
    assert "CHARGED" not in queue, queue


def test_settle_refunded_refuses_a_sale_that_is_not_to_refund(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    config = write_config(tmp_path, wallet_server)
    held = _held_sale(config, wallet_server.flavour)
    journal = Journal.open(config.parent / "state" / "journal.sqlite3")
    try:
        sale = _espresso_sale(journal, wallet_server.flavour, dispense=True)
        journal.mark_done(sale.id, 1750)
        journal.mark_dispensed(sale.idempotency_key)
    finally:
        journal.close()
    unknown = "t" + "x" * 24
    said = {
        held: f"sale {held} is not booked yet (held), so there is nothing to refund; settle it with "
        "--booked or --not-booked first",
        sale.idempotency_key: f"sale {sale.idempotency_key} is done and its guest was served: nothing to "
        "refund (taptill queue lists the sales to refund)",
        unknown: f"no sale with key {unknown}; taptill queue lists the sales to refund",
    }
    for key, line in said.items():
        proc = taptill("settle", key, "--refunded", "--config", str(config), check=False)
        assert (proc.returncode, proc.stderr.splitlines(), proc.stdout) == (1, [f"taptill: {line}"], "")
    assert [s["resolved"] for s in journal_lines(config)] == [None, None]


def test_settle_refunded_names_the_ready2order_invoice_to_cancel(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    from terminal.outbox.table import insert_statement, rows
    from terminal.ready2order.invoice_outbox import DESTINATION
    from terminal.ready2order.invoice_table import InvoiceTable, Receipt

    config = write_config(tmp_path, wallet_server)
    journal = Journal.open(config.parent / "state" / "journal.sqlite3")
    try:
        sale = _espresso_sale(journal, wallet_server.flavour, dispense=True)
        journal.mark_done(sale.id, 1750)  # booked, but the relay never finished: to refund
        journal.execute(*insert_statement(DESTINATION, sale.idempotency_key, {"items": []}, sale_id=sale.id))
        table = InvoiceTable(journal)
        table.done(rows(journal, DESTINATION), Receipt(4711, "RG2026/17", Decimal("2.50")), by_settling=False)
    finally:
        journal.close()
    out = taptill("settle", sale.idempotency_key, "--refunded", "--config", str(config)).stdout
    said = (
        f"ready2order: invoice RG2026/17 (reference {sale.idempotency_key}) still stands: cancel it (storno)"
    )
    assert said + " in ready2order\n" in out, out
    assert [s["resolved"]["how"] for s in journal_lines(config)] == ["refunded"]
