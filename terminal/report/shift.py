"""A shift report from the journal: what was sold in a period, where the money stands, and what the wallet
server should show for this terminal (integer cents throughout)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from terminal.journal import BOOKED_ELSEWHERE_REASON, SaleRecord
from terminal.model import DeclineReason, Product, SaleState, printable
from terminal.report.declines import OTHER, decline_code, decline_group
from terminal.report.period import Period

# A product line's name when the terminal never cached the wallet's price list (it caches it on its first
# contact with the wallet): the wallet's product id and this; the text report says the rest in one line.
NO_PRICE_LIST = "(no price list cached)"
NO_PRICE_LIST_NOTE = (
    "(no price list cached: products are named by their wallet id and carts are not split; "
    "the terminal caches the list when it first reaches the wallet)"
)


# A rejection's words kept whole (the journal keeps 300 characters): they name the product and what the
# server said; taptill's own reason for an unsellable product runs past 200.
REASON_CHARS = 300


@dataclass(frozen=True)
class Tally:
    """How many, and how much in cents (never negative: what guests paid, or what was credited)."""

    count: int = 0
    cents: int = 0

    def plus(self, cents: int, count: int = 1) -> Tally:
        return Tally(self.count + count, self.cents + cents)


@dataclass(frozen=True)
class ProductLine:
    """One wallet product's sales in the period: ``count`` is units (a cart of two espressos counts two), the
    money what they booked; a top-up product's money is what it credited. ``confirmed`` + ``pending`` +
    ``held`` is everything sold; rejected sales are not in it."""

    product: str
    name: str
    kind: str  # "debit" or "topup"
    confirmed: Tally = Tally()
    pending: Tally = Tally()
    held: Tally = Tally()
    online: Tally = Tally()  # of what was sold: decided with the wallet's word
    offline: Tally = Tally()  # ... decided by the offline policy

    @property
    def sold(self) -> Tally:
        parts = (self.confirmed, self.pending, self.held)
        return Tally(sum(p.count for p in parts), sum(p.cents for p in parts))


@dataclass(frozen=True)
class ReasonLine:
    """Sales that ended one way (declined, rejected) for one reason."""

    reason: str
    count: int
    cents: int  # the money they would have moved (0 for most declines)
    code: str = ""  # the stable code (terminal/report/declines.py; a rejection's journaled decline code)


@dataclass(frozen=True)
class HourLine:
    """The debits and top-ups (sold: confirmed, pending or held) journaled in one local hour."""

    hour: datetime  # the hour's start, local time
    debits: Tally = Tally()
    topups: Tally = Tally()


@dataclass(frozen=True)
class Side:
    """Debits or top-ups by where they stand; ``confirmed`` + ``pending`` + ``held`` is what was sold."""

    confirmed: Tally = Tally()
    pending: Tally = Tally()  # not confirmed by the wallet yet, not held
    held: Tally = Tally()  # waiting for a person to reconcile (taptill queue, taptill settle)
    online: Tally = Tally()  # decided with the wallet's word
    offline: Tally = Tally()  # decided by the offline policy, delivered later (or still pending)

    @property
    def sold(self) -> Tally:
        parts = (self.confirmed, self.pending, self.held)
        return Tally(sum(p.count for p in parts), sum(p.cents for p in parts))


@dataclass(frozen=True)
class ShiftReport:
    """Everything ``taptill report`` shows for a period; every sale journaled in it is counted once."""

    period: Period
    products: tuple[ProductLine, ...]
    debits: Side
    topups: Side
    # refused by the wallet after the guest was told it was approved (offline, queued): money not collected
    rejected: tuple[ReasonLine, ...]
    # taps that moved no money, by reason; a sale the wallet refused while its guest waited is one of them
    declined: tuple[ReasonLine, ...]
    not_served: Tally  # booked but the guest got nothing (not dispensed / never approved), still open
    refunded: Tally  # such sales a person recorded refunded (taptill settle --refunded)
    served_by_hand: Tally  # ... or served by hand (taptill settle --served)
    table_bills: Side  # table mode: bills paid by wallet (not in the product lines)
    booked_elsewhere: Tally  # the wallet had the key booked before (another terminal): no money here
    wallet_net_cents: int  # what the wallet booked for this terminal: credits minus debits (a debit < 0)
    wallet_transactions: int  # how many transactions that is
    hours: tuple[HourLine, ...] = field(default=())
    # which time puts a sale in the period, per figure: "journaled" (created_at, the tap) or "booked"
    # (when the wallet booked it: selection.sales_booked_in); the wallet's figure is by "booked" when the
    # report was given those sales
    wallet_time: str = "journaled"
    prices_cached: bool = True  # False: no price list was cached, products are named by id (NO_PRICE_LIST)

    @property
    def times(self) -> dict[str, str]:
        """Which time each figure counts a sale by (the JSON's ``times``)."""
        return {"sales": "journaled", "hours": "journaled", "wallet": self.wallet_time}

    @property
    def rejected_total(self) -> Tally:
        return Tally(sum(r.count for r in self.rejected), sum(r.cents for r in self.rejected))

    @property
    def declined_total(self) -> int:
        return sum(r.count for r in self.declined)


def shift_report(
    sales: Iterable[SaleRecord],
    period: Period,
    products: Iterable[Product] = (),
    *,
    booked: Iterable[SaleRecord] | None = None,
) -> ShiftReport:
    """The report of ``sales`` (the journal's, journaled in ``period``: ``selection.sales_in``).

    ``products`` is the wallet's product list as the terminal last cached it: names, and the prices that
    split a sale of several products into product lines. A sale whose products' cached prices do not add up
    to its amount (a price changed since) stays one line named after all its products, never split by guess;
    with no list cached at all, products are named by their id and NO_PRICE_LIST.
    A sale belongs to the hour and the period of its ``created_at``: when the tap was journaled.

    ``booked`` are the sales the wallet booked in ``period`` (``selection.sales_booked_in``): what the wallet
    server should show for the period is counted from them, as pretix dates a transaction when it books it
    (an offline tap at 23:58 delivered at 00:03 is the next day's there). Without them it is counted from
    the confirmed ``sales``, by when they were journaled.
    """
    products = tuple(products)
    # the names are the server's text: made printable once, here
    known = {str(p.id): Product(p.id, printable(p.name, 60), p.price_cents) for p in products}
    cached = bool(products)
    lines: dict[tuple[str, str], _Tallies] = {}
    sides = {"debit": _Tallies(), "topup": _Tallies(), "table": _Tallies()}
    rejected: dict[tuple[str, str], list[int]] = {}
    declined: Counter[tuple[str, str]] = Counter()
    not_served, refunded, by_hand, elsewhere = Tally(), Tally(), Tally(), Tally()
    net, transactions = 0, 0
    hours: dict[datetime, list[Tally]] = {}
    for sale in sales:
        cents = abs(sale.amount_cents)
        if sale.state is SaleState.DECLINED:
            declined[(decline_code(sale.reason), decline_group(sale.reason))] += 1
            continue
        if sale.state is SaleState.REJECTED:
            group = (rejection_code(sale.reason), rejection_group(sale.reason))
            if not sale.approved:
                # Refused while the guest waited at the tap: declined, nothing served, no money due.
                declined[group] += 1
            else:
                rejected.setdefault(group, []).append(cents)
            continue
        if sale.state is SaleState.DONE and sale.reason.startswith(BOOKED_ELSEWHERE_REASON):
            elsewhere = elsewhere.plus(cents)
            continue
        where = "confirmed" if sale.state is SaleState.DONE else "held" if sale.hold else "pending"
        kind = "table" if sale.pays_table else "topup" if sale.amount_cents > 0 else "debit"
        sides[kind].add(where, cents, sale.offline)
        if sale.state is SaleState.DONE:
            if booked is None:
                net, transactions = net + sale.amount_cents, transactions + 1
            if sale.resolved == "refunded":
                refunded = refunded.plus(cents)
            elif sale.resolved == "served":
                by_hand = by_hand.plus(cents)
            elif sale.to_refund:
                not_served = not_served.plus(cents)
        if kind == "table":
            continue
        for product, name, share in _split(sale, known, cached):
            lines.setdefault((kind, product), _Tallies(name)).add(where, share, sale.offline)
        hour = datetime.fromisoformat(sale.created_at).astimezone().replace(minute=0, second=0, microsecond=0)
        slot = hours.setdefault(hour, [Tally(), Tally()])
        side = 0 if kind == "debit" else 1
        slot[side] = slot[side].plus(cents)
    for sale in booked or ():
        if sale.state is SaleState.DONE and not sale.reason.startswith(BOOKED_ELSEWHERE_REASON):
            net, transactions = net + sale.amount_cents, transactions + 1
    return ShiftReport(
        period=period,
        products=tuple(
            ProductLine(product, t.name, kind, t.confirmed, t.pending, t.held, t.online, t.offline)
            for (kind, product), t in sorted(lines.items())
        ),
        debits=sides["debit"].side(),
        topups=sides["topup"].side(),
        rejected=tuple(
            ReasonLine(reason, len(amounts), sum(amounts), code)
            for (code, reason), amounts in sorted(rejected.items())
        ),
        declined=tuple(ReasonLine(reason, n, 0, code) for (code, reason), n in sorted(declined.items())),
        not_served=not_served,
        refunded=refunded,
        served_by_hand=by_hand,
        table_bills=sides["table"].side(),
        booked_elsewhere=elsewhere,
        wallet_net_cents=net,
        wallet_transactions=transactions,
        hours=tuple(HourLine(h, d, t) for h, (d, t) in sorted(hours.items())),
        wallet_time="journaled" if booked is None else "booked",
        prices_cached=cached,
    )


def rejection_code(reason: str) -> str:
    """The stable code of a rejected sale: the decline code the terminal journaled in front of the
    server's words (``bad_product: …`` → ``bad_product``), else ``other``."""
    code, _, said = reason.partition(": ")
    return code if said and code in {str(r) for r in DeclineReason} else OTHER


def rejection_group(reason: str) -> str:
    """The group a rejected sale's reason is counted in: the server's answer (``400: Insufficient
    balance``) without the decline code the terminal journaled in front of it (``bad_product: ``), which
    names what the guest was shown, not what the server said."""
    code, _, said = reason.partition(": ")
    text = said if said and code in {str(r) for r in DeclineReason} else reason
    return printable(text.strip(), REASON_CHARS).rstrip() or "(no reason)"  # the server's words


def _split(sale: SaleRecord, known: Mapping[str, Product], cached: bool) -> list[tuple[str, str, int]]:
    """(product id, name, cents) for each product the sale booked, by the cached prices when they add up
    to its amount; else the whole sale as one line, its name saying why (no price list cached, a product
    not in it, or prices changed since)."""
    ids = [str(p) for p in sale.products]
    prices = [known[i].price_cents if i in known else None for i in ids]
    if ids and None not in prices and sum(p or 0 for p in prices) == -sale.amount_cents:
        return [(i, known[i].name, abs(p or 0)) for i, p in zip(ids, prices, strict=True)]
    together = "+".join(ids) or "(no product)"
    if not ids:
        return [(together, "(no product)", abs(sale.amount_cents))]
    if not cached:
        why = NO_PRICE_LIST
    elif None in prices:
        why = "(not in the cached price list)"
    else:
        why = "(prices changed)"
    name = " + ".join(known[i].name if i in known else printable(i, 60) for i in ids)
    return [(together, f"{name} {why}", abs(sale.amount_cents))]


class _Tallies:
    """Running tallies of one product or one side, by where its sales stand and how they were decided."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.confirmed, self.pending, self.held = Tally(), Tally(), Tally()
        self.online, self.offline = Tally(), Tally()

    def add(self, where: str, cents: int, offline: bool = False) -> None:
        setattr(self, where, getattr(self, where).plus(cents))
        if offline:
            self.offline = self.offline.plus(cents)
        else:
            self.online = self.online.plus(cents)

    def side(self) -> Side:
        return Side(self.confirmed, self.pending, self.held, self.online, self.offline)
