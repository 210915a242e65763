"""A booked sale as a ready2order invoice: the record kept in the outbox, and the request built from it.

The record (its payload) holds the sale's facts as the wallet booked them: each product with its wallet
name, quantity and unit price in integer cents, the total, the time of sale and whether the terminal was
in training mode. The request is built from it when it is sent, with the product mapping of the config
then (``[ready2order.products]``: a mapping fixed after a hold sends the record as fixed).

Signs: every line is positive. A debit's lines are the products the guest got, paid with the wallet
(``payment_method_id``). A top-up is billed as the sale of wallet credit, a voucher: one positive line per
credited product (map it to a ready2order product with 0 % VAT, as a multi-purpose voucher is taxed when
it is spent), paid as ``topup_payment_method_id`` says (the cash the operator took; default
``payment_method_id``). No negative line is ever sent: in a fiscal POS a negative line is a return.

Who credited: the wallet server keeps no trace of it (the real plugin accepts a transaction's description,
tag and idempotency key and stores none of them), so a top-up's invoice text names the operator the
journal holds: the fiscal record is where the venue's books show who took the cash and credited.

Amounts are integer cents turned into exact decimal strings (250 → ``"2.50"``); the invoice total the
server answers is compared with ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from terminal.journal import SaleRecord
from terminal.model import Product, printable
from terminal.ready2order.config import Ready2OrderConfig

TEXT_MAX = 200
NAME_MAX = 100


def euros_text(cents: int) -> str:
    """Integer cents as an exact decimal string of euros: 250 → "2.50", 5 → "0.05", -100 → "-1.00"."""
    return str(Decimal(cents).scaleb(-2))


def euros_of(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


# --- the record, made in the journal transaction that marks the sale booked ------------------------------


def record_payload(
    sale: SaleRecord, catalog: Sequence[Product], *, training: bool, terminal: str
) -> dict[str, Any]:
    """The outbox record of a booked sale (JSON object). Unit prices come from the wallet's product list;
    when the sale has one product they come from its amount (the booked truth), whatever the list says."""
    total = abs(sale.amount_cents)
    quantities: dict[str, int] = {}
    for pid in sale.products:
        quantities[str(pid)] = quantities.get(str(pid), 0) + 1
    known = {str(p.id): p for p in catalog}
    lines = []
    for pid, qty in quantities.items():
        product = known.get(pid)
        unit: int | None = None if product is None else abs(product.price_cents)
        if len(quantities) == 1 and total % qty == 0:
            unit = total // qty
        lines.append(
            {
                "product": pid,
                "name": printable(product.name, NAME_MAX) if product is not None else pid,
                "quantity": qty,
                "unit_cents": unit,
            }
        )
    record: dict[str, Any] = {
        "kind": "topup" if sale.amount_cents > 0 else "sale",
        "lines": lines,
        "total_cents": total,
        "sold_at": sale.created_at,
        "training": training,
        "terminal": printable(terminal, NAME_MAX),
    }
    if sale.operator is not None:
        record["operator"] = printable(sale.operator, NAME_MAX)
    return record


# --- the request, built when it is sent ------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceRequest:
    """The body of ``PUT /document/invoice`` and what the answer must say."""

    body: dict[str, Any]
    total: Decimal  # euros
    training: bool


@dataclass(frozen=True)
class NotBillable:
    """The record cannot become an invoice as it stands; a person fixes it (``detail`` says how)."""

    detail: str


def training_of(payload: Mapping[str, Any]) -> bool:
    return payload.get("training") is True


def sold_at_text(iso: object) -> str:
    """The time of sale in the terminal's local time, with its offset: "2024-06-01 21:14:05 +0200"."""
    try:
        when = datetime.fromisoformat(str(iso))
    except ValueError:
        return printable(str(iso), 40)
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def build_request(
    ref: str, payload: Mapping[str, Any], cfg: Ready2OrderConfig
) -> InvoiceRequest | NotBillable:
    """The invoice for the record ``ref`` (its external reference), or why it cannot be billed."""
    lines = payload.get("lines")
    total = payload.get("total_cents")
    if not isinstance(lines, list) or not lines or not _cents(total):
        return NotBillable("the record cannot be read; enter the sale in ready2order by hand")
    items: list[dict[str, Any]] = []
    unmapped: list[str] = []
    summed = 0
    for line in lines:
        read = _line(line)
        if read is None:
            return NotBillable("the record cannot be read; enter the sale in ready2order by hand")
        product, name, qty, unit = read
        if unit is None:
            return NotBillable(
                f"the price of wallet product {product} was unknown when the sale was booked; enter the "
                "sale in ready2order by hand"
            )
        mapping = cfg.mapping_for(product)
        if mapping is None:
            unmapped.append(product)
            continue
        summed += unit * qty
        items.append(
            {
                "item_name": mapping.name or name or product,
                "item_quantity": qty,
                "item_price": euros_text(unit),
                "item_vatId": mapping.vat_id,
                "item_priceBase": "brutto",
                "product_id": mapping.product_id,
            }
        )
    if unmapped:
        return NotBillable(
            f"wallet product(s) {', '.join(unmapped)} have no [ready2order.products] entry: add them, "
            "restart, then taptill settle REF --not-booked"
        )
    assert isinstance(total, int)
    if summed != total:
        return NotBillable(
            f"its lines add up to {euros_text(summed)}, the wallet booked {euros_text(total)} (a price "
            "changed between the tap and the booking); enter the sale in ready2order by hand"
        )
    training = training_of(payload)
    topup = payload.get("kind") == "topup"
    method = (cfg.topup_payment_method_id or cfg.payment_method_id) if topup else cfg.payment_method_id
    terminal = payload.get("terminal") if isinstance(payload.get("terminal"), str) else "taptill"
    text = f"taptill {terminal}: {'top-up' if topup else 'sale'} at {sold_at_text(payload.get('sold_at'))}"
    operator = payload.get("operator")
    if isinstance(operator, str) and operator:
        text += f" by operator {operator}"
    body = {
        "paymentMethod_id": method,
        "user_id": cfg.user_id,
        "invoice_priceBase": "gross",
        "invoice_externalReferenceNumber": ref,
        "invoice_testMode": training,
        "invoice_text": printable(text, TEXT_MAX),
        "items": items,
    }
    return InvoiceRequest(body, euros_of(total), training)


def _line(line: object) -> tuple[str, str, int, int | None] | None:
    """(wallet product id, name, quantity, unit cents or None) of a record's line; None if unreadable."""
    if not isinstance(line, dict):
        return None
    product, name, qty, unit = (line.get(k) for k in ("product", "name", "quantity", "unit_cents"))
    if not isinstance(product, str) or not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
        return None
    if unit is not None and not _cents(unit):
        return None
    return product, name if isinstance(name, str) else "", qty, unit


def _cents(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
