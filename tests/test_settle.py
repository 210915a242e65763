"""``taptill settle``: a person resolves a sale held for reconciliation, and the outbox acts on it."""

from __future__ import annotations

from pathlib import Path

from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal
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


def _held_sale(config: Path, flavour: str) -> str:
    journal = Journal.open(config.parent / "state" / "journal.sqlite3")
    try:
        sale = journal.record_sale(
            token_id=MAX,
            products=[espresso(flavour)],
            amount_cents=-250,
            description="Kaffee",
            tag=None,
            offline=False,
            balance_before=2000,
            attempting=True,
        )
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
    assert again.returncode == 1 and "no held sale" in again.stderr
    assert wallet_server.transactions() == []
