"""PartybrokerClient against the real emulator (and a misbehaving raw server): every outcome."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.partybroker import PartybrokerEmulator
from terminal.partybroker.client import PartybrokerClient
from terminal.partybroker.outcomes import Ambiguous, DrinkRef, Drinks, Recorded, Rejected, Sale, Unauthorized
from terminal.service.secret import Secret
from tests.raw_http import connect_never_completes

pytestmark = pytest.mark.partybroker

PASSWORD = "s3cr3t-Pa55w0rd"
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


@pytest.fixture
def emu() -> Iterator[PartybrokerEmulator]:
    with PartybrokerEmulator(password=PASSWORD, price_interval_s=60) as e:
        yield e


def client_for(
    emu: PartybrokerEmulator, password: str = PASSWORD, timeout_s: float = 2.0
) -> PartybrokerClient:
    return PartybrokerClient(emu.base_url, emu.party_id, emu.username, Secret(password), timeout_s=timeout_s)


async def get(emu: PartybrokerEmulator) -> object:
    async with client_for(emu) as c:
        return await c.drinks()


async def buy(emu: PartybrokerEmulator, *sales: Sale, timeout_s: float = 2.0) -> object:
    async with client_for(emu, timeout_s=timeout_s) as c:
        return await c.buy(list(sales))


async def buy_once(client: PartybrokerClient) -> object:
    async with client:
        return await client.buy([Sale(WEISSBIER, 1)])


WEISSBIER = DrinkRef(id=145)
HELLES_EXT = DrinkRef(external_id="234567")


def test_get_lists_every_drink_with_its_price(emu: PartybrokerEmulator) -> None:
    out = run(get(emu))
    assert isinstance(out, Drinks)
    assert [(d.id, d.external_id, d.price_cents, d.currency) for d in out.drinks] == [
        (145, "123456", 290, "EUR"),
        (146, "234567", 230, "EUR"),
        (147, "345678", 210, "EUR"),
        (148, "456789", 250, "EUR"),
    ]
    assert out.drinks[0].title == "Weißbier"


def test_prices_sent_as_strings_are_read_as_cents(emu: PartybrokerEmulator) -> None:
    emu.prices_as_strings = True
    out = run(get(emu))
    assert isinstance(out, Drinks)
    assert [d.price_cents for d in out.drinks] == [290, 230, 210, 250]


def test_post_by_id_and_external_id_in_one_request(emu: PartybrokerEmulator) -> None:
    out = run(buy(emu, Sale(WEISSBIER, 2), Sale(HELLES_EXT, 3)))
    assert isinstance(out, Drinks)
    assert {d.id: d.price_cents for d in out.drinks} == {145: 310, 146: 260}
    assert emu.units_sold() == {145: 2, 146: 3, 147: 0, 148: 0}


def test_one_keep_alive_connection_serves_many_calls(emu: PartybrokerEmulator) -> None:
    async def many() -> None:
        async with client_for(emu) as c:
            for _ in range(5):
                assert isinstance(await c.drinks(), Drinks)
                assert isinstance(await c.buy([Sale(WEISSBIER, 1)]), Drinks)

    run(many())
    assert emu.connections_accepted == 1
    assert emu.units_sold()[145] == 5


def test_wrong_password_is_unauthorized_and_never_shown(
    emu: PartybrokerEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-Pa55w0rd-xyz"
    client = client_for(emu, password=wrong)

    async def call() -> object:
        async with client:
            return await client.drinks()

    out = run(call())
    assert isinstance(out, Unauthorized)
    assert "password_file" in out.reason
    for text in (repr(client), repr(out), caplog.text):
        assert wrong not in text and PASSWORD not in text


def test_password_absent_from_logs_and_outcomes_of_good_calls(
    emu: PartybrokerEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emu.faults.inject(FaultKind.ERROR500_BEFORE, times=1)
    client = client_for(emu)

    async def calls() -> list[object]:
        async with client:
            return [await client.buy([Sale(WEISSBIER, 1)]), await client.drinks()]

    outs = run(calls())
    encoded = base64.b64encode(f"taptill:{PASSWORD}".encode()).decode()
    for text in (repr(client), repr(outs), caplog.text):
        assert PASSWORD not in text and encoded not in text


def test_unknown_drink_is_rejected_and_nothing_is_booked(emu: PartybrokerEmulator) -> None:
    out = run(buy(emu, Sale(WEISSBIER, 1), Sale(DrinkRef(id=999), 1)))
    assert isinstance(out, Rejected)
    assert out.status == 404 and "999" in out.reason
    assert sum(emu.units_sold().values()) == 0


def test_wrong_party_is_rejected(emu: PartybrokerEmulator) -> None:
    async def call() -> object:
        async with PartybrokerClient(emu.base_url, "9999", emu.username, Secret(PASSWORD)) as c:
            return await c.drinks()

    out = run(call())
    assert isinstance(out, Rejected) and out.status == 404


def test_429_is_ambiguous_with_retry_after_and_not_applied(emu: PartybrokerEmulator) -> None:
    emu.faults.inject(FaultKind.RATE_LIMIT_429, times=1, retry_after=7)
    out = run(buy(emu, Sale(WEISSBIER, 1)))
    assert isinstance(out, Ambiguous)
    assert out == Ambiguous(out.reason, retry_after=7.0, maybe_applied=False)
    assert emu.units_sold()[145] == 0


@pytest.mark.parametrize(
    ("kind", "booked"),
    [
        (FaultKind.ERROR500_BEFORE, 0),
        (FaultKind.ERROR500_AFTER, 1),
        (FaultKind.DROP_BEFORE, 0),
        (FaultKind.DROP_AFTER, 1),
        (FaultKind.GARBAGE_HTML, 0),
        (FaultKind.GARBAGE_CONTENT_TYPE, 1),
    ],
)
def test_post_without_a_usable_answer_is_ambiguous(
    emu: PartybrokerEmulator, kind: FaultKind, booked: int
) -> None:
    emu.faults.inject(kind, times=1)
    out = run(buy(emu, Sale(WEISSBIER, 1)))
    assert isinstance(out, Ambiguous)
    assert out.maybe_applied
    assert emu.units_sold()[145] == booked


@pytest.mark.parametrize("kind", [FaultKind.GARBAGE_TRUNCATED, FaultKind.GARBAGE_OVERSIZED])
def test_post_with_a_broken_json_2xx_is_recorded(emu: PartybrokerEmulator, kind: FaultKind) -> None:
    emu.faults.inject(kind, times=1, size=400_000)
    out = run(buy(emu, Sale(WEISSBIER, 1)))
    assert isinstance(out, Recorded)
    assert emu.units_sold()[145] == 1


@pytest.mark.parametrize(
    "kind",
    [
        FaultKind.ERROR500_BEFORE,
        FaultKind.DROP_BEFORE,
        FaultKind.GARBAGE_HTML,
        FaultKind.GARBAGE_TRUNCATED,
        FaultKind.GARBAGE_CONTENT_TYPE,
        FaultKind.GARBAGE_OVERSIZED,
    ],
)
def test_get_without_a_usable_answer_is_ambiguous_and_not_applied(
    emu: PartybrokerEmulator, kind: FaultKind
) -> None:
    emu.faults.inject(kind, times=1, size=400_000)
    out = run(get(emu))
    assert isinstance(out, Ambiguous) and not out.maybe_applied
    assert isinstance(run(get(emu)), Drinks)  # the fault was one-off; the next call is fine


def test_a_hanging_server_is_ambiguous_within_the_timeout(emu: PartybrokerEmulator) -> None:
    emu.faults.inject(FaultKind.HANG, times=1, cap_s=20)
    started = time.monotonic()
    out = run(buy(emu, Sale(WEISSBIER, 1), timeout_s=0.5))
    elapsed = time.monotonic() - started
    assert isinstance(out, Ambiguous) and out.maybe_applied
    assert elapsed < 5.0  # generous: the point is that 20 s of hanging is not waited for


def test_a_stopped_server_is_ambiguous_and_provably_not_applied() -> None:
    with PartybrokerEmulator(password=PASSWORD) as emu:
        url = emu.base_url
    out = run(buy_once(PartybrokerClient(url, "1234", "taptill", Secret(PASSWORD), timeout_s=1)))
    assert isinstance(out, Ambiguous) and not out.maybe_applied
    assert "connect" in out.reason


# --- a raw server for what the emulator cannot do: a body cut short, a body dripping after quick headers ---


class _Raw(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        with contextlib.suppress(OSError):  # the client gives up on the drip, as it should
            self._answer()

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path.endswith("/drip/drinks"):
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100):  # a byte every 0.1 s: each read is quick, the whole is not
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
        else:
            body = b'[{"id": 145, "title": "W", "price": 290, "currency": "EUR"}]'
            self.send_header("Content-Length", str(len(body) + 50))
            self.end_headers()
            self.wfile.write(body)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def raw_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Raw)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def test_body_cut_short_of_content_length_after_2xx_is_recorded(raw_url: str) -> None:
    out = run(buy_once(PartybrokerClient(raw_url, "cut", "u", Secret("p"), timeout_s=2)))
    assert isinstance(out, Recorded)
    assert "broke off" in out.reason


def test_a_dripping_body_is_bounded_by_the_total_timeout(raw_url: str) -> None:
    started = time.monotonic()
    out = run(buy_once(PartybrokerClient(raw_url, "drip", "u", Secret("p"), timeout_s=0.5)))
    elapsed = time.monotonic() - started
    assert isinstance(out, Recorded)
    assert elapsed < 5.0  # the drip lasts 10 s


def test_sales_refuse_nonsense_quantities_and_refs() -> None:
    with pytest.raises(ValueError):
        Sale(WEISSBIER, 0)
    with pytest.raises(ValueError):
        Sale(WEISSBIER, True)
    with pytest.raises(ValueError):
        DrinkRef()
    with pytest.raises(ValueError):
        DrinkRef(id=1, external_id="x")


# --- an overall deadline: the emulator drips status line, headers and body a byte at a time ---------

DEADLINE_S = 1.0
SLACK_S = 5.0  # generous for a loaded machine; a 100 ms drip of any answer here lasts over 20 s


@pytest.mark.parametrize(("kind", "booked"), [(FaultKind.DRIP_AFTER, {145: 1}), (FaultKind.DRIP_BEFORE, {})])
def test_a_sale_whose_answer_drips_is_ambiguous_at_the_deadline(
    emu: PartybrokerEmulator, kind: FaultKind, booked: dict[int, int]
) -> None:
    emu.faults.inject(kind, ms=100, cap_s=60, times=1, method="POST")
    started = time.monotonic()
    out = run(buy(emu, Sale(WEISSBIER, 1), timeout_s=DEADLINE_S))
    elapsed = time.monotonic() - started
    assert out == Ambiguous(f"no complete answer within {DEADLINE_S:g} s", maybe_applied=True)
    assert DEADLINE_S <= elapsed <= DEADLINE_S + SLACK_S
    assert {d: n for d, n in emu.units_sold().items() if n} == booked  # after: the party took the sale
    assert emu.faults.applied() == {kind.value: 1}


async def list_drinks(client: PartybrokerClient) -> object:
    async with client:
        return await client.drinks()


def test_a_dripping_price_list_is_ambiguous_at_the_deadline(emu: PartybrokerEmulator) -> None:
    emu.faults.inject(FaultKind.DRIP_AFTER, ms=100, cap_s=60, times=1, method="GET")
    started = time.monotonic()
    out = run(list_drinks(client_for(emu, timeout_s=DEADLINE_S)))
    elapsed = time.monotonic() - started
    assert out == Ambiguous(f"no complete answer within {DEADLINE_S:g} s", maybe_applied=False)
    assert DEADLINE_S <= elapsed <= DEADLINE_S + SLACK_S


def test_a_deadline_that_strikes_while_connecting_is_provably_not_applied() -> None:
    with connect_never_completes() as port:
        url = f"http://127.0.0.1:{port}/api"
        started = time.monotonic()
        out = run(buy_once(PartybrokerClient(url, "1234", "taptill", Secret(PASSWORD), timeout_s=0.5)))
        elapsed = time.monotonic() - started
    assert isinstance(out, Ambiguous) and out.maybe_applied is False, out
    assert 0.5 <= elapsed <= 0.5 + SLACK_S
