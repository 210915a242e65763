"""The amount due of a party (issue 14's rule), its idempotency key, and paying it in denomination
products."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.brink.bill import amount_due, payment_key
from terminal.brink.outcomes import PartyFound
from terminal.brink.parse import party_outcome
from terminal.brink.party import Party
from terminal.model import Product
from terminal.wallet.denominations import MAX_PRODUCTS, check_prices, decompose
from tests.brink_samples import SEED_GET_PARTY, deposit, gift_card, item, order, party_answer, payment


def party(*orders: str) -> Party:
    outcome = party_outcome(200, party_answer(list(orders)))
    assert isinstance(outcome, PartyFound), outcome
    return outcome.party


def test_the_seeds_party_owes_nothing_because_its_balance_says_so() -> None:
    outcome = party_outcome(200, SEED_GET_PARTY)
    assert isinstance(outcome, PartyFound)
    bill = amount_due(outcome.party)
    assert (bill.total_cents, bill.orders, bill.problems) == (0, (), ())


def test_balance_wins_else_total_less_payments_and_applied_deposits() -> None:
    bill = amount_due(
        party(
            order(1, total="30.00", balance="12.50"),
            order(
                2,
                total="50.00",
                payments=[payment("10.00"), payment("5.00", deleted=True)],
                deposits=[
                    deposit("3.00"),
                    deposit("1.00", applied=False),
                    deposit("2.00", deleted=True),
                    deposit("4.00", reversal=True),
                ],
                entries=[
                    item(1, "Steak", "24.99"),
                    item(2, "Wine", "9.00", voided=True),
                    gift_card(3, "Card", "16.01"),
                ],
            ),
            order(3, total="20.00", balance="nil", payments=[payment("20.00")]),  # paid in full: nothing due
            order(4, total="99.00", closed=True),
        )
    )
    assert [(o.order_id, o.due_cents) for o in bill.orders] == [(1, 1250), (2, 3700)]
    assert bill.total_cents == 4950
    assert [e.description for e in bill.orders[1].entries] == ["Steak", "Card"]  # voided never listed


def test_a_negative_due_counts_as_zero_and_is_flagged() -> None:
    bill = amount_due(
        party(order(1, total="10.00", payments=[payment("12.00")], number=17), order(2, total="5.00"))
    )
    assert bill.total_cents == 500
    assert bill.problems == ("order 17: -2.00 due (more paid than owed); counted as 0",)


def test_the_key_follows_the_design_and_changes_with_the_bill() -> None:
    bill = amount_due(party(order(30, total="10.00"), order(4, total="5.05")))
    digest = hashlib.sha256(b"brink|7001|4,30|1505").digest()
    assert bill.key() == "b" + digest.hex()[:24]
    assert len(bill.key()) == 25
    assert bill.key() == amount_due(party(order(4, total="5.05"), order(30, total="10.00"))).key()
    assert bill.key() != amount_due(party(order(30, total="10.00"), order(4, total="5.06"))).key()
    assert payment_key(bill.key(), "bar1", 30) == bill.key() + "-bar1-30"
    assert payment_key(bill.key(), "", 30) == bill.key() + "-30", "a record journaled before terminal ids"


@given(st.lists(st.integers(1, 10**12), min_size=1, max_size=5, unique=True), st.integers(1, 99999))
def test_a_bill_key_has_no_dash_so_only_a_retry_suffix_reads_like_one(
    order_ids: list[int], cents: int
) -> None:
    """A bill's retry keys are ``key-2``, ``key-3`` …: a "-" inside the key itself (urlsafe base64 has
    one) would read like such a suffix."""
    total = f"{cents // 100}.{cents % 100:02d}"
    bill = amount_due(party(*(order(i, total=total) for i in order_ids)))
    assert re.fullmatch(r"b[0-9a-f]{24}", bill.key()), bill.key()


# --- denominations -------------------------------------------------------------------------------------

EURO = {1000: "eur10", 100: "eur1", 10: "ct10", 1: "ct1"}


def test_an_amount_that_needs_every_denomination() -> None:
    paid = decompose(2699, EURO)
    assert paid == ("eur10",) * 2 + ("eur1",) * 6 + ("ct10",) * 9 + ("ct1",) * 9
    assert decompose(0, EURO) == ()


def test_greedy_is_not_fewest_and_impossible_amounts_are_refused() -> None:
    assert decompose(6, {1: "a", 3: "b", 4: "c"}) == ("b", "b")
    assert decompose(7, {5: "five", 2: "two"}) == ("five", "two")
    with pytest.raises(ValueError, match="cannot be paid exactly"):
        decompose(3, {5: "five", 2: "two"})
    with pytest.raises(ValueError, match=f"more than {MAX_PRODUCTS} products"):
        decompose(201 * 1000, EURO)
    with pytest.raises(ValueError, match=f"more than {MAX_PRODUCTS} products"):
        decompose(201, {1: "ct1"})
    with pytest.raises(ValueError):
        decompose(10, {})


def greedy(amount: int, values: list[int]) -> int:
    count = 0
    for v in sorted(values, reverse=True):
        count += amount // v
        amount %= v
    return count


def brute_force(amount: int, values: list[int]) -> int | None:
    for n in range(0, amount + 1):
        if any(sum(c) == amount for c in itertools.combinations_with_replacement(values, n)):
            return n
    return None


@given(st.integers(0, 150_000))
def test_canonical_euro_sets_sum_exactly_and_never_beat_greedy_in_count(amount: int) -> None:
    values = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    denominations = {v: f"p{v}" for v in values}
    paid = decompose(amount, denominations)
    assert sum(int(str(p)[1:]) for p in paid) == amount
    assert len(paid) <= greedy(amount, values)


@given(st.sets(st.integers(1, 12), min_size=1, max_size=4), st.integers(0, 30))
def test_fewest_against_brute_force_on_small_sets(values: set[int], amount: int) -> None:
    denominations: Mapping[int, str] = {v: str(v) for v in values}
    best = brute_force(amount, sorted(values))
    if best is None:
        with pytest.raises(ValueError):
            decompose(amount, denominations)
        return
    paid = decompose(amount, denominations)
    assert sum(int(str(p)) for p in paid) == amount
    assert len(paid) == best


@given(st.sets(st.integers(1, 400), min_size=1, max_size=4), st.integers(0, 20_000))
def test_any_set_sums_exactly_or_refuses(values: set[int], amount: int) -> None:
    try:
        paid = decompose(amount, {v: v for v in values})
    except ValueError:
        return
    assert sum(int(str(p)) for p in paid) == amount and len(paid) <= MAX_PRODUCTS


def test_prices_are_checked_against_the_wallet() -> None:
    catalog = [Product("eur10", "10 €", 1000), Product("eur1", "1 €", 99), Product(7, "Cent", 1)]
    assert check_prices({1000: "eur10", 100: "eur1", 10: "ct10", 1: "7"}, catalog) == [
        "denomination 10 cents: the wallet lists no product 'ct10'",
        "denomination 100 cents: wallet product 'eur1' (1 €) costs 99 cents; set its price to 100 or map 100 "
        "to another product",
    ]
