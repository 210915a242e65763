"""Read the Ordering service's SOAP answers into typed values and outcomes; pure, never raising for what a
server sends.

The XML parser is defusedxml's (no DTD at all, no entities, no external references): a body with a DOCTYPE
is refused before anything in it is expanded or fetched, and a body over the size limit is refused before
it is parsed. Seed 003's example answer uses an ``i:`` prefix it never declares; when, and only when,
expat reports that unbound prefix, ``xmlns:i`` (XMLSchema-instance) is declared on the root's start tag and
the answer parsed again, so the seed's text and a WCF answer that declares it read the same. Elements are
matched by local name in the operation namespace or in none. Amounts are decimals in currency units, made
integer cents with ``Decimal``; one that is not a whole number of cents is refused, naming the field.
``i:nil="true"`` on any element means absent. Every server text goes through ``terminal.model.printable``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any, cast
from xml.parsers.expat import errors as expat_errors

import defusedxml
import defusedxml.ElementTree

from terminal.brink.envelope import OP_NS, SOAP_NS, XSI_NS
from terminal.brink.outcomes import (
    AccessDenied,
    BillUnreadable,
    Fault,
    InvalidRequest,
    NoParty,
    OrderClosed,
    OrderGone,
    PartyFound,
    PartyOutcome,
    PaymentApplied,
    PaymentOutcome,
    PaymentRefused,
    PaymentUnknown,
    PosUnavailable,
    Unreachable,
)
from terminal.brink.party import Deposit, Entry, EntryKind, Order, Party, Payment
from terminal.model import printable

DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024
TEXT_MAX = 200
MAX_UNITS = Decimal(10**9)  # a billion in currency units: beyond is not a bill
_UNBOUND_PREFIX = expat_errors.codes[expat_errors.XML_ERROR_UNBOUND_PREFIX]
_DECIMAL = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,12})?")
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
_ENTRY_KINDS: dict[str, EntryKind] = {"OrderItem": "item", "OrderGiftCard": "giftcard"}
_XSI_DECLARATION = f' xmlns:i="{XSI_NS}"'.encode()


class BadAnswer(ValueError):
    """The body is not an answer of the Ordering service, or a value in it cannot be read; the message is
    one printable line naming the field."""


# --- the document ------------------------------------------------------------------------------------


def read_document(data: bytes, max_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> ET.Element:
    """The root element of ``data`` parsed safely (see the module); raises BadAnswer."""
    if len(data) > max_bytes:
        raise BadAnswer(f"the answer is over {max_bytes} bytes")
    try:
        return _parse(data)
    except ET.ParseError as exc:
        if exc.code != _UNBOUND_PREFIX:
            raise BadAnswer(f"the answer is not well-formed XML ({printable(str(exc), TEXT_MAX)})") from None
    try:
        return _parse(_declare_xsi(data))
    except ET.ParseError as exc:
        raise BadAnswer(f"the answer is not well-formed XML ({printable(str(exc), TEXT_MAX)})") from None


def _parse(data: bytes) -> ET.Element:
    try:
        root: Any = defusedxml.ElementTree.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DefusedXmlException as exc:
        refused = type(exc).__name__
        raise BadAnswer(f"the answer was refused unread: {refused} (a DOCTYPE or an entity)") from None
    return cast(ET.Element, root)


def _declare_xsi(data: bytes) -> bytes:
    """``data`` with ``xmlns:i`` declared on the root's start tag: after the prolog (declaration,
    comments, processing instructions, white space; a DOCTYPE is refused) and the root's name."""
    at = 0
    while True:
        while at < len(data) and data[at : at + 1].isspace():
            at += 1
        if data.startswith(b"<?", at):
            end = data.find(b"?>", at)
        elif data.startswith(b"<!--", at):
            end = data.find(b"-->", at)
        else:
            break
        if end < 0:
            raise BadAnswer("the answer is not well-formed XML (its prolog does not end)")
        at = end + 2
    name = re.compile(rb"<[^\s/>!?<]+").match(data, at)
    if name is None:
        raise BadAnswer("the answer is not well-formed XML (no root element)")
    return data[: name.end()] + _XSI_DECLARATION + data[name.end() :]


# --- the answers ---------------------------------------------------------------------------------------


def party_outcome(status: int, data: bytes, *, max_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> PartyOutcome:
    """A GetParty exchange's outcome from the HTTP ``status`` and the whole body ``data``."""
    if status in (401, 403):
        return AccessDenied(f"HTTP {status}", status=status)
    try:
        root = read_document(data, max_bytes)
        fault = find_fault(root)
        if fault is not None:
            return fault
        if status != 200:
            return Unreachable(f"HTTP {status} from the Ordering service")
        result = _result(root, "GetParty")
        code, message = _code(result), _message(result)
    except BadAnswer as exc:
        return Unreachable(f"HTTP {status}: {exc}" if status != 200 else str(exc))
    match code:
        case 0:
            party = _child(result, "Party")
            if party is None:
                return BillUnreadable("ResultCode 0 without a Party")
            try:
                return PartyFound(parse_party(party))
            except BadAnswer as exc:
                return BillUnreadable(str(exc))
        case 101:
            return NoParty(message)
        case 1 | 3:
            return PosUnavailable(code, message)
        case 2:
            return InvalidRequest(message)
        case 4:
            return AccessDenied(message)
    return Unreachable(f"GetParty answered ResultCode {code}, which seed 003 does not list ({message})")


def payment_outcome(status: int, data: bytes, *, max_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> PaymentOutcome:
    """An ApplyPayment exchange's outcome from the HTTP ``status`` and the whole body ``data``: anything
    but a definitive ResultCode leaves the payment unknown (it may have been applied)."""
    if status in (401, 403):
        return AccessDenied(f"HTTP {status}", status=status)
    try:
        root = read_document(data, max_bytes)
        fault = find_fault(root)
        if fault is not None:
            return PaymentUnknown(f"SOAP Fault {fault.code}: {fault.text}")
        if status != 200:
            return PaymentUnknown(f"HTTP {status} from the Ordering service")
        result = _result(root, "ApplyPayment")
        code, message = _code(result), _message(result)
    except BadAnswer as exc:
        return PaymentUnknown(f"HTTP {status}: {exc}")
    match code:
        case 0:
            return PaymentApplied(message)
        case 2 | 101 | 106:
            return PaymentRefused(code, message)
        case 102:
            return OrderGone(message)
        case 103:
            return OrderClosed(message)
        case 4:
            return AccessDenied(message)
        case 1 | 3 | 104:
            return PaymentUnknown(f"ResultCode {code}: {message}" if message else f"ResultCode {code}")
    return PaymentUnknown(f"ApplyPayment answered ResultCode {code}, which is not listed ({message})")


def find_fault(root: ET.Element) -> Fault | None:
    """The SOAP Fault in ``Envelope/Body``, if the answer is one."""
    body = _soap_body(root)
    fault = next((c for c in body if c.tag == f"{{{SOAP_NS}}}Fault"), None)
    if fault is None:
        return None
    code = next((c.text or "" for c in fault if _local(c.tag) == "faultcode"), "")
    text = next((c.text or "" for c in fault if _local(c.tag) == "faultstring"), "")
    return Fault(printable(code.strip(), TEXT_MAX), printable(text.strip(), TEXT_MAX))


def _soap_body(root: ET.Element) -> ET.Element:
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise BadAnswer("the answer is not a SOAP 1.1 envelope")
    body = next((c for c in root if c.tag == f"{{{SOAP_NS}}}Body"), None)
    if body is None:
        raise BadAnswer("the SOAP envelope has no Body")
    return body


def _result(root: ET.Element, operation: str) -> ET.Element:
    response = _child(_soap_body(root), f"{operation}Response")
    result = _child(response, f"{operation}Result") if response is not None else None
    if result is None:
        raise BadAnswer(f"the answer has no {operation}Response/{operation}Result")
    return result


def _code(result: ET.Element) -> int:
    code = _int(result, "ResultCode", "the result")
    if code is None:
        raise BadAnswer("the result has no ResultCode")
    return code


def _message(result: ET.Element) -> str:
    return _str(result, "Message")


# --- the party -----------------------------------------------------------------------------------------


def parse_party(element: ET.Element) -> Party:
    """A ``Party`` element (seed 003's properties); raises BadAnswer naming the field that cannot be read."""
    party_id = _required_int(element, "Id", "the party")
    where = f"party {party_id}"
    return Party(
        id=party_id,
        name=_str(element, "Name"),
        table_id=_required_int(element, "TableId", where),
        orders=tuple(_order(o, where) for o in _list(element, "Orders", "Order")),
    )


def _order(element: ET.Element, party: str) -> Order:
    order_id = _required_int(element, "Id", f"an order of {party}")
    where = f"order {order_id}"
    closed = _bool(element, "IsClosed", where)
    if closed is None:
        raise BadAnswer(f"{where} has no IsClosed")
    total = _cents(element, "Total", where)
    if total is None:
        raise BadAnswer(f"{where} has no Total")
    return Order(
        id=order_id,
        number=_int(element, "Number", where),
        name=_str(element, "Name"),
        is_closed=closed,
        total_cents=total,
        balance_cents=_cents(element, "Balance", where),
        payments=tuple(_payment(p, where) for p in _list(element, "Payments", "OrderPayment")),
        deposits=tuple(_deposit(d, where) for d in _list(element, "Deposits", "OrderDeposit")),
        entries=tuple(_entry(e, where) for e in _list(element, "Entries", "OrderEntry")),
    )


def _payment(element: ET.Element, order: str) -> Payment:
    where = f"a payment of {order}"
    amount = _cents(element, "Amount", where)
    if amount is None:
        raise BadAnswer(f"{where} has no Amount")
    pairs = _list(element, "AdditionalData", "NameValuePair")
    additional = tuple((_str(pair, "Name"), _str(pair, "Value")) for pair in pairs)
    return Payment(
        id=_int(element, "Id", where) or 0,
        amount_cents=amount,
        is_deleted=bool(_bool(element, "IsDeleted", where)),
        tender_id=_int(element, "TenderId", where),
        additional=additional,
    )


def _deposit(element: ET.Element, order: str) -> Deposit:
    where = f"a deposit of {order}"
    amount = _cents(element, "Amount", where)
    if amount is None:
        raise BadAnswer(f"{where} has no Amount")
    return Deposit(
        amount_cents=amount,
        is_applied=bool(_bool(element, "IsApplied", where)),
        is_deleted=bool(_bool(element, "IsDeleted", where)),
        is_reversal=bool(_bool(element, "IsReversal", where)),
    )


def _entry(element: ET.Element, order: str) -> Entry:
    declared = element.get(f"{{{XSI_NS}}}type", "OrderItem").rpartition(":")[2]
    kind = _ENTRY_KINDS.get(declared)
    if kind is None:
        shown = printable(declared, 40)
        raise BadAnswer(f"an entry of {order} is of type {shown!r}, not OrderItem or OrderGiftCard")
    entry_id = _int(element, "Id", f"an entry of {order}") or 0
    where = f"entry {entry_id} of {order}"
    return Entry(
        kind=kind,
        id=entry_id,
        description=_str(element, "Description"),
        price_cents=_cents(element, "Price", where) or 0,
        is_voided=bool(_bool(element, "IsVoided", where)),
        is_deleted=bool(_bool(element, "IsDeleted", where)),
    )


# --- values --------------------------------------------------------------------------------------------


def _local(tag: str) -> str | None:
    """The local name of a tag in the operation namespace or in none; None for any other namespace."""
    if not tag.startswith("{"):
        return tag
    namespace, _, local = tag[1:].partition("}")
    return local if namespace == OP_NS else None


def _child(parent: ET.Element, name: str) -> ET.Element | None:
    """The first child named ``name``; None if there is none or it is ``i:nil``."""
    for child in parent:
        if isinstance(child.tag, str) and _local(child.tag) == name:
            return None if _nil(child) else child
    return None


def _list(parent: ET.Element, name: str, item: str) -> Iterator[ET.Element]:
    container = _child(parent, name)
    if container is not None:
        for child in container:
            if isinstance(child.tag, str) and _local(child.tag) == item and not _nil(child):
                yield child


def _nil(element: ET.Element) -> bool:
    return element.get(f"{{{XSI_NS}}}nil", "").strip() in ("true", "1")


def _text(parent: ET.Element, name: str) -> str | None:
    child = _child(parent, name)
    return None if child is None else (child.text or "").strip()


def _str(parent: ET.Element, name: str) -> str:
    return printable(_text(parent, name) or "", TEXT_MAX)


def _int(parent: ET.Element, name: str, where: str) -> int | None:
    text = _text(parent, name)
    if text is None:
        return None
    if not _INTEGER.fullmatch(text):
        raise BadAnswer(f"{where}: {name} is {printable(text, 40)!r}, not a whole number")
    return int(text)


def _required_int(parent: ET.Element, name: str, where: str) -> int:
    value = _int(parent, name, where)
    if value is None:
        raise BadAnswer(f"{where} has no {name}")
    return value


def _bool(parent: ET.Element, name: str, where: str) -> bool | None:
    text = _text(parent, name)
    if text is None:
        return None
    if text not in _BOOLEANS:
        raise BadAnswer(f"{where}: {name} is {printable(text, 40)!r}, not true or false")
    return _BOOLEANS[text]


def _cents(parent: ET.Element, name: str, where: str) -> int | None:
    """A decimal amount in currency units as integer cents; None when absent or nil."""
    text = _text(parent, name)
    if text is None:
        return None
    return to_cents(text, f"{where}: {name}")


def to_cents(text: str, field: str) -> int:
    """``"24.99"`` → 2499 (``"24.990"`` too); raises BadAnswer for ``"24.995"`` or anything not a plain
    decimal, naming ``field``."""
    if not _DECIMAL.fullmatch(text):
        raise BadAnswer(f"{field} is {printable(text, 40)!r}, not a decimal amount")
    try:
        units = Decimal(text)
    except InvalidOperation:
        raise BadAnswer(f"{field} is {printable(text, 40)!r}, not a decimal amount") from None
    if abs(units) > MAX_UNITS:
        raise BadAnswer(f"{field} is {text}, beyond any bill")
    cents = units * 100
    if cents != cents.to_integral_value():
        raise BadAnswer(f"{field} is {text}, not a whole number of cents")
    return int(cents)
