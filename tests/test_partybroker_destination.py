"""PartybrokerDestination in-process, against the Partybroker emulator on loopback and a real journal file:
which records one flush POSTs, what each answer becomes, at most once on a maybe-applied report, and
through the delivery loop that a report refused before it reached the party arrives later (the emulator's
own count of units sold is the proof, not the terminal's)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.partybroker import PartybrokerEmulator
from terminal.journal import Journal
from terminal.outbox.loop import DeliveryLoop
from terminal.outbox.outcome import Ambiguous, Done, Each, GaveUp, Rejected, Unreachable
from terminal.outbox.schedule import Backoff, Schedule
from terminal.outbox.table import OutboxRow, OutboxTable, insert_statement, rows
from terminal.partybroker.client import PartybrokerClient
from terminal.partybroker.destination import UNAUTHORIZED_RETRY_S, PartybrokerDestination
from terminal.partybroker.outcomes import DrinkRef
from terminal.partybroker.price_board import PriceBoard, PricePoller
from terminal.partybroker.report_outbox import DESTINATION
from terminal.service.secret import Secret

pytestmark = pytest.mark.partybroker

T = TypeVar("T")
PASSWORD = "pb-destination-Pa55"
LOGGER = "terminal.partybroker.destination"
# wallet product -> drink: two by id, one by external id; radler (148) is a Premium drink
DRINKS = {
    "weissbier": DrinkRef(id=145),
    "helles": DrinkRef(external_id="234567"),
    "radler": DrinkRef(id=148),
}
WEISSBIER, HELLES, RADLER = 145, 146, 148


def run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


@pytest.fixture
def emu() -> Iterator[PartybrokerEmulator]:
    with PartybrokerEmulator(password=PASSWORD, price_interval_s=60) as e:
        yield e


class Party:
    """A destination wired as the terminal wires it, on ``emu``, with its journal's outbox table."""

    def __init__(self, journal: Journal, emu: PartybrokerEmulator, password: str = PASSWORD) -> None:
        self.journal = journal
        self.emu = emu
        self.client = PartybrokerClient(
            emu.base_url, emu.party_id, emu.username, Secret(password), timeout_s=3
        )
        self.board = PriceBoard(DRINKS, 60)
        self.notified = 0
        self.poller = PricePoller(self.client, self.board, self._notify)
        self.destination = PartybrokerDestination(OutboxTable(journal, DESTINATION), self.client, self.poller)

    def _notify(self, _board: PriceBoard) -> None:
        self.notified += 1

    def add(self, *payloads: dict[str, object], maybe_sent: bool = False) -> list[OutboxRow]:
        """Journal one report per payload (refs r0, r1, ...) and return them as the loop reads them."""
        self.journal.execute_all([insert_statement(DESTINATION, f"r{i}", p) for i, p in enumerate(payloads)])
        if maybe_sent:
            self.journal.execute_all([("UPDATE outbox SET maybe_sent = 1, reason = 'timed out'", ())])
        return rows(self.journal, DESTINATION)

    async def attempt(self, batch: Sequence[OutboxRow]) -> object:
        try:
            return await self.destination.attempt(batch)
        finally:
            await self.client.aclose()


def report(drink: str, quantity: object = 1) -> dict[str, object]:
    return {"drink_key": drink, "quantity": quantity}


def refused_url() -> str:
    """An API root on a loopback port nothing listens on: the connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


# --- what the loop asks of the destination ----------------------------------------------------------------


def test_one_lane_every_record_ready_and_settled_only_when_maybe_sent(
    journal: Journal, emu: PartybrokerEmulator
) -> None:
    party = Party(journal, emu)
    party.add(report("weissbier"), report("helles"))
    journal.execute_all([("UPDATE outbox SET maybe_sent = 1 WHERE ref = 'r1'", ())])
    fresh, sent = rows(journal, DESTINATION)
    d = party.destination
    assert (d.name, d.batches, d.rate_limit) == (DESTINATION, True, None)
    assert (d.lane(fresh), d.lane(sent)) == (DESTINATION, DESTINATION)
    assert (d.ready(fresh), d.ready(sent)) == (True, True)
    assert (d.needs_settle(fresh), d.needs_settle(sent)) == (False, True)
    assert run(d.prepare([fresh, sent])) is None


def test_settling_a_maybe_sent_report_gives_it_up_with_its_reason_and_sends_nothing(
    journal: Journal, emu: PartybrokerEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    party = Party(journal, emu)
    (record,) = party.add(report("weissbier"), maybe_sent=True)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert run(party.destination.settle(record)) == GaveUp("timed out")
    assert [r.getMessage() for r in caplog.records] == [
        f"Partybroker report {record.ref}: timed out; not re-sent (at most once)"
    ]
    journal.execute_all([("UPDATE outbox SET reason = ''", ())])
    (record,) = rows(journal, DESTINATION)
    assert run(party.destination.settle(record)) == GaveUp("the outcome of its report is unknown")
    assert emu.units_sold()[WEISSBIER] == 0


# --- one flush: which records go in the POST ---------------------------------------------------------------


def test_one_post_sums_each_drink_and_books_it(journal: Journal, emu: PartybrokerEmulator) -> None:
    party = Party(journal, emu)
    batch = party.add(report("weissbier", 2), report("helles"), report("weissbier"))
    assert run(party.attempt(batch)) == Done()
    assert emu.units_sold() == {WEISSBIER: 3, HELLES: 1, 147: 0, RADLER: 0}
    # the answer's prices count at once: each sold drink rose by 10 cents per unit
    assert [(p.product_id, p.price_cents) for p in party.board.prices()] == [
        ("weissbier", 320),
        ("helles", 240),
    ]
    assert party.notified == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"quantity": 1},
        {"drink_key": 145, "quantity": 1},
        {"drink_key": "weissbier"},
        {"drink_key": "weissbier", "quantity": "1"},
        {"drink_key": "weissbier", "quantity": 1.0},
        {"drink_key": "weissbier", "quantity": True},
        {"drink_key": "weissbier", "quantity": 0},
        {"drink_key": "weissbier", "quantity": -1},
    ],
)
def test_an_unreadable_record_is_rejected_alone_and_the_rest_is_sent(
    journal: Journal, emu: PartybrokerEmulator, payload: dict[str, object]
) -> None:
    party = Party(journal, emu)
    good, bad = party.add(report("weissbier"), payload)
    assert run(party.attempt([good, bad])) == Each(
        (((bad,), Rejected("the report's record cannot be read")), ((good,), Done()))
    )
    assert emu.units_sold()[WEISSBIER] == 1


def test_unreadable_records_alone_are_rejected_without_a_request(
    journal: Journal, emu: PartybrokerEmulator
) -> None:
    party = Party(journal, emu)
    batch = party.add(report("weissbier", 0), {"drink_key": None, "quantity": 2})
    assert run(party.attempt(batch)) == Rejected("the report's record cannot be read")
    assert emu.stats()["logins"] == 0  # nothing reached the party


def test_a_drink_the_party_does_not_list_is_dropped_before_the_post(journal: Journal) -> None:
    with PartybrokerEmulator(password=PASSWORD, premium=False) as basic:
        party = Party(journal, basic)
        beer, radler, bad = party.add(report("weissbier"), report("radler", 2), report("helles", -2))

        async def poll_then_flush() -> object:
            await party.poller.poll_once()  # the list lacks radler: the party has no Premium
            assert party.board.missing == ("radler",)
            return await party.attempt([beer, radler, bad])

        assert run(poll_then_flush()) == Each(
            (
                ((bad,), Rejected("the report's record cannot be read")),
                ((radler,), Rejected("drink not listed by the party (Premium?)")),
                ((beer,), Done()),
            )
        )
        assert basic.units_sold()[WEISSBIER] == 1
        (radler_only,) = [r for r in rows(journal, DESTINATION) if r.ref == radler.ref]
        assert run(party.attempt([radler_only])) == Rejected("drink not listed by the party (Premium?)")


def test_a_record_of_a_drink_no_longer_mapped_is_rejected(journal: Journal, emu: PartybrokerEmulator) -> None:
    party = Party(journal, emu)
    batch = party.add(report("mate"), report("club-mate", 3))
    assert run(party.attempt(batch)) == Rejected("no drink mapped")
    assert sum(emu.units_sold().values()) == 0


# --- what each answer becomes -------------------------------------------------------------------------------


def test_a_broken_body_after_booking_is_done_with_the_reason(
    journal: Journal, emu: PartybrokerEmulator
) -> None:
    party = Party(journal, emu)
    batch = party.add(report("weissbier"))
    emu.faults.inject(FaultKind.GARBAGE_TRUNCATED, times=1)
    out = run(party.attempt(batch))
    # booked: the client's reason goes to the record (the new prices come with the next poll)
    assert out == Done("the body is not valid JSON (malformed or cut off)")
    assert emu.units_sold()[WEISSBIER] == 1
    assert party.notified == 0


def test_a_refused_drink_is_rejected_with_status_and_logged(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    # The party lists only three drinks, but the board was never told: the POST names radler and the
    # party refuses the whole request (all or nothing).
    with PartybrokerEmulator(password=PASSWORD, premium=False) as basic:
        party = Party(journal, basic)
        batch = party.add(report("weissbier"), report("radler"))
        caplog.set_level(logging.ERROR, logger=LOGGER)
        out = run(party.attempt(batch))
        assert isinstance(out, Rejected) and out.reason.startswith("404: ") and out.code == ""
        assert [r.getMessage() for r in caplog.records] == [
            f"Partybroker refused 2 report(s) ({out.reason}): dropped"
        ]
        assert basic.units_sold()[WEISSBIER] == 0


def test_a_wrong_password_is_unreachable_for_a_while_and_never_logged(
    journal: Journal, emu: PartybrokerEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    party = Party(journal, emu, password="not-the-password")
    batch = party.add(report("weissbier"))
    caplog.set_level(logging.DEBUG)
    assert run(party.attempt(batch)) == Unreachable("unauthorized", UNAUTHORIZED_RETRY_S)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER] == [
        (LOGGER, logging.ERROR, "Partybroker refuses the login: fix [partybroker] username / password_file")
    ]
    assert "not-the-password" not in caplog.text
    assert emu.units_sold()[WEISSBIER] == 0


def test_429_never_reached_the_party_so_it_is_unreachable_with_the_servers_pause(
    journal: Journal, emu: PartybrokerEmulator
) -> None:
    party = Party(journal, emu)
    batch = party.add(report("weissbier"))
    emu.faults.inject(FaultKind.RATE_LIMIT_429, times=1, retry_after=7)
    out = run(party.attempt(batch))
    assert isinstance(out, Unreachable) and out.retry_after_s == 7.0
    assert emu.units_sold()[WEISSBIER] == 0


def test_a_refused_connection_is_unreachable(journal: Journal, emu: PartybrokerEmulator) -> None:
    party = Party(journal, emu)
    party.client = party.destination.client = PartybrokerClient(
        refused_url(), emu.party_id, emu.username, Secret(PASSWORD), timeout_s=3
    )
    out = run(party.attempt(party.add(report("weissbier"))))
    assert isinstance(out, Unreachable) and out.retry_after_s is None and "cannot connect" in out.detail


@pytest.mark.parametrize(
    ("kind", "booked"),
    [
        (FaultKind.ERROR500_AFTER, 1),
        (FaultKind.DROP_AFTER, 1),
        (FaultKind.ERROR500_BEFORE, 0),
        (FaultKind.DROP_BEFORE, 0),
    ],
)
def test_an_answer_that_may_have_booked_is_ambiguous_and_maybe_applied(
    journal: Journal, emu: PartybrokerEmulator, kind: FaultKind, booked: int
) -> None:
    party = Party(journal, emu)
    emu.faults.inject(kind, times=1)
    out = run(party.attempt(party.add(report("weissbier"))))
    assert isinstance(out, Ambiguous) and out.may_have_applied and out.retry_after_s is None
    assert emu.units_sold()[WEISSBIER] == booked


class Unavailable(BaseHTTPRequestHandler):
    """A proxy in front of the party answering every request 503 with Retry-After: 9 (the request may
    have reached the party behind it)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html>Service Unavailable</html>"
        self.send_response(503)
        self.send_header("Content-Type", "text/html")
        self.send_header("Retry-After", "9")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_503_that_may_have_booked_keeps_the_servers_pause(
    journal: Journal, emu: PartybrokerEmulator
) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), Unavailable) as proxy:
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            party = Party(journal, emu)
            url = f"http://127.0.0.1:{proxy.server_address[1]}/api"
            party.client = party.destination.client = PartybrokerClient(
                url, emu.party_id, emu.username, Secret(PASSWORD), timeout_s=3
            )
            out = run(party.attempt(party.add(report("weissbier"))))
        finally:
            proxy.shutdown()
    assert isinstance(out, Ambiguous) and out.may_have_applied and out.retry_after_s == 9.0


# --- through the delivery loop: the emulator's count is the proof -------------------------------------------


def fast_loop(destination: PartybrokerDestination) -> DeliveryLoop[OutboxRow]:
    return DeliveryLoop(
        destination, schedule=Schedule(Backoff(base_s=0.02, max_s=0.1)), min_pause_s=0.01, idle_look_s=0.05
    )


async def deliver(party: Party, until: int, *, limit_s: float = 20.0) -> list[str]:
    """Run the loop until ``until`` records have ended (done, rejected or given up); their states."""
    loop = fast_loop(party.destination)
    stop = asyncio.Event()
    task = asyncio.ensure_future(loop.run(stop))
    try:
        async with asyncio.timeout(limit_s):
            while (
                len(ended := [r.state for r in rows(party.journal, DESTINATION) if r.state != "pending"])
                < until
            ):
                await asyncio.sleep(0.02)
        return ended
    finally:
        stop.set()
        await task
        await party.client.aclose()


@pytest.mark.parametrize("refusal", ["429", "refused connection"])
def test_a_report_refused_before_it_reached_the_party_is_sent_again_and_arrives_once(
    journal: Journal, emu: PartybrokerEmulator, refusal: str
) -> None:
    party = Party(journal, emu)
    party.add(report("weissbier", 2), report("helles"))
    if refusal == "429":
        emu.faults.inject(FaultKind.RATE_LIMIT_429, times=2, retry_after=1)
    else:
        party.destination.client = PartybrokerClient(
            refused_url(), emu.party_id, emu.username, Secret(PASSWORD)
        )

    async def heal_later() -> list[str]:
        task = asyncio.ensure_future(deliver(party, 2))
        await asyncio.sleep(0.3)
        assert sum(emu.units_sold().values()) == 0
        refused = party.destination.client
        party.destination.client = party.client  # the party takes requests again
        if refused is not party.client:
            await refused.aclose()
        return await task

    assert run(heal_later()) == ["done", "done"]
    assert (emu.units_sold()[WEISSBIER], emu.units_sold()[HELLES]) == (2, 1)


def test_a_report_that_may_have_reached_the_party_is_never_sent_again(
    journal: Journal, emu: PartybrokerEmulator
) -> None:
    party = Party(journal, emu)
    party.add(report("weissbier"))
    emu.faults.inject(FaultKind.ERROR500_AFTER, times=1)
    assert run(deliver(party, 1)) == ["ambiguous"]
    assert emu.units_sold()[WEISSBIER] == 1  # booked once by the party; the terminal counts it ambiguous
    (record,) = rows(journal, DESTINATION)
    assert (record.attempts, record.maybe_sent) == (1, True)
