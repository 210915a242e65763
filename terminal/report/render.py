"""A shift report as text for a person, CSV for a spreadsheet, JSON for scripts (cents as integers)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from terminal.model import printable
from terminal.report.export import text_cell
from terminal.report.shift import NO_PRICE_LIST_NOTE, ShiftReport, Side, Tally

FORMATS = ("text", "csv", "json")
# What a row's ``count`` counts (CSV column ``counted``): a product row's count is units (a cart of two
# espressos counts two), a total's sales, a declined row's taps, the wallet's row its transactions.
UNITS, SALES, TAPS, TRANSACTIONS = "units", "sales", "taps", "transactions"
CSV_COLUMNS = (
    "kind",
    "key",
    "name",
    "counted",
    "count",
    "cents",
    "euros",
    "confirmed_count",
    "confirmed_cents",
    "pending_count",
    "pending_cents",
    "held_count",
    "held_cents",
    "online_count",
    "online_cents",
    "offline_count",
    "offline_cents",
)


def euros(cents: int) -> str:
    """Cents as a plain amount with two decimals (``-1234`` → ``-12.34``), exact: Decimal, never float."""
    return str((Decimal(cents) / 100).quantize(Decimal("0.01")))


def render(report: ShiftReport, fmt: str, currency: str = "EUR") -> str:
    """The report in ``fmt`` (one of FORMATS), ending in a newline."""
    if fmt == "json":
        return json.dumps(as_json(report, currency), indent=1) + "\n"
    if fmt == "csv":
        return as_csv(report)
    return as_text(report, currency)


def _tally(t: Tally) -> dict[str, int]:
    return {"count": t.count, "cents": t.cents}


def _side(s: Side) -> dict[str, dict[str, int]]:
    return {
        "sold": _tally(s.sold),
        "confirmed": _tally(s.confirmed),
        "pending": _tally(s.pending),
        "held": _tally(s.held),
        "online": _tally(s.online),
        "offline": _tally(s.offline),
    }


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone().isoformat(timespec="seconds")


def as_json(report: ShiftReport, currency: str = "EUR") -> dict[str, Any]:
    """The report as one JSON object: every amount in integer cents, never negative but
    ``wallet.net_cents`` (signed as the wallet books: a debit negative); times local, ISO 8601."""
    return {
        "since": _when(report.period.since),
        "until": _when(report.period.until),
        "currency": currency,
        # which time puts a sale in the period, per figure: "journaled" (when the tap was journaled) or
        # "booked" (when the wallet booked it, as pretix dates it)
        "times": report.times,
        "products": [
            {
                "product": p.product,
                "name": p.name,
                "kind": p.kind,
                "sold": _tally(p.sold),
                "confirmed": _tally(p.confirmed),
                "pending": _tally(p.pending),
                "held": _tally(p.held),
                "online": _tally(p.online),
                "offline": _tally(p.offline),
            }
            for p in report.products
        ],
        "prices_cached": report.prices_cached,
        "debits": _side(report.debits),
        "topups": _side(report.topups),
        "table_bills": _side(report.table_bills),
        "booked_elsewhere": _tally(report.booked_elsewhere),
        "rejected": [
            {"code": r.code, "reason": r.reason, "count": r.count, "cents": r.cents} for r in report.rejected
        ],
        "rejected_total": _tally(report.rejected_total),
        "declined": [{"code": r.code, "reason": r.reason, "count": r.count} for r in report.declined],
        "declined_total": report.declined_total,
        "not_served": _tally(report.not_served),
        "refunded": _tally(report.refunded),
        "served_by_hand": _tally(report.served_by_hand),
        "wallet": {
            "net_cents": report.wallet_net_cents,
            "transactions": report.wallet_transactions,
            "time": report.wallet_time,
        },
        "hours": [
            {"hour": _when(h.hour), "debits": _tally(h.debits), "topups": _tally(h.topups)}
            for h in report.hours
        ],
    }


def as_csv(report: ShiftReport) -> str:
    """One row per product (kind ``product-debit`` / ``product-topup``), the totals (``debits``,
    ``topups``, ``table-bills``, ``booked-elsewhere``, ``not-served``, ``refunded``, ``served-by-hand``),
    one per reason (``rejected``, ``declined``: key its stable code), one per hour (``hour-debits``,
    ``hour-topups``, key the hour's local start) and ``wallet-net`` (count: transactions, cents signed as
    the wallet books). ``counted`` says what each row's count counts; text cells go through ``text_cell``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()

    def row(kind: str, key: str, name: str, counted: str, total: Tally, side: Side | None = None) -> None:
        cells: dict[str, object] = {
            "kind": kind,
            "key": text_cell(key),
            "name": text_cell(name),
            "counted": counted,
            "count": total.count,
            "cents": total.cents,
            "euros": euros(total.cents),
        }
        if side is not None:
            for part in ("confirmed", "pending", "held", "online", "offline"):
                t: Tally = getattr(side, part)
                cells[f"{part}_count"], cells[f"{part}_cents"] = t.count, t.cents
        writer.writerow(cells)

    for p in report.products:
        side = Side(p.confirmed, p.pending, p.held, p.online, p.offline)
        row(f"product-{p.kind}", p.product, p.name, UNITS, p.sold, side)
    row("debits", "", "debits", SALES, report.debits.sold, report.debits)
    row("topups", "", "top-ups", SALES, report.topups.sold, report.topups)
    row("table-bills", "", "table bills", SALES, report.table_bills.sold, report.table_bills)
    row("booked-elsewhere", "", "booked elsewhere", SALES, report.booked_elsewhere)
    row("not-served", "", "charged but not served", SALES, report.not_served)
    row("refunded", "", "refunded by staff", SALES, report.refunded)
    row("served-by-hand", "", "served by hand", SALES, report.served_by_hand)
    for r in report.rejected:
        row("rejected", r.code, r.reason, SALES, Tally(r.count, r.cents))
    for r in report.declined:
        row("declined", r.code, r.reason, TAPS, Tally(r.count, 0))
    for h in report.hours:
        hour = _when(h.hour) or ""
        row("hour-debits", hour, "debits", SALES, h.debits)
        row("hour-topups", hour, "top-ups", SALES, h.topups)
    net = Tally(report.wallet_transactions, report.wallet_net_cents)
    by = "when the wallet booked them" if report.wallet_time == "booked" else "when they were journaled"
    row("wallet-net", "", f"wallet server net (sales by {by})", TRANSACTIONS, net)
    return out.getvalue()


def _span(report: ShiftReport) -> str:
    since, until = report.period.since, report.period.until
    fmt = "%Y-%m-%d %H:%M"
    start = "the first sale" if since is None else since.astimezone().strftime(fmt)
    end = "now" if until is None else until.astimezone().strftime(fmt)
    zone = datetime.now().astimezone().tzname()
    return f"{start} to {end} ({zone})"


def _wallet_lines(report: ShiftReport) -> list[str]:
    """How the wallet's figure was counted, under it."""
    n = report.wallet_transactions
    if report.wallet_time == "booked":
        return [
            f"  (credits minus debits, in {n} transaction(s) the wallet booked in this period;",
            "  a sale counts when the wallet booked it, as pretix dates it, not when it was journaled)",
        ]
    return [f"  (credits minus debits, in {n} transaction(s): the confirmed ones above)"]


def as_text(report: ShiftReport, currency: str = "EUR") -> str:
    """The report for a person: aligned columns, amounts in ``currency`` with two decimals."""
    width = 40
    lines = [
        f"Shift report {_span(report)}: sales by when the tap was journaled; amounts in {currency}",
        "",
        f"{'Product':<{width}} {'Sold':>5} {currency:>9}  {'Confirmed':>9} {'Pending':>7} {'Held':>5}",
    ]
    for p in report.products:
        name = printable(p.name, width - (10 if p.kind == "topup" else 0))
        label = f"{name} (top-up)" if p.kind == "topup" else name
        lines.append(
            f"{label:<{width}} {p.sold.count:>5} {euros(p.sold.cents):>9}  {p.confirmed.count:>9} "
            f"{p.pending.count:>7} {p.held.count:>5}"
        )
    if not report.products:
        lines.append("(nothing sold in this period)")
    elif not report.prices_cached:
        lines.append(NO_PRICE_LIST_NOTE)

    def row(label: str, t: Tally, note: str = "") -> str:
        return f"{label:<{width}} {t.count:>5} {euros(t.cents):>9}" + (f"  {note}" if note else "")

    lines += ["", f"{'Money':<{width}} {'Count':>5} {currency:>9}"]
    sides = [("Debits (sales)", report.debits), ("Top-ups", report.topups)]
    if report.table_bills.sold.count:
        sides.append(("Table bills", report.table_bills))
    for label, side in sides:
        lines += [
            row(label, side.sold),
            row("  confirmed by the wallet", side.confirmed),
            row("  pending (not confirmed yet)", side.pending),
            row("  held for reconciliation", side.held, "taptill queue, taptill settle"),
            row("  decided online", side.online),
            row("  decided offline", side.offline),
        ]
    if report.booked_elsewhere.count:
        lines.append(
            row("Booked elsewhere", report.booked_elsewhere, "another terminal's: no money moved here")
        )
    lines.append(row("Rejected by the wallet", report.rejected_total, "money not collected"))
    # A reason line: its code in the label column, the whole reason after the figures (the server's words
    # name the product and the answer; cut to the column they said nothing).
    lines += [row(f"  {r.code}", Tally(r.count, r.cents), r.reason) for r in report.rejected]
    lines.append(row("Charged but not served", report.not_served, "to refund or serve: taptill queue"))
    if report.refunded.count or report.served_by_hand.count:
        lines.append(row("  refunded by staff", report.refunded))
        lines.append(row("  served by hand", report.served_by_hand))
    lines.append(f"{'Declined taps (no money moved)':<{width}} {report.declined_total:>5}")
    lines += [
        f"{'  ' + r.code:<{width}} {r.count:>5}" + ("" if r.reason == r.code else f"            {r.reason}")
        for r in report.declined
    ]
    if report.hours:
        lines += ["", f"{'Hour':<17} {'Sales':>5} {currency:>9}  {'Top-ups':>7} {currency:>9}"]
        for h in report.hours:
            lines.append(
                f"{h.hour.strftime('%Y-%m-%d %H:00'):<17} {h.debits.count:>5} {euros(h.debits.cents):>9}  "
                f"{h.topups.count:>7} {euros(h.topups.cents):>9}"
            )
    lines += [
        "",
        f"Wallet server should show for this terminal: {euros(report.wallet_net_cents)} {currency} net",
        *_wallet_lines(report),
    ]
    return "\n".join(lines) + "\n"
