"""Partybroker reports as an outbox destination: one POST per flush with every due report, at most once.

Partybroker has no idempotency key, so a report whose POST may have reached the party (timeout after
sending, 5xx; or a terminal killed while it was under way) is never re-sent: settling gives it up and
``taptill status`` counts it as ambiguous. A double report would push the market price up for every
guest; a lost one is bounded by that count. Reports that provably never reached the party (connection
refused, 429, 401) are sent again. A drink the party does not list is dropped before the POST: one unknown
drink would fail the whole batch (the party books all or nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import assert_never

from terminal.outbox.outcome import (
    Ambiguous,
    Done,
    Each,
    GaveUp,
    Outcome,
    Rejected,
    Settled,
    Unreachable,
)
from terminal.outbox.rate_limit import TokenBucket
from terminal.outbox.table import OutboxRow, OutboxTable
from terminal.partybroker import outcomes as pb
from terminal.partybroker.client import PartybrokerClient
from terminal.partybroker.price_board import PricePoller
from terminal.partybroker.report_outbox import DESTINATION

log = logging.getLogger(__name__)

UNAUTHORIZED_RETRY_S = 30.0
RETRY_MAX_S = 30.0
FLUSH_INTERVAL_S = 1.0


def _drink(record: OutboxRow) -> tuple[str, int] | None:
    key, qty = record.payload.get("drink_key"), record.payload.get("quantity")
    if isinstance(key, str) and isinstance(qty, int) and not isinstance(qty, bool) and qty > 0:
        return key, qty
    return None


class PartybrokerDestination:
    """Sums the due reports per drink into one POST; prices in the answer go to the board at once."""

    name = DESTINATION
    batches = True
    rate_limit: TokenBucket | None = None

    def __init__(self, store: OutboxTable, client: PartybrokerClient, poller: PricePoller) -> None:
        self.store = store
        self.client = client
        self.poller = poller

    def lane(self, record: OutboxRow) -> str:
        return DESTINATION

    def ready(self, record: OutboxRow) -> bool:
        return True

    def needs_settle(self, record: OutboxRow) -> bool:
        return record.maybe_sent

    def forget(self, record_ids: Sequence[int]) -> None:
        pass

    async def settle(self, record: OutboxRow) -> Settled | Outcome:
        why = record.reason or "the outcome of its report is unknown"
        log.warning("Partybroker report %s: %s; not re-sent (at most once)", record.ref, why)
        return GaveUp(why)

    async def prepare(self, batch: Sequence[OutboxRow]) -> object | Outcome:
        return None

    async def attempt(self, batch: Sequence[OutboxRow]) -> Outcome | Each:
        missing = set(self.poller.board.missing)
        unreadable = [r for r in batch if _drink(r) is None]
        unlisted = [r for r in batch if (d := _drink(r)) is not None and d[0] in missing]
        send = [r for r in batch if (d := _drink(r)) is not None and d[0] not in missing]
        parts: list[tuple[tuple[OutboxRow, ...], Outcome]] = []
        if unreadable:
            parts.append((tuple(unreadable), Rejected("the report's record cannot be read")))
        if unlisted:
            parts.append((tuple(unlisted), Rejected("drink not listed by the party (Premium?)")))
        if send:
            parts.append((tuple(send), await self._post(send)))
        return parts[0][1] if len(parts) == 1 else Each(tuple(parts))

    async def _post(self, send: Sequence[OutboxRow]) -> Outcome:
        drinks = [d for d in (_drink(r) for r in send) if d is not None]
        batch = self.poller.board.batch(drinks)
        if not batch.sales:
            return Rejected("no drink mapped")
        outcome = await self.client.buy(batch.sales)
        match outcome:
            case pb.Drinks(answer):
                self.poller.apply_sale(answer)
                return Done()
            case pb.Recorded(reason):
                return Done(reason)
            case pb.Rejected(status, reason):
                log.error("Partybroker refused %d report(s) (%d: %s): dropped", len(send), status, reason)
                return Rejected(f"{status}: {reason}")
            case pb.Unauthorized():
                log.error("Partybroker refuses the login: fix [partybroker] username / password_file")
                return Unreachable("unauthorized", UNAUTHORIZED_RETRY_S)
            case pb.Ambiguous(reason, retry_after, maybe_applied):
                if maybe_applied:
                    return Ambiguous(reason, True, retry_after)
                return Unreachable(reason, retry_after)
            # Unreachable, so no mutant of it can be told apart: mypy checks every BuyOutcome has its case.
            case _:  # pragma: no mutate
                assert_never(outcome)  # pragma: no mutate
