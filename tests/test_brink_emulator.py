"""The PAR Brink emulator on the wire: GetParty and ApplyPayment read by a client made here (httpx and
defusedxml, not terminal/brink, so the two implementations check each other), both answer styles, token
checks, forced codes, faults, hostile XML, the control endpoints and the command line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import httpx
import pytest

from terminal.emulator.brink import DEMO_ACCESS_TOKEN, DEMO_LOCATION_TOKEN, BrinkEmulator, Entry, Order, Party
from tests.terminal_lab import REPO

SEED_DAY = "2024-01-15"  # the seed's party: table 5
DAY = date(2024, 2, 1)  # the demo tables 1..12
NS = "http://www.brinksoftware.com/webservices/ordering/20140219"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
GOLDEN = Path(__file__).parent / "golden" / "brink_get_party_seed.xml"


def get_party_body(day: str = "2024-02-01", table: int = 5) -> bytes:
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:ns="{NS}"><soapenv:Header/><soapenv:Body>'
        f"<ns:GetParty><ns:request><ns:BusinessDate>{day}</ns:BusinessDate><ns:TableId>{table}</ns:TableId>"
        "</ns:request></ns:GetParty></soapenv:Body></soapenv:Envelope>"
    ).encode()


def apply_payment_body(order_id: int, amount: str, tender: int = 1, key: str = "bKEY-1") -> bytes:
    return (
        f'<soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:ns="{NS}"><soapenv:Header/><soapenv:Body>'
        f"<ns:ApplyPayment><ns:request><ns:OrderId>{order_id}</ns:OrderId><ns:Payment>"
        f"<ns:Amount>{amount}</ns:Amount><ns:Id>0</ns:Id><ns:ReferenceDetails><ns:NameValuePair>"
        f"<ns:Name>taptill_key</ns:Name><ns:Value>{key}</ns:Value></ns:NameValuePair></ns:ReferenceDetails>"
        f"<ns:TenderId>{tender}</ns:TenderId><ns:TipAmount>0.00</ns:TipAmount></ns:Payment></ns:request>"
        "</ns:ApplyPayment></soapenv:Body></soapenv:Envelope>"
    ).encode()


def readable(text: bytes) -> bytes:
    """The seed's text declares no ``i:`` prefix: declare it on the envelope (the client's fix too)."""
    if b"xmlns:i=" in text:
        return text
    return text.replace(b'<s:Envelope xmlns:s="', f'<s:Envelope xmlns:i="{XSI}" xmlns:s="'.encode(), 1)


class Brink:
    """A SOAP client for the test: posts an operation and returns (HTTP status, the parsed result)."""

    def __init__(self, emu: BrinkEmulator, access: str = DEMO_ACCESS_TOKEN, loc: str = DEMO_LOCATION_TOKEN):
        self.emu = emu
        self.http = httpx.Client(timeout=10)  # one keep-alive connection, as the terminal's
        self.headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "AccessToken": access,
            "LocationToken": loc,
        }

    def post(self, op: str, body: bytes, **headers: str) -> httpx.Response:
        action = f'"{NS}/IOrderingWebService/{op}"'
        return httpx.post(
            self.emu.url, content=body, headers={**self.headers, "SOAPAction": action, **headers}
        )

    def result(self, op: str, body: bytes) -> tuple[int, Element]:
        resp = self.post(op, body)
        root = SafeET.fromstring(readable(resp.content), forbid_dtd=True)
        result = root.find(f"{{{SOAP}}}Body/{{{NS}}}{op}Response/{{{NS}}}{op}Result")
        assert result is not None, resp.text
        return resp.status_code, result

    def get_party(self, day: str = "2024-02-01", table: int = 5) -> tuple[int, Element | None]:
        status, result = self.result("GetParty", get_party_body(day, table))
        assert status == 200
        party = result.find(f"{{{NS}}}Party")
        if party is not None and party.get(f"{{{XSI}}}nil") == "true":
            party = None
        return int(text(result, "ResultCode")), party

    def apply(self, order_id: int, amount: str, tender: int = 1, key: str = "bKEY-1") -> int:
        status, result = self.result("ApplyPayment", apply_payment_body(order_id, amount, tender, key))
        assert status == 200
        return int(text(result, "ResultCode"))


def text(el: Element, path: str) -> str:
    found = el.find("/".join(f"{{{NS}}}{p}" for p in path.split("/")))
    assert found is not None, path
    return found.text or ""


def orders(party: Element) -> list[Element]:
    return party.findall(f"{{{NS}}}Orders/{{{NS}}}Order")


@pytest.fixture
def emu() -> Iterator[BrinkEmulator]:
    with BrinkEmulator(business_date=DAY) as running:
        yield running


@pytest.fixture
def brink(emu: BrinkEmulator) -> Iterator[Brink]:
    client = Brink(emu)
    yield client
    client.http.close()


def test_the_seed_style_answers_the_seeds_party_byte_for_byte_with_its_undeclared_prefix(
    brink: Brink,
) -> None:
    resp = brink.post("GetParty", get_party_body(SEED_DAY))
    assert resp.status_code == 200 and resp.headers["content-type"] == "text/xml; charset=utf-8"
    assert resp.content == GOLDEN.read_bytes()
    assert b"i:nil" in resp.content and b"xmlns:i" not in resp.content
    with pytest.raises(SafeET.ParseError, match="unbound prefix"):
        SafeET.fromstring(resp.content)  # as printed, a strict parser refuses it
    code, party = brink.get_party(SEED_DAY)
    assert code == 0 and party is not None and text(party, "Id") == "50001"
    assert text(orders(party)[0], "Total") == "26.99"


def test_the_wcf_style_declares_i_and_sends_message_nil(emu: BrinkEmulator, brink: Brink) -> None:
    emu.set_style("wcf")
    resp = brink.post("GetParty", get_party_body(table=4))
    root = SafeET.fromstring(resp.content)  # parses as sent
    assert f'xmlns:i="{XSI}"'.encode() in resp.content and b"\n" not in resp.content
    result = root.find(f"{{{SOAP}}}Body/{{{NS}}}GetPartyResponse/{{{NS}}}GetPartyResult")
    assert result is not None
    message = result.find(f"{{{NS}}}Message")
    assert message is not None and message.get(f"{{{XSI}}}nil") == "true"
    code, party = brink.get_party(table=4)
    assert code == 0 and party is not None
    order = orders(party)[0]
    closed = order.find(f"{{{NS}}}ClosedTime")
    assert closed is not None and closed.get(f"{{{XSI}}}nil") == "true"
    entries = order.findall(f"{{{NS}}}Entries/{{{NS}}}OrderEntry")
    kinds = [(e.get(f"{{{XSI}}}type"), text(e, "IsVoided"), text(e, "IsDeleted")) for e in entries]
    assert ("OrderGiftCard", "false", "false") in kinds
    assert ("OrderItem", "true", "false") in kinds and ("OrderItem", "false", "true") in kinds
    assert text(order, "Total") == "40.61"  # the voided and deleted lines are not in it
    emu.set_style("seed")
    _, seed_party = brink.get_party(table=4)
    assert seed_party is not None and orders(seed_party)[0].find(f"{{{NS}}}ClosedTime") is None


def test_several_orders_payments_deposits_and_balance(brink: Brink) -> None:
    _, party = brink.get_party(table=3)
    assert party is not None and [text(o, "Total") for o in orders(party)] == ["17.70", "11.05", "12.04"]
    _, party = brink.get_party(table=5)
    assert party is not None
    order = orders(party)[0]
    payments = order.findall(f"{{{NS}}}Payments/{{{NS}}}OrderPayment")
    assert [(text(p, "Amount"), text(p, "IsDeleted")) for p in payments] == [
        ("20.00", "false"),
        ("5.00", "true"),
    ]
    deposits = order.findall(f"{{{NS}}}Deposits/{{{NS}}}OrderDeposit")
    flags = [(text(d, "IsApplied"), text(d, "IsDeleted"), text(d, "IsReversal")) for d in deposits]
    assert flags == [
        ("true", "false", "false"),
        ("false", "false", "false"),
        ("true", "true", "false"),
        ("true", "false", "true"),
    ]
    assert order.find(f"{{{NS}}}Balance") is None
    _, party = brink.get_party(table=6)
    assert party is not None and text(orders(party)[0], "Balance") == "34.47"


@pytest.mark.parametrize("day", ["2024-02-01", "2024-02-01T00:00:00"])
def test_both_date_forms_find_the_party_and_an_empty_table_is_101(brink: Brink, day: str) -> None:
    assert brink.get_party(day, 5)[0] == 0
    code, party = brink.get_party(day, 99)
    assert code == 101 and party is None
    assert brink.get_party("2024-02-02", 5)[0] == 101


@pytest.mark.parametrize(
    ("access", "location"),
    [
        ("wrong", DEMO_LOCATION_TOKEN),
        (DEMO_ACCESS_TOKEN, "wrong"),
        ("", ""),
        (DEMO_LOCATION_TOKEN, DEMO_ACCESS_TOKEN),
    ],
)
def test_a_wrong_or_missing_token_is_access_denied_with_http_200(
    emu: BrinkEmulator, access: str, location: str
) -> None:
    client = Brink(emu, access, location)
    status, result = client.result("GetParty", get_party_body())
    assert status == 200 and text(result, "ResultCode") == "4" and text(result, "Message") == "Access Denied"
    assert result.find(f"{{{NS}}}Party") is None
    assert client.apply(99001, "1.00") == 4 and emu.applied_payments() == []
    assert emu.requests()[-1]["tokens_ok"] is False


def test_another_location_has_its_own_tokens_and_parties(emu: BrinkEmulator) -> None:
    other = emu.add_location("at-2", "lt-2")
    other.put_party(Party(1, 5, DAY, [Order(1, [Entry(1, "Tea", "2.50")])]))
    code, party = Brink(emu, "at-2", "lt-2").get_party()
    assert code == 0 and party is not None and text(party, "Id") == "1"
    assert Brink(emu, "at-2", DEMO_LOCATION_TOKEN).get_party()[0] == 4


@pytest.mark.parametrize("code", [1, 2, 3, 101])
def test_forced_get_party_codes_once_then_always(emu: BrinkEmulator, brink: Brink, code: int) -> None:
    emu.force("GetParty", code)
    assert brink.get_party() == (code, None)
    assert brink.get_party()[0] == 0
    emu.force("GetParty", code, times=None)
    assert [brink.get_party()[0] for _ in range(3)] == [code] * 3
    emu.clear_forced()
    assert brink.get_party()[0] == 0


def fault_string(resp: httpx.Response) -> str:
    root = SafeET.fromstring(resp.content)
    fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault is not None and fault.findtext("faultcode") == "s:Client"
    return str(fault.findtext("faultstring"))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<not xml", "not well-formed"),
        (get_party_body().replace(b"<ns:TableId>5</ns:TableId>", b""), "no TableId"),
        (get_party_body(day="15.01.2024"), "BusinessDate"),
        (get_party_body().replace(b"ns:GetParty>", b"ns:GetBarty>"), "no GetParty/request"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', "DTD"),
    ],
)
def test_an_unreadable_request_is_a_soap_fault_with_http_500(
    emu: BrinkEmulator, brink: Brink, body: bytes, words: str
) -> None:
    resp = brink.post("GetParty", body)
    assert resp.status_code == 500 and words in fault_string(resp)
    assert emu.requests()[-1]["status"] == 500


def test_billion_laughs_is_refused_without_expansion(brink: Brink) -> None:
    lol = "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
    body = f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY l0 "lol">{lol}]><x>&l9;</x>'.encode()
    resp = brink.post("GetParty", body)
    assert resp.status_code == 500 and "DTD" in fault_string(resp) and len(resp.content) < 1000


def test_a_wrong_soap_action_or_content_type_is_refused(brink: Brink) -> None:
    resp = brink.post("GetParty", get_party_body(), SOAPAction='"http://example.com/Other"')
    assert resp.status_code == 500 and "ContractFilter mismatch" in fault_string(resp)
    resp = brink.post("GetParty", get_party_body(), **{"Content-Type": "application/json"})
    assert resp.status_code == 415


def test_a_body_over_one_mebibyte_is_413(emu: BrinkEmulator, brink: Brink) -> None:
    resp = brink.post("GetParty", get_party_body() + b" " * (1 << 20))
    assert resp.status_code == 413 and emu.requests() == []


def test_apply_payment_records_the_reference_and_closes_the_order_at_zero(
    emu: BrinkEmulator, brink: Brink
) -> None:
    assert brink.apply(70101, "5.00", key="bK-70101") == 0
    _, party = brink.get_party(table=1)
    assert party is not None
    order = orders(party)[0]
    assert text(order, "IsClosed") == "false"
    payment = order.findall(f"{{{NS}}}Payments/{{{NS}}}OrderPayment")[0]
    assert text(payment, "Amount") == "5.00" and text(payment, "TenderId") == "1"
    assert text(payment, "AdditionalData/NameValuePair/Name") == "taptill_key"
    assert text(payment, "AdditionalData/NameValuePair/Value") == "bK-70101"
    assert brink.apply(70101, "6.11") == 0
    _, party = brink.get_party(table=1)
    assert party is not None
    order = orders(party)[0]
    assert text(order, "IsClosed") == "true" and text(order, "ClosedTime").endswith("Z")
    assert brink.apply(70101, "0.01") == 103
    assert [(p["order_id"], p["amount"], p["closed_order"]) for p in emu.applied_payments()] == [
        (70101, "5.00", False),
        (70101, "6.11", True),
    ]
    emu.location.close_party(DAY, 1)
    assert brink.get_party(table=1)[0] == 101


def test_apply_payment_refusals(emu: BrinkEmulator, brink: Brink) -> None:
    assert brink.apply(123, "1.00") == 102
    assert brink.apply(70201, "1.00", tender=99) == 106
    assert brink.apply(70201, "23.90") == 101  # due 23.89
    assert brink.apply(70201, "0.00") == 101
    assert brink.apply(70501, "21.34") == 101  # 51.33 − 20.00 paid − 10.00 deposit = 21.33
    assert brink.apply(70501, "21.33") == 0
    assert brink.apply(70601, "34.47") == 0  # Balance given: paid down to 0.00
    _, party = brink.get_party(table=6)
    assert party is not None and text(orders(party)[0], "Balance") == "0.00"
    assert [p["order_id"] for p in emu.applied_payments()] == [70501, 70601]


def test_forced_104_before_and_after_applying(emu: BrinkEmulator, brink: Brink) -> None:
    emu.force("ApplyPayment", 104)
    assert brink.apply(70201, "1.00") == 104 and emu.applied_payments() == []
    emu.force("ApplyPayment", 104, after_applying=True)
    assert brink.apply(70201, "1.00", key="bK-A") == 104
    assert [p["reference"] for p in emu.applied_payments()] == [{"taptill_key": "bK-A"}]
    emu.force("ApplyPayment", 101)
    assert brink.apply(70201, "1.00") == 101 and len(emu.applied_payments()) == 1


def test_a_three_decimal_amount_is_kept_as_stored(emu: BrinkEmulator, brink: Brink) -> None:
    emu.location.put_party(Party(7, 20, DAY, [Order(8, [Entry(1, "Odd", "24.995")])]))
    _, party = brink.get_party(table=20)
    assert party is not None and text(orders(party)[0], "Total") == "24.995"
    emu.location.set_order(8, total="24.990", balance="nil")
    _, party = brink.get_party(table=20)
    assert party is not None and text(orders(party)[0], "Total") == "24.990"
    balance = orders(party)[0].find(f"{{{NS}}}Balance")
    assert balance is not None and balance.get(f"{{{XSI}}}nil") == "true"


def test_faults_hit_the_service_drop_after_applies_the_payment(emu: BrinkEmulator, brink: Brink) -> None:
    emu.faults.inject("error500_before", route="get_party", times=1)
    assert brink.post("GetParty", get_party_body()).status_code == 500
    emu.faults.inject("drop_after", route="apply_payment", times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        brink.post("ApplyPayment", apply_payment_body(70201, "2.00"))
    assert [p["amount"] for p in emu.applied_payments()] == ["2.00"]
    assert [r["fault"] for r in emu.requests()] == ["error500_before", "drop_after"]
    assert emu.stats()["requests_by_route"] == {"get_party": 1, "apply_payment": 1}


def control(emu: BrinkEmulator, method: str, what: str, body: object = None) -> Any:
    resp = httpx.request(method, f"{emu.control_url}/{what}", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_control_endpoints_build_and_change_a_party(emu: BrinkEmulator, brink: Brink) -> None:
    party = {
        "id": 900,
        "table_id": 30,
        "business_date": "2024-02-01",
        "orders": [{"id": 901, "entries": [{"id": 1, "description": "Bier", "price": "4.50"}]}],
    }
    assert control(emu, "POST", "parties", party)["orders"][0]["due"] == "4.50"
    order = {"id": 902, "entries": [{"id": 1, "description": "Gift", "price": "10.00", "gift_card": True}]}
    control(emu, "POST", "orders", {"business_date": "2024-02-01", "table_id": 30, "order": order})
    control(
        emu, "POST", "entries", {"order_id": 901, "entry": {"id": 2, "description": "Wurst", "price": "3.20"}}
    )
    control(emu, "POST", "entries/void", {"order_id": 901, "entry_id": 1})
    control(
        emu, "POST", "payments", {"order_id": 902, "payment": {"id": 1, "amount": "3.00", "tender_id": 1}}
    )
    control(emu, "POST", "deposits", {"order_id": 902, "deposit": {"id": 1, "amount": "1.00"}})
    listed = {p["table_id"]: p for p in control(emu, "GET", "parties")["parties"]}
    assert [o["due"] for o in listed[30]["orders"]] == ["3.20", "6.00"]
    control(emu, "POST", "orders/set", {"order_id": 901, "total": "24.995"})
    _, got = brink.get_party(table=30)
    assert got is not None and [text(o, "Total") for o in orders(got)] == ["24.995", "10.00"]
    assert control(emu, "POST", "style", {"style": "wcf"}) == {"style": "wcf"}
    control(emu, "POST", "force", {"operation": "ApplyPayment", "code": 104, "after_applying": True})
    assert brink.apply(902, "6.00", key="bK-c") == 104
    assert control(emu, "GET", "payments")["payments"][0]["reference"] == {"taptill_key": "bK-c"}
    assert control(emu, "DELETE", "force") == {"forced": []}
    control(emu, "POST", "parties/close", {"business_date": "2024-02-01", "table_id": 30})
    assert brink.get_party(table=30)[0] == 101
    logged = control(emu, "GET", "requests")["requests"]
    assert logged[-1]["fields"] == {"business_date": "2024-02-01", "table_id": 30}
    assert "AccessToken" not in json.dumps(logged) and DEMO_ACCESS_TOKEN not in json.dumps(logged)
    bad = httpx.post(f"{emu.control_url}/parties", json={"id": 1, "table_id": 2, "price": 1.5})
    assert bad.status_code == 400 and "unknown party field" in bad.json()["detail"]
    bad = httpx.post(
        f"{emu.control_url}/entries",
        json={"order_id": 1, "entry": {"id": 1, "description": "x", "price": 2.5}},
    )
    assert bad.status_code == 400 and "decimal string" in bad.json()["detail"]


def test_faults_and_latency_profile_switch_at_run_time(emu: BrinkEmulator, brink: Brink) -> None:
    control(emu, "POST", "faults", {"rules": [{"kind": "hang", "route": "get_party", "cap_s": 0.2}]})
    with pytest.raises(httpx.RemoteProtocolError):
        brink.post("GetParty", get_party_body())
    assert control(emu, "DELETE", "faults")["rules"] == []
    assert control(emu, "POST", "latency", {"profile": "real"}) == {"profile": "real"}
    start = time.monotonic()
    assert brink.apply(70201, "1.00") == 0
    assert time.monotonic() - start >= 0.15  # a write under the real profile takes 150-400 ms
    assert control(emu, "POST", "faults", {"profile": "fast"})["profile"] == "fast"


def test_the_command_line_prints_where_it_listens_and_stops_on_sigterm(tmp_path: Path) -> None:
    token = tmp_path / "access"
    token.write_text("at-cli\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "terminal.emulator.brink",
            "--port",
            "0",
            "--business-date",
            "2024-02-01",
            "--style",
            "wcf",
            "--access-token-file",
            str(token),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        assert line["business_date"] == "2024-02-01" and line["style"] == "wcf"
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "AccessToken": "at-cli",
            "LocationToken": DEMO_LOCATION_TOKEN,
            "SOAPAction": f'"{NS}/IOrderingWebService/GetParty"',
        }
        resp = httpx.post(line["url"], content=get_party_body("2024-02-01", 12), headers=headers)
        assert b"<ResultCode>0</ResultCode>" in resp.content and b"<TableId>12</TableId>" in resp.content
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and json.loads(err.strip().splitlines()[-1])["stopped"] is True


def test_the_command_line_writes_the_demo_tokens_to_private_files_and_names_only_their_paths(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "tokens"
    proc = subprocess.Popen(
        [sys.executable, "-m", "terminal.emulator.brink", "--port", "0", "--demo-token-dir", str(folder)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        said = proc.stdout.readline()
        line = json.loads(said)
        access, location = Path(line["access_token_file"]), Path(line["location_token_file"])
        assert access == (folder / "brink.access.token").resolve()
        assert access.read_text().strip() == DEMO_ACCESS_TOKEN
        assert location.read_text().strip() == DEMO_LOCATION_TOKEN
        assert access.stat().st_mode & 0o777 == location.stat().st_mode & 0o777 == 0o600
        assert DEMO_ACCESS_TOKEN not in said and DEMO_LOCATION_TOKEN not in said, "paths, never values"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
