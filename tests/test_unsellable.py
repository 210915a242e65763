"""A product the server lists but cannot sell: every debit of it answers 500 and books nothing.

Real pretix lists items that are in no quota, and answers every POST containing one with an HTML 500
while GETs keep working. The terminal must not take the whole server for down, must not retry such a
sale forever, and must stop selling the product offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import (
    ERIKA,
    MAX,
    STRANGER,
    TerminalProcess,
    journal_lines,
    settled,
    taptill,
    wait_for,
    write_config,
)

LATTE = 3  # the real flavour's demo item 3, "Latte Macchiato", 3.50


@pytest.fixture
def no_quota_server() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("real", latency="real", unsellable=[LATTE]) as emulator:
        yield emulator


def _states(config: Path) -> list[tuple[str, str]]:
    return [(s["state"], s["reason"]) for s in journal_lines(config)]


def test_a_debit_answered_500_is_declined_unless_booked_and_the_product_no_longer_sold_offline(
    tmp_path: Path, no_quota_server: WalletEmulator
) -> None:
    """The server is done with a debit it answers 500: the balance read at once says nothing was booked,
    so the guest is declined (never served on a guess, never charged later); after three such answers in
    a row the product is not sold offline any more and online taps say it is unavailable."""
    server = no_quota_server
    config = write_config(tmp_path, server, products=[LATTE], display="console")
    term = TerminalProcess(config)
    try:
        term.tap(MAX)
        wait_for(lambda: settled(config, 1), what="the first sale")
        first = journal_lines(config)[0]
        assert first["state"] == "rejected" and first["approved"] is False, first
        assert "500" in first["reason"] and "booked nothing" in first["reason"], first
        # The server answered 500 to the debit but is up: the next card is decided online.
        term.tap(STRANGER)
        wait_for(lambda: len(journal_lines(config)) == 2, what="the unknown card")
        assert journal_lines(config)[1]["reason"] == "unknown_card"
        assert "wallet server unreachable" not in term.log(), term.log()
        for n in (3, 4):
            term.tap(MAX)
            wait_for(lambda n=n: settled(config, n), what=f"sale {n}")
        third = journal_lines(config)[3]
        assert third["state"] == "rejected" and third["reason"].startswith("bad_product"), third
        posts = server.stats()["requests_by_route"]["transaction"]
        assert posts == 3, f"{posts} debits were sent; one per declined tap was expected"
        assert "relay: 1 pulse(s)" not in term.log(), "a product the server did not book was dispensed"
        assert term.log().count("Please try again") >= 2 and "Product unavailable" in term.log(), term.log()

        # Offline, the product is not sold any more (the card's balance is known: it would be).
        server.faults.set_down(True)
        term.tap(MAX)
        wait_for(lambda: len(journal_lines(config)) == 5, what="the offline tap")
        offline = journal_lines(config)[4]
        assert offline["state"] == "declined" and offline["offline"] is True, offline
        assert "cannot book product Latte Macchiato (id 3)" in offline["reason"], offline

        # Online again: a debit answered 500 is declined as unavailable, and nothing is left to send.
        server.faults.set_down(False)
        wait_for(lambda: "wallet server reachable again" in term.log(), what="the terminal to come back")
        unavailable = term.log().count("Product unavailable")
        term.tap(MAX)
        wait_for(lambda: settled(config, 6), what="the online tap")
        sixth = journal_lines(config)[5]
        assert sixth["state"] == "rejected" and sixth["reason"].startswith("bad_product"), sixth
        wait_for(lambda: term.log().count("Product unavailable") > unavailable, what="the declined screen")
        server.set_unsellable([])  # the admin fixes the quota: no declined sale may be sent after it
        states = [s["state"] for s in journal_lines(config)]
        assert set(states) == {"rejected", "declined"}, states
    finally:
        assert term.stop() == 0
    assert "relay: 1 pulse(s)" not in term.log(), "a product the server did not book was dispensed"
    assert server.transactions() == [], "nothing may be booked"
    assert server.balance(MAX) == 2000

    queue = taptill("queue", "--rejected", "--config", str(config)).stdout
    # refused while the guest waited: declined taps, nothing owed (not money rejected after serving)
    assert queue.count("DECLINED AT THE TAP") == 4 and "REJECTED" not in queue, queue
    status = taptill("status", "--config", str(config)).stdout
    assert "NOT SELLING:     Latte Macchiato (id 3)" in status, status
    doctor = taptill("doctor", "--json", "--config", str(config), check=False)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert checks["products"]["status"] == "FAIL", checks["products"]
    assert "Latte Macchiato (id 3," in checks["products"]["detail"]
    assert "quota" in checks["products"]["detail"]


def test_a_booked_sale_of_the_product_makes_it_sellable_again(
    tmp_path: Path, no_quota_server: WalletEmulator
) -> None:
    """Once the item is put in a quota, the next online sale books it and the terminal sells it again."""
    server = no_quota_server
    config = write_config(tmp_path, server, products=[LATTE])
    term = TerminalProcess(config)
    try:
        for n in (1, 2, 3):
            term.tap(MAX)
            wait_for(lambda n=n: settled(config, n), what=f"declined tap {n}")
        assert "NOT SELLING" in taptill("status", "--config", str(config)).stdout
        server.set_unsellable([])  # the admin added the item to a quota
        term.tap(MAX)
        wait_for(lambda: len(journal_lines(config)) == 4 and journal_lines(config)[3]["state"] == "done")
    finally:
        assert term.stop() == 0
    assert [t.amount for t in server.transactions()] == [-350]
    assert "NOT SELLING" not in taptill("status", "--config", str(config)).stdout


def test_the_client_tells_an_error_answer_from_no_answer(no_quota_server: WalletEmulator) -> None:
    """An error status means the server is up and this request fails; no answer means it is down."""
    import asyncio

    from terminal.emulator.faults import FaultKind
    from terminal.service.secret import Secret
    from terminal.wallet.client import WalletClient
    from terminal.wallet.outcomes import Found, Unavailable

    async def ask() -> tuple[object, object, object, object]:
        client = WalletClient(no_quota_server.base_url, Secret(no_quota_server.api_token), timeout_s=2.0)
        try:
            refused = await client.transact(MAX, [LATTE], description="x", tag=None, idempotency_key="k" * 22)
            found = await client.wallet(MAX)
            # twice: a lookup whose connection dropped unanswered is asked once more
            no_quota_server.faults.inject(FaultKind.DROP_BEFORE, times=2)
            dropped = await client.wallet(MAX)
            no_quota_server.faults.inject(FaultKind.ERROR500_BEFORE, times=1)
            read_error = await client.wallet(MAX)
        finally:
            await client.aclose()
        return refused, found, dropped, read_error

    refused, found, dropped, read_error = asyncio.run(ask())
    assert isinstance(refused, Unavailable) and refused.status == 500 and refused.maybe_applied
    assert isinstance(found, Found) and found.wallet.balance_cents == 2000
    assert isinstance(dropped, Unavailable) and dropped.status is None
    assert isinstance(read_error, Unavailable) and read_error.status == 500


ESPRESSO = 1  # sold before: the server books it


def _select_config(tmp_path: Path, server: WalletEmulator) -> Path:
    extra = f"""
[select]
buttons = {{ b1 = {ESPRESSO}, b3 = {LATTE} }}
cancel_button = "cancel"
cart_timeout_s = 60
"""
    return write_config(tmp_path, server, products=[], mode="select", extra=extra)


def _press(config: Path, *buttons: str) -> None:
    for button in buttons:
        pressed = taptill("press", button, "--config", str(config), check=False)
        assert pressed.returncode == 0, (pressed.stdout, pressed.stderr)


def _checks(config: Path) -> dict[str, dict[str, str]]:
    doctor = taptill("doctor", "--json", "--config", str(config), check=False)
    return {c["name"]: c for c in json.loads(doctor.stdout)}


def test_an_offline_cart_with_a_product_in_no_quota_locks_out_neither_the_card_nor_its_other_product(
    tmp_path: Path, no_quota_server: WalletEmulator
) -> None:
    """Select mode. Espresso sold online; offline, a cart of Espresso and the no-quota Latte is accepted;
    back online the server answers it 500 every time and it is rejected (bad_product). Only the Latte is
    not sold offline any more; the card is not denied: the next offline Espresso is approved."""
    server = no_quota_server
    config = _select_config(tmp_path, server)
    term = TerminalProcess(config)
    try:
        _press(config, "b1")
        term.tap(MAX)
        wait_for(lambda: settled(config, 1), what="the online espresso")
        assert journal_lines(config)[0]["state"] == "done"

        server.faults.set_down(True)
        _press(config, "b1", "b3")
        term.tap(MAX)
        wait_for(lambda: len(journal_lines(config)) == 2, what="the offline cart")
        cart = journal_lines(config)[1]
        assert cart["offline"] is True and cart["state"] == "pending", cart
        server.faults.set_down(False)
        wait_for(lambda: settled(config, 2), timeout=90.0, what="the cart's rejection")
        cart = journal_lines(config)[1]
        assert cart["state"] == "rejected" and cart["reason"].startswith("bad_product"), cart
        assert "cannot book Latte Macchiato (id 3)" in cart["reason"] and "Espresso" not in cart["reason"]

        server.faults.set_down(True)
        _press(config, "b1")
        term.tap(MAX)
        wait_for(lambda: len(journal_lines(config)) == 3, what="the offline espresso")
        espresso = journal_lines(config)[2]
        assert espresso["offline"] is True and espresso["state"] == "pending", espresso
    finally:
        assert term.stop() == 0

    status = taptill("status", "--config", str(config)).stdout
    assert "NOT SELLING:     Latte Macchiato (id 3)" in status and "Espresso (id 1)" not in status, status
    assert "denied cards:    0" in status, status
    assert json.loads(taptill("status", "--json", "--config", str(config)).stdout)["denied_cards"] == 0
    checks = _checks(config)
    products = checks["products"]
    assert products["status"] == "FAIL" and "Latte Macchiato (id 3," in products["detail"], products
    assert "Espresso" not in products["detail"], products
    assert "[select] buttons" in products["detail"] and "[terminal] products" not in products["detail"]
    assert checks["cards"]["status"] == "OK", checks["cards"]


def test_a_card_refused_for_its_balance_is_denied_offline_until_the_server_answers_for_it(
    tmp_path: Path,
) -> None:
    """Doc flavour: an offline sale the server refuses with 400 "Insufficient balance" denies the card
    offline (status counts it, doctor warns); the card's next online sale ends the denial."""
    with WalletEmulator.demo("doc", latency="fast") as server:
        config = write_config(tmp_path, server)
        term = TerminalProcess(config)
        try:
            term.tap(ERIKA)  # 500 cents: an espresso (250) leaves 250
            wait_for(lambda: settled(config, 1), what="the online espresso")
            server.faults.set_down(True)
            server.refuse_transactions("Insufficient balance")  # another terminal spent the rest meanwhile
            term.tap(ERIKA)
            wait_for(lambda: len(journal_lines(config)) == 2, what="the offline espresso")
            assert journal_lines(config)[1]["offline"] is True
            server.faults.set_down(False)
            wait_for(lambda: settled(config, 2), timeout=60.0, what="the refusal")
            refused = journal_lines(config)[1]
            assert refused["state"] == "rejected" and refused["reason"].startswith("insufficient_balance")

            status = json.loads(taptill("status", "--json", "--config", str(config)).stdout)
            assert (status["denied_cards"], status["denied_cards_by_reason"]) == (
                1,
                {"insufficient_balance": 1},
            )
            assert (
                "denied cards:    1 (1 insufficient_balance)"
                in taptill("status", "--config", str(config)).stdout
            )
            cards = _checks(config)["cards"]
            assert cards["status"] == "WARN" and "1 card(s) denied offline" in cards["detail"], cards

            back = term.log().count("wallet server reachable again")
            server.faults.set_down(True)
            term.tap(ERIKA)
            wait_for(lambda: len(journal_lines(config)) == 3, what="the denied card's offline tap")
            denied = journal_lines(config)[2]
            assert denied["state"] == "declined" and "card denied (insufficient_balance)" in denied["reason"]

            server.refuse_transactions(None)
            server.faults.set_down(False)
            wait_for(lambda: term.log().count("wallet server reachable again") > back, what="the server")
            term.tap(ERIKA)
            wait_for(lambda: settled(config, 4), what="the online espresso")
            assert journal_lines(config)[3]["state"] == "done"
        finally:
            assert term.stop() == 0
    assert json.loads(taptill("status", "--json", "--config", str(config)).stdout)["denied_cards"] == 0
    assert _checks(config)["cards"]["status"] == "OK"
