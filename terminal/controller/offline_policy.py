"""The offline policy: whether a tap may be sold while the wallet server cannot be asked."""

from __future__ import annotations

from dataclasses import dataclass

from terminal.config import OfflineConfig
from terminal.journal import OfflineView, offline_reason
from terminal.model import DeclineReason
from terminal.wallet.balance import pays


@dataclass(frozen=True)
class OfflineDecision:
    accept: bool
    reason: str  # journaled with the sale or the decline
    # What the guest is shown; the controller shows OFFLINE for a decline naming none, so a decline that
    # is OFFLINE may as well name none: mutating those away is equivalent (`pragma: no mutate` below).
    decline: DeclineReason | None = None


def decide_offline(view: OfflineView, amount_cents: int, cfg: OfflineConfig) -> OfflineDecision:
    """Accept only a card seen online recently whose last balance, less its unconfirmed sales, pays
    ``amount_cents`` (as an online tap would, a cent of the server's truncation allowed), within the
    per-card and terminal-wide limits of unconfirmed money."""
    if cfg.mode == "decline":
        return OfflineDecision(
            False,
            offline_reason("policy declines"),
            DeclineReason.OFFLINE,  # pragma: no mutate (equivalent: see OfflineDecision.decline)
        )
    if view.denied_reason is not None:
        return OfflineDecision(
            False, offline_reason(f"card denied ({view.denied_reason})"), DeclineReason.DENIED_CARD
        )
    if view.last_balance is None or view.balance_age_s is None:
        return OfflineDecision(
            False,
            offline_reason("card never seen online"),
            DeclineReason.OFFLINE,  # pragma: no mutate (equivalent: see OfflineDecision.decline)
        )
    if view.balance_age_s > cfg.max_balance_age_s:
        return OfflineDecision(
            False,
            offline_reason(f"balance {view.balance_age_s:.0f}s old"),
            DeclineReason.OFFLINE,  # pragma: no mutate (equivalent: see OfflineDecision.decline)
        )
    if view.card_unconfirmed_cents + amount_cents > cfg.max_per_card_cents:
        return OfflineDecision(False, offline_reason("per-card limit"), DeclineReason.OFFLINE_LIMIT)
    if view.total_unconfirmed_cents + amount_cents > cfg.max_total_cents:
        return OfflineDecision(False, offline_reason("terminal limit"), DeclineReason.OFFLINE_LIMIT)
    available = view.last_balance - view.card_unconfirmed_cents
    if not pays(available, amount_cents):
        return OfflineDecision(
            False, offline_reason(f"balance {available} < {amount_cents}"), DeclineReason.INSUFFICIENT_BALANCE
        )
    return OfflineDecision(
        True, offline_reason(f"accepted on balance {view.last_balance} seen {view.balance_age_s:.0f}s ago")
    )
