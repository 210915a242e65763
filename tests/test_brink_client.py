"""BrinkClient on the wire against loopback servers: the request bytes and headers, every outcome through
HTTP, the deadline against hanging and dripping servers, a 10 MB answer cut unread, whether an
ApplyPayment may have arrived, and tokens that never show."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
import xml.etree.ElementTree as ET

import pytest

from terminal.brink.client import BrinkClient
from terminal.brink.envelope import OP_NS, SOAP_NS
from terminal.brink.outcomes import (
    AccessDenied,
    Fault,
    NoParty,
    OrderGone,
    PartyFound,
    PaymentApplied,
    PaymentUnknown,
    Unreachable,
)
from terminal.service.secret import Secret
from tests.brink_lab import (
    ACCESS,
    LOCATION,
    DrippingServer,
    FloodServer,
    HangingServer,
    RawHttpServer,
    client_for,
    soap,
    split_request,
    structure,
)
from tests.brink_samples import SEED_GET_PARTY, fault, result
from tests.raw_http import connect_never_completes

S, N = f"{{{SOAP_NS}}}", f"{{{OP_NS}}}"
ACTION = "http://www.brinksoftware.com/webservices/ordering/20140219/IOrderingWebService/"


async def get(client: BrinkClient, table: int = 5) -> object:
    async with client:
        return await client.get_party(dt.date(2024, 1, 15), table)


async def pay(client: BrinkClient) -> object:
    async with client:
        return await client.apply_payment(99001, 2699, 7, "bAbC-99001")


def test_get_party_sends_the_seeds_request_and_reads_its_answer() -> None:
    with RawHttpServer([soap(200, SEED_GET_PARTY)]) as server:
        outcome = asyncio.run(get(client_for(server)))
    assert isinstance(outcome, PartyFound) and outcome.party.id == 50001
    (raw,) = server.requests
    line, headers, body = split_request(raw)
    assert line == "POST /Ordering.svc HTTP/1.1"
    assert headers["content-type"] == "text/xml; charset=utf-8"
    assert headers["soapaction"] == f'"{ACTION}GetParty"'
    assert (headers["accesstoken"], headers["locationtoken"]) == (ACCESS, LOCATION)
    assert b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"' in body
    assert b'xmlns:ns="http://www.brinksoftware.com/webservices/ordering/20140219"' in body
    assert structure(ET.fromstring(body)) == [
        (f"{S}Envelope", ""),
        (f"{S}Header", ""),
        (f"{S}Body", ""),
        (f"{N}GetParty", ""),
        (f"{N}request", ""),
        (f"{N}BusinessDate", "2024-01-15"),
        (f"{N}TableId", "5"),
    ]


def test_apply_payment_sends_the_contracts_request() -> None:
    with RawHttpServer([soap(200, result("ApplyPayment", 0))]) as server:
        outcome = asyncio.run(pay(client_for(server)))
    assert outcome == PaymentApplied("")
    _, headers, body = split_request(server.requests[0])
    assert headers["soapaction"] == f'"{ACTION}ApplyPayment"'
    assert structure(ET.fromstring(body)) == [
        (f"{S}Envelope", ""),
        (f"{S}Header", ""),
        (f"{S}Body", ""),
        (f"{N}ApplyPayment", ""),
        (f"{N}request", ""),
        (f"{N}OrderId", "99001"),
        (f"{N}Payment", ""),
        (f"{N}Amount", "26.99"),
        (f"{N}Id", "0"),
        (f"{N}ReferenceDetails", ""),
        (f"{N}NameValuePair", ""),
        (f"{N}Name", "taptill_key"),
        (f"{N}Value", "bAbC-99001"),
        (f"{N}TenderId", "7"),
        (f"{N}TipAmount", "0.00"),
    ]


def test_outcomes_through_http() -> None:
    answers = [
        soap(200, result("GetParty", 101, "Party not found")),
        soap(500, fault("s:Client", "Invalid table")),
        soap(401, b""),
        soap(502, b"<html>bad gateway</html>"),
        soap(200, result("ApplyPayment", 102)),
        soap(500, fault()),
    ]
    with RawHttpServer(answers) as server:
        seen = [asyncio.run(get(client_for(server))) for _ in range(4)]
        seen += [asyncio.run(pay(client_for(server))) for _ in range(2)]
    assert seen[:3] == [
        NoParty("Party not found"),
        Fault("s:Client", "Invalid table"),
        AccessDenied("HTTP 401", 401),
    ]
    assert isinstance(seen[3], Unreachable) and "502" in seen[3].reason
    assert seen[4] == OrderGone("")
    assert isinstance(seen[5], PaymentUnknown) and seen[5].maybe_applied


def test_tokens_never_show() -> None:
    client = BrinkClient("https://x.parpos.com/Ordering.svc", Secret(ACCESS), Secret(LOCATION))
    shown = repr(client) + str(vars(client))
    assert ACCESS not in shown and LOCATION not in shown
    with HangingServer() as server:
        outcome = asyncio.run(pay(client_for(server, timeout_s=0.5)))
    assert ACCESS not in repr(outcome) and LOCATION not in repr(outcome)


def test_a_hanging_server_ends_within_the_deadline_and_the_payment_is_unknown() -> None:
    with HangingServer() as server:
        started = time.monotonic()
        party = asyncio.run(get(client_for(server, timeout_s=0.5)))
        paid = asyncio.run(pay(client_for(server, timeout_s=0.5)))
        took = time.monotonic() - started
        assert server.requests == 2
    assert isinstance(party, Unreachable) and "within 0.5 s" in party.reason
    assert isinstance(paid, PaymentUnknown) and paid.maybe_applied
    assert took < 10  # two 0.5 s deadlines; generous for a loaded machine, not a speed target


def test_a_dripping_answer_ends_within_the_deadline() -> None:
    with DrippingServer() as server:
        started = time.monotonic()
        outcome = asyncio.run(get(client_for(server, timeout_s=0.6)))
        took = time.monotonic() - started
    assert isinstance(outcome, Unreachable) and "not complete within 0.6 s" in outcome.reason
    assert server.dripped > 1  # it did drip: every read was short
    assert took < 10


def test_a_10_mb_answer_is_cut_at_the_cap_not_read() -> None:
    size = 10 * 1024 * 1024
    with FloodServer(size) as server:
        outcome = asyncio.run(get(client_for(server)))  # the default cap: 1 MiB ([brink] max_answer_kib)
        assert server.done.wait(10)
    assert isinstance(outcome, Unreachable) and "body over 1048576 bytes" in outcome.reason
    # Taken: the cap and a read or two past it (measured: 1.2 MiB), never the 10 MB.
    assert server.sent < 3 * 1024 * 1024, server.sent


def test_an_apply_payment_that_never_left_is_known_not_applied() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: the connect is refused
    refused = BrinkClient(f"http://127.0.0.1:{port}/Ordering.svc", Secret(ACCESS), Secret(LOCATION), 1.0)
    outcome = asyncio.run(pay(refused))
    assert isinstance(outcome, PaymentUnknown) and not outcome.maybe_applied
    with connect_never_completes() as port:
        stuck = BrinkClient(f"http://127.0.0.1:{port}/Ordering.svc", Secret(ACCESS), Secret(LOCATION), 0.5)
        outcome = asyncio.run(pay(stuck))
    assert isinstance(outcome, PaymentUnknown) and not outcome.maybe_applied, outcome


def test_a_connection_dropped_after_sending_may_have_applied() -> None:
    with RawHttpServer([b""]) as server:  # reads the request, closes without a word
        outcome = asyncio.run(pay(client_for(server)))
    assert isinstance(outcome, PaymentUnknown) and outcome.maybe_applied, outcome


def test_arguments_brink_cannot_take_are_refused_before_sending() -> None:
    client = BrinkClient("https://x.parpos.com/Ordering.svc", Secret(ACCESS), Secret(LOCATION))
    for amount, key in ((0, "k"), (100, "clé"), (100, "")):
        with pytest.raises(ValueError):
            asyncio.run(client.apply_payment(1, amount, 7, key))
