"""The Ordering service's answers as text: GetParty and ApplyPayment results in two styles, and SOAP Faults.

Rendered by hand, not with xml.etree, because the "seed" style must reproduce the seed document's text
(seeds/003): indented, an ``i:`` prefix used but never declared, ``Message`` "Success". The "wcf" style is
what a real WCF service sends: one line, ``xmlns:i`` declared on the envelope, ``Message``
``i:nil="true"`` on success, every data member present (nil when empty). Both list members in
alphabetical order, as WCF's DataContract serializer does. Text and attribute values are escaped.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from terminal.emulator.brink.parties import NIL, Deposit, Entry, Order, Party, Payment, amount

Style = Literal["seed", "wcf"]
STYLES: tuple[Style, ...] = ("seed", "wcf")
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OPERATION_NS = "http://www.brinksoftware.com/webservices/ordering/20140219"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
CONTENT_TYPE = "text/xml; charset=utf-8"
NIL_ATTR = {"i:nil": "true"}


@dataclass
class Node:
    """An element: text, or children (none: ``<Tag/>``), with attributes written in the given order."""

    tag: str
    text: str | None = None
    children: list[Node] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)


def _el(tag: str, *children: Node, **attrs: str) -> Node:
    return Node(tag, None, list(children), dict(attrs))


def _text(tag: str, value: object) -> Node:
    if isinstance(value, bool):
        return Node(tag, "true" if value else "false")
    return Node(tag, str(value))


def _nil(tag: str) -> Node:
    return Node(tag, attrs=dict(NIL_ATTR))


def _maybe(tag: str, value: object | None) -> Node:
    return _nil(tag) if value is None else _text(tag, value)


def render(node: Node, pretty: bool, depth: int = 0) -> str:
    """``node`` as XML text; ``pretty``: children on their own lines indented two spaces (the seed's)."""
    attrs = "".join(f" {name}={quoteattr(value)}" for name, value in node.attrs.items())
    if node.text is not None:
        return f"<{node.tag}{attrs}>{escape(node.text)}</{node.tag}>"
    if not node.children:
        return f"<{node.tag}{attrs}/>"
    pad = "\n" + "  " * (depth + 1) if pretty else ""
    inner = "".join(pad + render(child, pretty, depth + 1) for child in node.children)
    close = "\n" + "  " * depth if pretty else ""
    return f"<{node.tag}{attrs}>{inner}{close}</{node.tag}>"


def _envelope(body: Node, style: Style) -> bytes:
    attrs = {"xmlns:s": SOAP_NS} if style == "seed" else {"xmlns:s": SOAP_NS, "xmlns:i": XSI_NS}
    envelope = Node("s:Envelope", children=[_el("s:Body", body)], attrs=attrs)
    return render(envelope, pretty=style == "seed").encode("utf-8")


def _message(code: int, message: str, style: Style) -> Node:
    if code == 0 and style == "wcf":
        return _nil("Message")
    return _text("Message", "Success" if code == 0 else message)


def get_party_answer(code: int, message: str, party: Party | None, style: Style) -> bytes:
    """``GetPartyResponse/GetPartyResult/{Message, ResultCode, Party}``; Party only on code 0."""
    result = [_message(code, message, style), _text("ResultCode", code)]
    if party is not None and code == 0:
        result.append(_party(party, full=style == "wcf"))
    elif style == "wcf":
        result.append(_nil("Party"))
    response = _el("GetPartyResponse", _el("GetPartyResult", *result), xmlns=OPERATION_NS)
    return _envelope(response, style)


def apply_payment_answer(code: int, message: str, style: Style) -> bytes:
    """``ApplyPaymentResponse/ApplyPaymentResult/{Message, ResultCode}``."""
    result = _el("ApplyPaymentResult", _message(code, message, style), _text("ResultCode", code))
    return _envelope(_el("ApplyPaymentResponse", result, xmlns=OPERATION_NS), style)


def fault(text: str, code: str = "s:Client") -> bytes:
    """A SOAP 1.1 Fault as WCF sends it (with HTTP 500)."""
    body = _el(
        "s:Fault",
        _text("faultcode", code),
        Node("faultstring", text, attrs={"xml:lang": "en-US"}),
    )
    envelope = Node("s:Envelope", children=[_el("s:Body", body)], attrs={"xmlns:s": SOAP_NS})
    return render(envelope, pretty=False).encode("utf-8")


# --- the party -------------------------------------------------------------------------------------------


def _money(value: Decimal | str) -> str:
    return str(value)


def _date(value: object) -> str:
    return f"{value}T00:00:00"


def _party(party: Party, *, full: bool) -> Node:
    return _el(
        "Party",
        _text("CreatedTime", party.created_time),
        _text("Id", party.id),
        _text("Name", party.title),
        _el("Orders", *(_order(o, party, full) for o in party.orders)),
        _text("OwnerEmployeeId", party.owner_employee_id),
        _text("Size", party.size),
        _text("TableId", party.table_id),
    )


def _order(order: Order, party: Party, full: bool) -> Node:
    fields: list[Node] = []
    if order.balance == NIL:
        fields.append(_nil("Balance"))
    elif order.balance is not None:
        fields.append(_text("Balance", order.balance))
    fields.append(_text("BusinessDate", _date(party.business_date)))
    if full or order.is_closed:
        fields.append(_maybe("ClosedTime", order.closed_time))
    fields += [
        _text("CreatedTime", order.created_time),
        _text("CustomerId", "00000000-0000-0000-0000-000000000000"),
    ]
    if full or order.deposits:
        fields.append(_el("Deposits", *(_deposit(d) for d in order.deposits)))
    tax = order.tax_amount()
    fields += [
        _text("DestinationId", 1),
        _el("Discounts"),
        _el("Entries", *(_entry(e, full) for e in order.entries)),
        _nil("FutureOrder"),
        _text("Id", order.id),
        _text("IdEncoded", base64.b64encode(str(order.id).encode()).decode()),
        _text("IsClosed", order.is_closed),
        _text("IsSent", True),
        _text("IsTaxExempt", False),
        _text("LaneId", 1),
        _text("Name", order.name),
        _text("Number", order.number or 2000 + order.id % 1000),
        _el("Payments", *(_payment(p) for p in order.payments)),
        _el("Promotions"),
        _text("Rounding", "0.00"),
        _text("SectionId", 1),
        _text("Subtotal", _money(order.subtotal())),
        _el("Surcharges"),
        _text("Tax", _money(tax)),
        _el("Taxes", *_taxes("OrderTax", tax)),
        _text("Total", _money(order.total_amount())),
    ]
    return _el("Order", *fields)


def _taxes(tag: str, tax: Decimal) -> list[Node]:
    if tax == 0:
        return []
    return [_el(tag, _text("Amount", _money(tax)), _text("Id", 1), _text("TaxId", 1))]


def _flags(entry: Entry, full: bool) -> list[Node]:
    """IsDeleted/IsVoided: always in the wcf style, only when true in the seed's (which lacks them)."""
    flags = []
    if full or entry.deleted:
        flags.append(_text("IsDeleted", entry.deleted))
    if full or entry.voided:
        flags.append(_text("IsVoided", entry.voided))
    return flags


def _entry(entry: Entry, full: bool) -> Node:
    if entry.gift_card:
        return _el(
            "OrderEntry",
            _nil("DayPartId"),
            _text("Description", entry.description),
            _text("Id", entry.id),
            *_flags(entry, full),
            _text("ItemId", entry.item_id),
            _text("Price", entry.price),
            _el("Promotions"),
            **{"i:type": "OrderGiftCard"},
        )
    return _el(
        "OrderEntry",
        _el("ComboItems"),
        _nil("ComponentId"),
        _text("CompositeOrderItemId", 0),
        _text("Denominator", 1),
        _text("Description", entry.description),
        _text("DestinationId", 1),
        _el("Discounts"),
        _text("Id", entry.id),
        *_flags(entry, full),
        _text("ItemId", entry.item_id),
        _el("Modifiers"),
        _maybe("Note", entry.note),
        _text("Price", entry.price),
        _el("Promotions"),
        _text("Seat", 1),
        _text("SplitItemId", 0),
        _el("Taxes", *_taxes("OrderEntryTax", amount(entry.tax))),
        **{"i:type": "OrderItem"},
    )


def _payment(payment: Payment) -> Node:
    pairs = (_el("NameValuePair", _text("Name", n), _text("Value", v)) for n, v in payment.additional.items())
    return _el(
        "OrderPayment",
        _el("AdditionalData", *pairs),
        _text("Amount", payment.amount),
        _text("BusinessDate", _date(payment.business_date)),
        _text("Id", payment.id),
        _text("IsDeleted", payment.deleted),
        _text("TenderId", payment.tender_id),
        _text("TipAmount", payment.tip),
    )


def _deposit(deposit: Deposit) -> Node:
    return _el(
        "OrderDeposit",
        _text("Amount", deposit.amount),
        _text("BusinessDate", _date(deposit.business_date)),
        _nil("EmployeeId"),
        _text("Id", deposit.id),
        _text("IsApplied", deposit.applied),
        _text("IsDeleted", deposit.deleted),
        _text("IsReversal", deposit.reversal),
        _maybe("OriginalOrderDepositId", deposit.original_id),
        _text("PaymentId", deposit.payment_id),
        _text("TenderId", deposit.tender_id),
    )
