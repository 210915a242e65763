"""The wallet destination's records: sales in the journal's ``sales`` table, the ledger of record.

A sale's delivery columns (maybe_sent, attempts, hold, balance_before, last_status, server_errors) stay in
``sales``, where salvage, recover, ``taptill queue`` and the crash tests read them. Finishing a sale also
commits what rides along with it: its Partybroker reports and the card's balance, in the same write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from terminal.journal import (
    CARD_REFUSALS,
    Journal,
    SaleRecord,
    allow_card_statement,
    remember_card_statement,
)
from terminal.model import DeclineReason
from terminal.service import boot_clock

log = logging.getLogger(__name__)

ReportStatements = Callable[[SaleRecord], Sequence[tuple[str, Sequence[object]]]]


class SaleStore:
    """The OutboxStore of wallet sales; also keeps the products the server cannot book (unsellable)."""

    def __init__(
        self,
        journal: Journal,
        *,
        dedupes: bool,
        clock: Callable[[], float] = time.time,
        reports_for: ReportStatements | None = None,
        on_unsellable: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self.journal = journal
        self.dedupes = dedupes
        self.clock = clock
        self.reports_for = reports_for  # statements committed with a sale's "done" (Partybroker reports)
        self.on_unsellable = on_unsellable  # tells the controller which products not to sell offline
        self.unsellable: frozenset[str] = frozenset(journal.unsellable())
        self.delivered = 0
        # product id -> debits in a row the server answered with an error and did not book (tap path)
        self.unbooked_errors: dict[str, int] = {}

    def due(self, limit: int) -> Sequence[SaleRecord]:
        return self.journal.due_sales(limit=limit)

    def begin(self, records: Sequence[SaleRecord], basis: object) -> None:
        """``basis`` is the balance just read (a server that does not deduplicate), else None; the card's
        balance is remembered with it (the server answered for the card: a denial ends)."""
        for sale in records:
            balance = basis if isinstance(basis, int) else sale.balance_before
            seen = (
                [remember_card_statement(sale.token_id, basis, boot_clock.now(self.clock()))]
                if isinstance(basis, int)
                else []
            )
            self.journal.mark_attempt(sale.id, balance, self.clock(), seen)

    def done(self, records: Sequence[SaleRecord], result: object, *, by_settling: bool) -> None:
        """``result`` is the balance after (cents) or None; a sale answered done on its attempt is
        approved in the same write (the tap path tells the guest now), one found booked by settling not."""
        balance = result if isinstance(result, int) else None
        for sale in records:
            also = list(self.reports_for(sale)) if self.reports_for is not None else []
            if balance is not None:
                also.append(remember_card_statement(sale.token_id, balance, boot_clock.now(self.clock())))
            else:
                also.append(allow_card_statement(sale.token_id))  # booked: the card pays, deny it no more
            self.journal.mark_done(sale.id, balance, also, approved=not by_settling)
            self.delivered += 1
            for product in sale.products:
                self.unbooked_errors.pop(str(product), None)
            again = {str(p) for p in sale.products} & self.unsellable
            if again and self.journal.clear_unsellable(again):
                log.warning("sale %d booked a product thought unsellable: selling it again", sale.id)
                self.unsellable_changed()

    def rejected(self, records: Sequence[SaleRecord], reason: str, code: str) -> None:
        for sale in records:
            self.journal.mark_rejected(sale.id, f"{code}: {reason}")
            # Only a refusal about the card denies it (journal.CARD_REFUSALS): never a product the server
            # cannot book or its failing, which would lock a guest out for a fault not theirs. An online
            # sale refused for the balance was declined at the tap, and the balance just read decides the
            # card's next offline tap: no denial; an unknown card is denied either way.
            if code in CARD_REFUSALS and (sale.offline or code == DeclineReason.UNKNOWN_CARD):
                self.journal.deny_card(sale.token_id, code)
            log.warning("sale %d rejected: %s (%s)", sale.id, code, reason)

    def not_sent(self, records: Sequence[SaleRecord]) -> None:
        # A deduplicating server needs no reconciliation: the same key is safe to send again.
        if not self.dedupes:
            for sale in records:
                self.journal.mark_not_sent(sale.id)

    def server_error(self, records: Sequence[SaleRecord], status: int) -> None:
        # Counted only once reconciliation shows it was not booked. A deduplicating server is never given
        # up on: the same key is safe to send again, and an error answer does not tell whether the server
        # booked the sale before it failed.
        if not self.dedupes:
            for sale in records:
                self.journal.mark_server_error(sale.id, status)

    def note_retry(self, records: Sequence[SaleRecord], at_wall: float, reason: str) -> None:
        for sale in records:
            self.journal.schedule_retry(sale.id, at_wall, reason)

    def hold(self, records: Sequence[SaleRecord], reason: str) -> None:
        for sale in records:
            self.journal.hold(sale.id, reason)
            log.error("sale %d held for reconciliation: %s", sale.id, reason)

    def gave_up(self, records: Sequence[SaleRecord], reason: str) -> None:
        # Money is never given up on: were the wallet's rule ever to say so, a person settles it.
        self.hold(records, reason)

    def mark_unsellable(self, products: Sequence[tuple[str, str]], detail: str) -> None:
        self.journal.mark_unsellable(products, detail)
        self.unsellable_changed()

    def unsellable_changed(self) -> None:
        self.unsellable = frozenset(self.journal.unsellable())
        if self.on_unsellable is not None:
            self.on_unsellable(self.unsellable)
