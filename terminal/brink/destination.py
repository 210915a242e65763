"""PAR Brink ApplyPayment as an outbox destination: each wallet payment of a table's order on the order once.

PAR Brink has no idempotency key, and a second terminal may have paid the same bill (the same sale key)
and applied it already. So every send is preceded by a look (``needs_settle`` is always true): GetParty
for the record's business date and table, then, on the record's order, a payment not deleted whose
AdditionalData ``taptill_key`` is the record's ref. Found: done, nothing sent. The order open, no such
payment, and its due at least the amount: ApplyPayment with the ref in ReferenceDetails. The order gone
or closed without it (paid at the POS, or by another terminal: its ``taptill_key`` is another's), its due
below the amount, or such a payment deleted at the POS: held for staff with what to do by cause (the POS
still owes it: book it there or refund; it no longer does: refund; unknown: said so; ``taptill settle``).
A record whose last ApplyPayment may have been applied is never told to refund outright when the look
cannot see its order (the party closed, the order gone): staff look for its key on the closed bill.

The answers: 0 done. 1, 3, 104, a Fault, a timeout or a dropped connection after the request may have
left: ambiguous; the next look waits until the request can no longer land (the client's deadline and a
second after it) and settles it. 102/103 (the order gone or closed meanwhile), 2, 101, 106: held with the
reason and what to refund. 4 (the token is wrong): nothing applied; the payments stop until a probe finds
the tokens accepted. Backoff is the outbox schedule's; every call is under the client's deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from terminal.brink.bill import order_due
from terminal.brink.client import BrinkClient
from terminal.brink.health import PosHealth
from terminal.brink.outcomes import (
    AccessDenied,
    BillUnreadable,
    Fault,
    InvalidRequest,
    NoParty,
    OrderClosed,
    OrderGone,
    PartyFound,
    PaymentApplied,
    PaymentRefused,
    PaymentUnknown,
    PosUnavailable,
)
from terminal.brink.outcomes import Unreachable as NoAnswer
from terminal.brink.party import Order, Party, Payment
from terminal.brink.payment_outbox import DESTINATION, REF_NAME, TablePayment, money, payment_of
from terminal.outbox.landing import LandingWindow
from terminal.outbox.outcome import (
    Ambiguous,
    Booked,
    Done,
    Each,
    NotBooked,
    Outcome,
    Settled,
    Unclear,
    Unreachable,
    Wait,
)
from terminal.outbox.rate_limit import TokenBucket
from terminal.outbox.table import OutboxRow, OutboxTable

log = logging.getLogger(__name__)

STATE_OF_RECORD = "SELECT state FROM outbox WHERE id = ?"


class BrinkPaymentDestination:
    """Looks for a record's payment on its order, applies it when it is not there, holds what it cannot."""

    name = DESTINATION
    batches = False
    rate_limit: TokenBucket | None = None  # PAR sets no rate; the schedule's backoff paces retries

    def __init__(
        self,
        store: OutboxTable,
        client: BrinkClient,
        health: PosHealth,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.client = client
        self.health = health
        self.monotonic = monotonic
        self.landing = LandingWindow(client.timeout_s, monotonic)

    def lane(self, record: OutboxRow) -> str:
        return record.ref

    def ready(self, record: OutboxRow) -> bool:
        return True

    def needs_settle(self, record: OutboxRow) -> bool:
        # Not only after an ambiguous answer: another terminal paying the same bill may have applied it.
        return True

    def forget(self, record_ids: Sequence[int]) -> None:
        self.landing.forget(record_ids)

    async def prepare(self, batch: Sequence[OutboxRow]) -> object | Outcome:
        return None  # the look (settle) was the read this attempt builds on

    # --- looking before sending -----------------------------------------------------------------------

    async def settle(self, record: OutboxRow) -> Settled | Outcome:
        payment = payment_of(record.payload)
        if payment is None:
            return Unclear(
                f"the record cannot be read, so it is unknown what the POS still owes; check table payment "
                f"{record.ref} at the POS by hand, then taptill settle {record.ref} --booked (or --refunded)"
            )
        if record.maybe_sent:
            early = self.landing.wait_s(record.id)
            if early > 0:
                return Wait(early, "waiting until its last ApplyPayment can no longer land, then looking")
        outcome = await self.client.get_party(payment.business_date, payment.table_id)
        match outcome:
            case PartyFound(party):
                self.health.working()
                return self._look(record, payment, party)
            case NoParty():
                return Unclear(
                    _unseen(
                        record,
                        payment,
                        f"table {payment.table_id} has no open party on {payment.business_date} any more "
                        "(closed at the POS), so the payment cannot be looked for or applied",
                        f"table {payment.table_id}'s party was closed at the POS",
                    )
                )
            case AccessDenied():
                return self._refused(outcome)
            case PosUnavailable(code, message):
                return self._not_now(f"GetParty: POS unavailable ({code}: {message})")
            case InvalidRequest(message):
                return self._not_now(f"GetParty refused as invalid (2): {message}")
            case Fault(code, text):
                return self._not_now(f"GetParty: SOAP fault {code}: {text}")
            case BillUnreadable(reason):
                return self._not_now(f"GetParty: the party cannot be read ({reason})")
            case NoAnswer(reason):
                return self._not_now(reason)

    def _look(self, record: OutboxRow, payment: TablePayment, party: Party) -> Settled:
        order = next((o for o in party.orders if o.id == payment.order_id), None)
        if order is None:
            return Unclear(
                _unseen(
                    record,
                    payment,
                    f"{payment.order_label} is no longer in table {payment.table_id}'s party",
                    f"{payment.order_label} left the party",
                )
            )
        ours = [p for p in order.payments if p.reference(REF_NAME) == record.ref]
        live = [p for p in ours if not p.is_deleted]
        if live:
            log.info("table payment %s is on %s: %s", record.ref, payment.order_label, _describe(live[0]))
            return Booked(f"on the order: {_describe(live[0])}" + (" (found)" if record.attempts else ""))
        if ours:
            # staff deleted it: whether the POS took the money another way is theirs to say
            return Unclear(
                payment.unknown(
                    f"its payment on table {payment.table_id} {payment.order_label} was deleted at the POS"
                )
            )
        return self._open(record, payment, order)

    def _open(self, record: OutboxRow, payment: TablePayment, order: Order) -> Settled:
        # another terminal's payment of this bill (a non-deduplicating wallet debited both guests' taps)
        others = [
            p
            for p in order.payments
            if not p.is_deleted and (ref := p.reference(REF_NAME)) is not None and ref != record.ref
        ]
        by = (
            f"paid by another terminal ({_describe(others[0])}, key {others[0].reference(REF_NAME)})"
            if others
            else "paid at the POS"
        )
        if order.is_closed:
            return Unclear(payment.refund(f"{payment.order_label} was closed without it: the bill was {by}"))
        due = order_due(order)
        if due < payment.amount_cents:
            return Unclear(
                payment.refund(
                    f"{payment.order_label} owes {money(max(due, 0))}, less than the wallet paid (it was "
                    f"{by} in part meanwhile; take what it still owes at the POS)"
                )
            )
        return NotBooked(True)

    # --- sending -------------------------------------------------------------------------------------

    async def attempt(self, batch: Sequence[OutboxRow]) -> Outcome | Each:
        (record,) = batch
        payment = payment_of(record.payload)
        if payment is None:  # settle held it already; kept for the type
            return _held(record, "the record cannot be read")
        if not self._still_pending(record):
            # ended while it was looked for (its sale turned out booked by another terminal, which
            # applies it): sending now could race that terminal's own look
            return Done("ended while it was looked for; not sent")
        self.landing.sent(record.id)
        answer = await self.client.apply_payment(
            payment.order_id, payment.amount_cents, payment.tender_id, record.ref
        )
        advice = payment.book_or_refund  # the POS still owes it: book it there by hand, or refund
        match answer:
            case PaymentApplied():
                self.health.working()
                log.info("table payment %s applied to %s", record.ref, payment.order_label)
                return Done("applied")
            case PaymentUnknown(reason, maybe_applied):
                self.health.problem(reason)
                where = f"table {payment.table_id} {payment.order_label} ({money(payment.amount_cents)})"
                if maybe_applied:
                    log.warning(
                        "table payment %s on %s: %s; it may have been applied: in %.0f s the order is looked "
                        "at, and it is sent again only if the payment is not there",
                        record.ref,
                        where,
                        reason,
                        self.landing.after_s,
                    )
                    return Ambiguous(f"{reason}; the order is looked at before anything is sent again")
                log.warning(
                    "table payment %s on %s: %s; nothing applied, sent again after a pause",
                    record.ref,
                    where,
                    reason,
                )
                return Unreachable(reason)
            case OrderGone():
                said, advice = f"the POS does not find {payment.order_label} (102)", payment.refund
            case OrderClosed():
                said, advice = f"{payment.order_label} was closed meanwhile (103)", payment.refund
            case PaymentRefused(code, message):
                said = f"PAR Brink refused the payment ({code}: {message})"
                if code == 106:
                    said += f"; check [table] tender_id {payment.tender_id}"
            case AccessDenied():
                return self._refused(answer)
        # a definitive refusal: this request applied nothing; staff book it by hand or refund the guest
        self.store.not_sent([record])
        return _held(record, advice(said))

    def _still_pending(self, record: OutboxRow) -> bool:
        found = self.store.journal.query(STATE_OF_RECORD, (record.id,))
        return bool(found) and found[0][0] == "pending"

    # --- answers that stop or defer ---------------------------------------------------------------------

    def _refused(self, denied: AccessDenied) -> Outcome:
        reason = f"PAR Brink denies access ({denied.describe()})"
        self.health.refuse(reason)
        log.error("%s: table payments wait until the tokens are fixed", reason)
        # nothing applied; the stopped loop probes meanwhile
        return Unreachable(f"access denied ({denied.code})")

    def _not_now(self, reason: str) -> Outcome:
        """The order could not be looked at: nothing sent; looked at again after the backoff."""
        self.health.problem(reason)
        return Unreachable(reason)


def _unseen(record: OutboxRow, payment: TablePayment, what: str, short: str) -> str:
    """Held advice when the look cannot see the record's order (the party closed, the order gone): a
    record whose last ApplyPayment may have been applied may be on that closed bill, so only one never
    sent, or whose attempts provably applied nothing, may say refund outright (``short``: ``what`` in
    fewer words, as the longer advice must fit the held reason)."""
    return payment.maybe_applied(short) if record.maybe_sent else payment.refund(what)


def _held(record: OutboxRow, detail: str) -> Each:
    """Hold ``record`` for staff from an attempt (the loop applies a settling's Unclear as a hold)."""
    return Each((((record,), Unclear(detail)),))


def _describe(payment: Payment) -> str:
    return f"payment id {payment.id}, {money(payment.amount_cents)}, tender {payment.tender_id}"
