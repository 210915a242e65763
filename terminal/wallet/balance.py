"""What a balance reported by the wallet server tells: whether it pays a price, whether a debit was booked."""

from __future__ import annotations

from enum import Enum

# The real pretix wallet plugin keeps a wallet's value as a float sum of euros and truncates it to
# cents (WALLET-SERVER-NOTES.md, "Seen later"), so a reported balance can be one cent nearer zero than
# what the wallet holds (1.20 EUR reads 119), never further off: the float sum misses by far less than
# a cent. A debit then moves the reported balance by its amount plus or minus one cent (by up to two
# in the rare debit that takes a wallet from credit into debt: such a sale is held if ambiguous).
REPORTED_BALANCE_SLACK_CENTS = 1
# Up to this debit (cents), "booked" and "not booked" are each matched within the slack and overlap.
OVERLAP_CENTS = 2 * REPORTED_BALANCE_SLACK_CENTS


def pays(available_cents: int, price_cents: int) -> bool:
    """Whether a reported balance (cents, less the card's unconfirmed sales) pays ``price_cents``.

    A balance up to REPORTED_BALANCE_SLACK_CENTS below the price is served: the wallet may hold that
    cent. On a server that reports exactly, the guest may so go one cent below zero (the real server
    books it; the document's server refuses it with 400, which the terminal shows as a decline).
    """
    return available_cents + REPORTED_BALANCE_SLACK_CENTS >= price_cents


class Booked(Enum):
    """What the balance says about an attempt that may or may not have reached the server."""

    YES = "booked"
    NO = "not booked"
    UNCLEAR = "unclear"


def booked_by_balance(before_cents: int, after_cents: int, amount_cents: int) -> Booked:
    """Compare the balance read before an ambiguous attempt with one read once it can no longer land.

    ``amount_cents`` is signed as the wallet books it (negative for a debit). The reported balances may
    each be a cent low, so *before + amount* and *before* are each matched within
    REPORTED_BALANCE_SLACK_CENTS. Those two ranges overlap when ``|amount_cents|`` is at most twice
    the slack (a 1-2 cent product); there only an exact match counts, and anything else is UNCLEAR,
    for a person to settle, because guessing could book a sale twice or lose it.
    """
    slack = REPORTED_BALANCE_SLACK_CENTS if abs(amount_cents) > OVERLAP_CENTS else 0
    if abs(after_cents - (before_cents + amount_cents)) <= slack:
        return Booked.YES
    if abs(after_cents - before_cents) <= slack:
        return Booked.NO
    return Booked.UNCLEAR
