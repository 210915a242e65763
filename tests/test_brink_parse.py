"""PAR Brink answers read into outcomes: seed 003's literal answer and the namespaced one, every ResultCode,
SOAP Faults, amounts to the cent, i:nil, and XML attacks refused unexpanded with nothing fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    Unreachable,
)
from terminal.brink.parse import BadAnswer, party_outcome, payment_outcome, read_document, to_cents
from terminal.brink.party import Deposit, Entry, Party, Payment
from tests.brink_lab import RawHttpServer, soap
from tests.brink_samples import (
    SEED_GET_PARTY,
    WCF_GET_PARTY,
    deposit,
    fault,
    gift_card,
    item,
    order,
    party_answer,
    payment,
    result,
)


def found(body: bytes) -> Party:
    outcome = party_outcome(200, body)
    assert isinstance(outcome, PartyFound), outcome
    return outcome.party


@pytest.mark.parametrize("answer", [SEED_GET_PARTY, WCF_GET_PARTY], ids=["seed", "wcf"])
def test_the_seeds_answer_reads_as_printed_and_namespaced(answer: bytes) -> None:
    party = found(answer)
    assert (party.id, party.name, party.table_id) == (50001, "Table 5", 5)
    (o,) = party.orders
    assert (o.id, o.number, o.name, o.is_closed) == (99001, 2001, "Guest 1", False)
    assert (o.total_cents, o.balance_cents, o.payments, o.deposits) == (2699, 0, (), ())
    assert o.entries == (Entry("item", 1, "Steak Dinner", 2499),)


def test_the_i_prefix_is_declared_only_when_the_parser_reports_it_unbound() -> None:
    declared = read_document(WCF_GET_PARTY)
    added = read_document(SEED_GET_PARTY)
    assert declared.attrib == added.attrib == {}  # xmlns is not an attribute once parsed
    other_prefix = SEED_GET_PARTY.replace(b'i:type="OrderItem"', b'q:type="OrderItem"')
    with pytest.raises(BadAnswer, match="not well-formed"):
        read_document(other_prefix)
    with pytest.raises(BadAnswer, match="not well-formed"):
        read_document(b"<s:Envelope><broken")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (101, NoParty("no party")),
        (1, PosUnavailable(1, "no party")),
        (3, PosUnavailable(3, "no party")),
        (2, InvalidRequest("no party")),
        (4, AccessDenied("no party")),
    ],
)
def test_every_get_party_result_code(code: int, expected: object) -> None:
    assert party_outcome(200, result("GetParty", code, "no party")) == expected


def test_an_unlisted_result_code_and_a_success_without_party_are_not_a_bill() -> None:
    assert isinstance(party_outcome(200, result("GetParty", 7)), Unreachable)
    assert party_outcome(200, result("GetParty", 0)) == BillUnreadable("ResultCode 0 without a Party")
    nil_party = result("GetParty", 0, extra='<Party i:nil="true"/>')
    assert isinstance(party_outcome(200, nil_party), BillUnreadable)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (0, PaymentApplied("m")),
        (2, PaymentRefused(2, "m")),
        (101, PaymentRefused(101, "m")),
        (106, PaymentRefused(106, "m")),
        (102, OrderGone("m")),
        (103, OrderClosed("m")),
        (4, AccessDenied("m")),
        (1, PaymentUnknown("ResultCode 1: m")),
        (3, PaymentUnknown("ResultCode 3: m")),
        (104, PaymentUnknown("ResultCode 104: m")),
    ],
)
def test_every_apply_payment_result_code(code: int, expected: object) -> None:
    outcome = payment_outcome(200, result("ApplyPayment", code, "m"))
    assert outcome == expected
    if isinstance(outcome, PaymentUnknown):
        assert outcome.maybe_applied


def test_a_soap_fault_and_http_statuses() -> None:
    assert party_outcome(500, fault("s:Client", "Bad &lt;id&gt;")) == Fault("s:Client", "Bad <id>")
    assert party_outcome(500, fault("s:Server", "Oops\u202e\x85\r\nnow")) == Fault("s:Server", "Oops  now")
    paid = payment_outcome(500, fault())
    assert isinstance(paid, PaymentUnknown) and paid.maybe_applied and "s:Client" in paid.reason
    assert party_outcome(401, b"") == AccessDenied("HTTP 401", status=401)
    assert payment_outcome(403, b"<html/>") == AccessDenied("HTTP 403", status=403)
    assert isinstance(party_outcome(500, b"<html>proxy</html>"), Unreachable)
    assert isinstance(party_outcome(502, b""), Unreachable)
    assert isinstance(party_outcome(200, b"not xml"), Unreachable)
    assert isinstance(payment_outcome(503, b""), PaymentUnknown)


def test_amounts_are_whole_cents_or_refused_by_name() -> None:
    assert to_cents("24.99", "x") == 2499
    assert to_cents("24.990", "x") == 2499  # WCF keeps a decimal's scale
    assert to_cents("-5", "x") == -500
    for bad in ("24.995", "1e3", "NaN", "Infinity", "24,99", "", " 1", "0x10", "1" * 20):
        with pytest.raises(BadAnswer):
            to_cents(bad, "x")
    refused = party_outcome(200, party_answer([order(5, total="24.995", number=3)]))
    assert refused == BillUnreadable("order 5: Total is 24.995, not a whole number of cents")
    in_entry = party_outcome(200, party_answer([order(5, total="1.00", entries=[item(2, "Tea", "0.333")])]))
    assert in_entry == BillUnreadable("entry 2 of order 5: Price is 0.333, not a whole number of cents")


def test_nil_is_absent_and_the_lists_read_every_kind() -> None:
    orders = [
        order(
            9,
            total="50.00",
            balance="nil",
            payments=[payment("10.00", key="bk-9"), payment("5.00", deleted=True, pid=2)],
            deposits=[deposit("3.00"), deposit("1.00", applied=False), deposit("2.00", reversal=True)],
            entries=[
                item(1, "Steak", "24.99"),
                item(2, "Wine", "9.00", voided=True),
                item(3, "Water", "2.00", deleted=True),
                gift_card(4, "Gift card", "14.01"),
            ],
        )
    ]
    (o,) = found(party_answer(orders)).orders
    assert o.balance_cents is None
    assert o.payments == (
        Payment(1, 1000, False, 7, (("taptill_key", "bk-9"),)),
        Payment(2, 500, True, 7, ()),
    )
    assert o.payments[0].reference("taptill_key") == "bk-9"
    assert o.deposits == (
        Deposit(300, True, False, False),
        Deposit(100, False, False, False),
        Deposit(200, True, False, True),
    )
    assert [(e.kind, e.id, e.is_voided, e.is_deleted) for e in o.entries] == [
        ("item", 1, False, False),
        ("item", 2, True, False),
        ("item", 3, False, True),
        ("giftcard", 4, False, False),
    ]


def test_server_text_is_made_printable_and_unknown_entries_are_refused() -> None:
    name = "Evil\u202e\u2066Name\nhere"
    body = party_answer([order(5, total="1.00", entries=[item(1, name, "1.00")])])
    (o,) = found(body).orders
    assert o.entries[0].description == "EvilName here"
    odd = party_answer([order(5, total="1.00")]).replace(
        b"<Entries></Entries>", b'<Entries><OrderEntry i:type="Coupon"><Id>1</Id></OrderEntry></Entries>'
    )
    outcome = party_outcome(200, odd)
    assert isinstance(outcome, BillUnreadable) and "'Coupon'" in outcome.reason


def test_elements_of_another_namespace_are_not_read() -> None:
    foreign = SEED_GET_PARTY.replace(b"<TableId>5</TableId>", b'<TableId xmlns="urn:other">6</TableId>')
    assert party_outcome(200, foreign) == BillUnreadable("party 50001 has no TableId")


# --- XML attacks ---------------------------------------------------------------------------------------

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">]>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Message>&lol9;</Message></s:Body></s:Envelope>"""


def quadratic() -> bytes:
    big = "A" * 50_000
    return (
        f'<!DOCTYPE s [<!ENTITY a "{big}">]><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
        f"<s:Body><x>{'&a;' * 20}</x></s:Body></s:Envelope>"
    ).encode()


def external(target: str) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY ext SYSTEM "{target}">]>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        '<GetPartyResponse xmlns="http://www.brinksoftware.com/webservices/ordering/20140219"><GetPartyResult>'
        "<Message>&ext;</Message><ResultCode>101</ResultCode></GetPartyResult></GetPartyResponse>"
        "</s:Body></s:Envelope>"
    ).encode()


def test_entity_bombs_and_a_doctype_at_all_are_refused_unexpanded() -> None:
    plain_doctype = b"<!DOCTYPE s>" + WCF_GET_PARTY
    seed_doctype = b"<!DOCTYPE s>" + SEED_GET_PARTY  # the prefix path must not bypass the refusal
    for attack in (LAUGHS, quadratic(), plain_doctype, seed_doctype):
        with pytest.raises(BadAnswer, match="refused unread: DTDForbidden"):
            read_document(attack)
        outcome = party_outcome(200, attack)
        assert isinstance(outcome, Unreachable) and "DTDForbidden" in outcome.reason


def test_external_entities_are_never_fetched(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    with RawHttpServer([soap(200, b"<x>fetched</x>")]) as listener:
        for target in (secret.as_uri(), listener.base_url + "/evil.dtd"):
            outcome = party_outcome(200, external(target))
            assert isinstance(outcome, Unreachable) and "refused unread" in outcome.reason, outcome
            assert "do not read me" not in outcome.reason
        assert listener.served == 0


def test_a_body_over_the_limit_is_refused_before_parsing() -> None:
    big = WCF_GET_PARTY + b" " * 100
    with pytest.raises(BadAnswer, match="over 1000 bytes"):
        read_document(big, max_bytes=1000)
    assert party_outcome(200, big, max_bytes=len(WCF_GET_PARTY)) == Unreachable(
        f"the answer is over {len(WCF_GET_PARTY)} bytes"
    )
