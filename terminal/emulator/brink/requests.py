"""Reading the Ordering service's requests: the SOAPAction, then the envelope with defusedxml.

A request that cannot be read (not XML, a DTD or entity, the wrong envelope or operation, a missing or
malformed field) raises ``BadRequest``; the server answers it with a SOAP Fault and HTTP 500, as WCF does
when it cannot deserialize a message. Element names are matched with their namespaces (the design's wire
contract); prefixes are the sender's choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from terminal.emulator.brink.answers import OPERATION_NS, SOAP_NS

ACTION_PREFIX = f"{OPERATION_NS}/IOrderingWebService/"
OPERATIONS = ("GetParty", "ApplyPayment")
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T00:00:00)?$")
_INT = re.compile(r"^-?\d{1,19}$")


class BadRequest(ValueError):
    """The request cannot be deserialized; the message is the Fault's text."""


@dataclass(frozen=True)
class GetPartyRequest:
    business_date: date
    table_id: int


@dataclass(frozen=True)
class ApplyPaymentRequest:
    """``amount``/``tip`` as sent (decimal text); ``reference``: ReferenceDetails Name → Value."""

    order_id: int
    amount: str
    payment_id: int
    reference: dict[str, str]
    tender_id: int
    tip: str


def operation(soap_action: str | None) -> str:
    """The operation a ``SOAPAction`` header names (quoted or not); BadRequest for any other."""
    action = (soap_action or "").strip()
    if len(action) >= 2 and action[0] == action[-1] == '"':
        action = action[1:-1]
    name = action[len(ACTION_PREFIX) :] if action.startswith(ACTION_PREFIX) else ""
    if name not in OPERATIONS:
        shown = action[:120]
        raise BadRequest(
            f"The message with Action '{shown}' cannot be processed at the receiver, due to a "
            "ContractFilter mismatch at the EndpointDispatcher."
        )
    return name


def parse(body: bytes, op: str) -> GetPartyRequest | ApplyPaymentRequest:
    """The request of operation ``op`` in ``body``; BadRequest if it cannot be read."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise BadRequest(
            f"The request was refused: {type(exc).__name__} (no DTD or entities allowed)"
        ) from None
    except SafeET.ParseError as exc:
        raise BadRequest(f"The request is not well-formed XML: {exc}") from None
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise BadRequest("The request is not a SOAP 1.1 envelope")
    body_el = root.find(f"{{{SOAP_NS}}}Body")
    call = None if body_el is None else body_el.find(f"{{{OPERATION_NS}}}{op}")
    request = None if call is None else call.find(_q("request"))
    if request is None:
        raise BadRequest(f"The body has no {op}/request element in namespace {OPERATION_NS}")
    if op == "GetParty":
        return GetPartyRequest(_date(_field(request, "BusinessDate")), _int(request, "TableId"))
    payment = request.find(_q("Payment"))
    if payment is None:
        raise BadRequest("ApplyPayment/request has no Payment")
    return ApplyPaymentRequest(
        order_id=_int(request, "OrderId"),
        amount=_decimal(payment, "Amount"),
        payment_id=_int(payment, "Id"),
        reference=_pairs(payment),
        tender_id=_int(payment, "TenderId"),
        tip=_decimal(payment, "TipAmount"),
    )


def _q(name: str) -> str:
    return f"{{{OPERATION_NS}}}{name}"


def _field(parent: Element, name: str) -> str:
    child = parent.find(_q(name))
    if child is None:
        raise BadRequest(f"The request has no {name}")
    return (child.text or "").strip()


def _int(parent: Element, name: str) -> int:
    text = _field(parent, name)
    if not _INT.match(text):
        raise BadRequest(f"{name} {text[:30]!r} is not a whole number")
    return int(text)


def _decimal(parent: Element, name: str) -> str:
    text = _field(parent, name)
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or "e" in text.lower():
        raise BadRequest(f"{name} {text[:30]!r} is not a decimal number")
    return text


def _date(text: str) -> date:
    match = _DATE.match(text)
    try:
        if match is None:
            raise ValueError
        return date.fromisoformat(match.group(1))
    except ValueError:
        raise BadRequest(f"BusinessDate {text[:30]!r} is not a date (YYYY-MM-DD)") from None


def _pairs(payment: Element) -> dict[str, str]:
    details = payment.find(_q("ReferenceDetails"))
    pairs: dict[str, str] = {}
    for pair in [] if details is None else details.findall(_q("NameValuePair")):
        name, value = pair.find(_q("Name")), pair.find(_q("Value"))
        if name is None or value is None:
            raise BadRequest("A ReferenceDetails NameValuePair needs Name and Value")
        pairs[name.text or ""] = value.text or ""
    return pairs
