"""The SOAP 1.1 request bodies of GetParty and ApplyPayment, built with xml.etree (never by formatting text).

Follows seed 003's GetParty example (prefixes ``soapenv`` and ``ns``, an empty Header) and the wire
contract of docs/issue 14 for ApplyPayment (``OrderId``, then ``Payment`` with ``Amount``, ``Id``,
``ReferenceDetails``, ``TenderId``, ``TipAmount`` in that order). Bodies are UTF-8 bytes, no declaration.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from decimal import Decimal

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OP_NS = "http://www.brinksoftware.com/webservices/ordering/20140219"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
ACTION_BASE = f"{OP_NS}/IOrderingWebService/"
KEY_NAME = "taptill_key"  # the ReferenceDetails pair that carries the payment record's key
MAX_AMOUNT_CENTS = 10**11  # a billion in currency units: beyond is not a table's bill but a bug


def soap_action(operation: str) -> str:
    """The SOAPAction header's value, quoted as SOAP 1.1 wants: ``"http://…/IOrderingWebService/GetParty"``."""
    return f'"{ACTION_BASE}{operation}"'


def amount_text(cents: int) -> str:
    """Integer cents as Brink's decimal with two places: ``2699`` → ``"26.99"``, ``5`` → ``"0.05"``."""
    return f"{Decimal(cents).scaleb(-2):.2f}"


def get_party_body(business_date: dt.date, table_id: int) -> bytes:
    """GetParty for ``table_id`` on ``business_date`` (sent as ``YYYY-MM-DD``)."""
    if not 0 <= table_id < 2**31:
        raise ValueError(f"table id {table_id} is not an int Brink knows (0 to 2^31-1)")
    envelope, body = _envelope()
    request = _sub(_sub(body, "ns:GetParty"), "ns:request")
    _sub(request, "ns:BusinessDate", business_date.isoformat())
    _sub(request, "ns:TableId", str(table_id))
    return _bytes(envelope)


def apply_payment_body(order_id: int, amount_cents: int, tender_id: int, key: str) -> bytes:
    """ApplyPayment of ``amount_cents`` (more than 0) to ``order_id`` with tender ``tender_id``, a new
    payment (``Id`` 0) carrying ``key`` as ReferenceDetails ``taptill_key``; no tip."""
    if not 0 < amount_cents <= MAX_AMOUNT_CENTS:
        raise ValueError(f"payment amount {amount_cents} cents is not between 1 and {MAX_AMOUNT_CENTS}")
    if not 0 <= order_id < 2**63 or not 0 <= tender_id < 2**31:
        raise ValueError(f"order id {order_id} or tender id {tender_id} is out of Brink's range")
    if not key or not key.isascii() or not key.isprintable():
        raise ValueError("the payment key must be printable ASCII")
    envelope, body = _envelope()
    request = _sub(_sub(body, "ns:ApplyPayment"), "ns:request")
    _sub(request, "ns:OrderId", str(order_id))
    payment = _sub(request, "ns:Payment")
    _sub(payment, "ns:Amount", amount_text(amount_cents))
    _sub(payment, "ns:Id", "0")
    pair = _sub(_sub(payment, "ns:ReferenceDetails"), "ns:NameValuePair")
    _sub(pair, "ns:Name", KEY_NAME)
    _sub(pair, "ns:Value", key)
    _sub(payment, "ns:TenderId", str(tender_id))
    _sub(payment, "ns:TipAmount", amount_text(0))
    return _bytes(envelope)


def _envelope() -> tuple[ET.Element, ET.Element]:
    # Prefixed names written as they are (with their xmlns attributes) keep the seed's prefixes without
    # ET.register_namespace, which would change every other serialisation in the process.
    envelope = ET.Element("soapenv:Envelope", {"xmlns:soapenv": SOAP_NS, "xmlns:ns": OP_NS})
    _sub(envelope, "soapenv:Header")
    return envelope, _sub(envelope, "soapenv:Body")


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _bytes(envelope: ET.Element) -> bytes:
    data: bytes = ET.tostring(envelope, encoding="utf-8", xml_declaration=False)
    return data
