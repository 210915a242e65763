"""Stable codes for declined taps: a decline's journaled reason (a code or an English note) as a key scripts
can match (``report --format csv`` column ``key``, ``--format json`` field ``code``)."""

from __future__ import annotations

import re

from terminal.journal import OFFLINE_REASON
from terminal.model import DeclineReason, printable

# Codes beyond the DeclineReason values (which are codes already, journaled as they are). Never rename one:
# scripts match them. A new journaled note gets a new code here, and a test (tests/test_report.py) holds
# every note the controller writes to a code other than OTHER.
OFFLINE_POLICY = "offline_policy"  # [offline] mode = "decline"
OFFLINE_NEEDS_WALLET = "offline_needs_wallet"  # a sale never made without the wallet's word (a table bill)
OFFLINE_UNSELLABLE = "offline_unsellable_product"  # the server cannot book a product of the cart
OFFLINE_CARD_DENIED = "offline_card_denied"  # the server refused the card before
OFFLINE_NEVER_SEEN = "offline_card_never_seen"  # no balance seen online to decide on
OFFLINE_BALANCE_OLD = "offline_balance_too_old"  # the balance seen is older than max_balance_age_s
OFFLINE_CARD_LIMIT = "offline_card_limit"  # the card's unconfirmed money would pass max_per_card_cents
OFFLINE_TERMINAL_LIMIT = "offline_terminal_limit"  # all unconfirmed money would pass max_total_cents
OFFLINE_BALANCE_LOW = "offline_balance_too_low"  # the balance seen, less unconfirmed sales, does not pay
OFFLINE_TOPUP_LIMIT = "offline_topup_limit"  # [topup] max_offline_credit_cents
CREDIT_LIMIT_UNLOCK = "credit_limit_per_unlock"  # [topup] max_credit_per_unlock_cents
CREDIT_LIMIT_SHIFT = "credit_limit_per_shift"  # the operator's cap per shift (day)
OTHER = "other"  # a note no code knows (written by another version): the reason says what it was

# (pattern of the journaled note, code): first match wins. The notes carry figures and names
# ("offline: balance 120 < 250", "operator olga: shift cap …"), so they are matched, not compared.
_NOTES = (
    (re.compile(r"policy declines$"), OFFLINE_POLICY),
    (re.compile(r"this sale is never made without the wallet server's word$"), OFFLINE_NEEDS_WALLET),
    (re.compile(r"the server cannot book product "), OFFLINE_UNSELLABLE),
    (re.compile(r"card denied \("), OFFLINE_CARD_DENIED),
    (re.compile(r"card never seen online$"), OFFLINE_NEVER_SEEN),
    (re.compile(r"balance \d+s old$"), OFFLINE_BALANCE_OLD),
    (re.compile(r"per-card limit$"), OFFLINE_CARD_LIMIT),
    (re.compile(r"terminal limit$"), OFFLINE_TERMINAL_LIMIT),
    (re.compile(r"balance -?\d+ < -?\d+$"), OFFLINE_BALANCE_LOW),
    (re.compile(r"top-up limit \("), OFFLINE_TOPUP_LIMIT),
)
_OPERATOR_NOTES = (
    (
        re.compile(r"^operator .*: -?\d+ cents would pass \[topup\] max_credit_per_unlock_cents"),
        CREDIT_LIMIT_UNLOCK,
    ),
    (re.compile(r"^operator .*: shift cap -?\d+ cents reached"), CREDIT_LIMIT_SHIFT),
)
_EARLIER_PENDING_NOTE = "an earlier sale of this card is still being confirmed by the wallet"
_CODES = frozenset(str(r) for r in DeclineReason)

# An offline decision's reason carries figures: grouped (and shown) by what it says, not by the figures.
_OFFLINE_GROUPS = (
    (re.compile(r"^offline: balance -?\d+ < -?\d+$"), "offline: balance too low"),
    (re.compile(r"^offline: balance \d+s old$"), "offline: balance too old"),
    (re.compile(r"^offline: card denied \(.*\)$"), "offline: card denied"),
)


def decline_code(reason: str) -> str:
    """The stable code of a declined tap's journaled reason: a DeclineReason value as it is
    (``insufficient_balance``), an offline decision's or an operator's note as one of this module's codes,
    anything else OTHER."""
    if reason in _CODES:
        return reason
    if reason.startswith(OFFLINE_REASON):
        why = reason.removeprefix(OFFLINE_REASON)
        return next((code for pattern, code in _NOTES if pattern.match(why)), OTHER)
    if reason == _EARLIER_PENDING_NOTE:
        return str(DeclineReason.EARLIER_PENDING)
    return next((code for pattern, code in _OPERATOR_NOTES if pattern.match(reason)), OTHER)


def decline_group(reason: str) -> str:
    """The group a declined tap's reason is counted (and named) in: its decline code
    (``insufficient_balance``), or an offline decision's reason without its figures."""
    for pattern, group in _OFFLINE_GROUPS:
        if pattern.match(reason):
            return group
    return printable(reason, 80) or "(no reason)"
