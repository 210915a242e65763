"""Ready2OrderDestination in-process, step by step, against the ready2order emulator on loopback and a real
journal: what each create, daily-report call and search answer becomes, word for word where a person reads
it (the held reason, the operator's log line, the mirror's health), when a search waits for a request that
may still land, which days it searches, page by page, and that every request beyond the loop's own waits
for the token bucket (on the test's clock: nothing really sleeps)."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit

import pytest

import terminal.ready2order.destination as destination_module
import terminal.service.crashpoint as crashpoint_module
from terminal.emulator.faults import FaultKind
from terminal.emulator.ready2order import Ready2OrderEmulator
from terminal.emulator.ready2order.wire import Answer, api_error
from terminal.outbox.landing import SLACK_S
from terminal.outbox.outcome import (
    Ambiguous,
    Booked,
    Done,
    Each,
    NotBooked,
    RateLimited,
    Rejected,
    Unclear,
    Unreachable,
    Wait,
)
from terminal.outbox.rate_limit import TokenBucket
from terminal.outbox.table import OutboxRow
from terminal.ready2order import outcomes as r2o
from terminal.ready2order.client import Ready2OrderClient
from terminal.ready2order.config import ProductMapping, Ready2OrderConfig
from terminal.ready2order.destination import SEARCH_MAX, SEARCH_PAGE, Ready2OrderDestination
from terminal.ready2order.health import MirrorHealth, Stopped
from terminal.ready2order.invoice import InvoiceRequest, build_request
from terminal.ready2order.invoice_outbox import DESTINATION
from terminal.ready2order.invoice_table import AttemptTime, InvoiceTable, Receipt
from terminal.service.secret import Secret
from tests.r2o_lab import PRODUCTS, MirrorRig, mirror_config
from tests.raw_http import RawHttpServer, http_response
from tests.terminal_lab import local_zone

pytestmark = pytest.mark.ready2order

T = TypeVar("T")
LOGGER = "terminal.ready2order.destination"
TIMEOUT_S = 2.0
AFTER_S = TIMEOUT_S + SLACK_S  # a request can land until then
RATE = 60  # requests a minute: each wait on the bucket is a whole second of the test's clock
START = 1000.0  # the monotonic clock when the destination is made
SINCE = 1_700_000_000.0  # the health's wall clock
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
DAY_S = 86_400.0
CREATE = "PUT /v1/document/invoice"
SEARCH = "GET /v1/document/invoice"
STATUS = "GET /v1/dailyReport/status"
OPEN = "PUT /v1/dailyReport/open"
NO_DAY = "There is no open daily report; open one before billing"  # the emulator's words
FIX_401 = (
    "ready2order refuses the account token in [ready2order] account_token_file (wrong or revoked); run "
    "taptill-provision --ready2order again"
)
FIX_403 = (
    "the token in [ready2order] account_token_file is not an account token (a developer token?); run "
    "taptill-provision --ready2order to get the account token"
)
WAITING = "waiting until its last attempt can no longer land, then searching for it"


@pytest.fixture
def emu() -> Iterator[Ready2OrderEmulator]:
    with Ready2OrderEmulator(rate_limit=100_000) as emulator:
        yield emulator


@pytest.fixture
def far_east() -> Iterator[None]:
    """The terminal's local time 14 hours ahead of UTC: noon UTC is tomorrow there, so a window taken in
    local dates instead of UTC ones shows."""
    with local_zone("Etc/GMT-14"):
        yield


class Clock:
    """A monotonic clock the test moves (and the destination's waits on the bucket move)."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """``asyncio`` as the destination sees it: each sleep is recorded and passes on the test's clock at
    once; a spend that keeps sleeping (a bucket on another clock, a loop that never ends) fails."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) > 40:
            raise AssertionError(f"the destination keeps sleeping: {self.waits[:5]}…")
        self.clock.now += seconds
        await asyncio.sleep(0)


class ServerClock(Ready2OrderClient):
    """The real client, with the server's clock (its Date header) set by the test to the second."""

    said: float | None = None

    def server_time(self) -> float | None:
        return self.said


class Canned(Ready2OrderClient):
    """A client whose create answers ``answer`` without a request: answers the HTTP exchange does not give
    today (an Unavailable carrying a Retry-After, an outcome no create has)."""

    def __init__(self, answer: object) -> None:
        super().__init__("http://127.0.0.1:9/v1", Secret("unused"), timeout_s=TIMEOUT_S)
        self.answer = answer

    async def create_invoice(self, invoice: Mapping[str, object]) -> r2o.CreateOutcome:
        return cast(r2o.CreateOutcome, self.answer)


class Step:
    """A destination of the test's own on ``rig``'s journal and ``emu``: the test's monotonic clock and
    sleeps, a health with a fixed wall clock, 60 requests a minute; each call is one step of the loop."""

    def __init__(
        self,
        rig: MirrorRig,
        emu: Ready2OrderEmulator,
        *,
        client: Ready2OrderClient | None = None,
        wall: Callable[[], float] = time.time,
        **changes: Any,
    ) -> None:
        self.rig = rig
        self.emu = emu
        self.clock = Clock()
        self.sleeps = Sleeps(self.clock)
        self.health = MirrorHealth(clock=lambda: SINCE)
        self.cfg: Ready2OrderConfig = mirror_config(
            emu, None, requests_per_minute=RATE, timeout_s=TIMEOUT_S, **changes
        )
        self.client = client or ServerClock(emu.base_url, Secret(emu.account_token), timeout_s=TIMEOUT_S)
        self.destination = Ready2OrderDestination(
            InvoiceTable(rig.journal), self.client, self.cfg, self.health, monotonic=self.clock, clock=wall
        )

    def record(self, *products: str) -> OutboxRow:
        """A booked sale's invoice record, as the loop reads it."""
        sale = self.rig.sell(*products)
        (record,) = [r for r in self.rig.records() if r.sale_id == sale.id]
        return record

    def again(self, record: OutboxRow) -> OutboxRow:
        """``record`` as the journal holds it now."""
        (now,) = [r for r in self.rig.records() if r.id == record.id]
        return now

    def loop_spends(self) -> None:
        """The request the delivery loop spends before each step (the bucket must allow it now)."""
        assert self.destination.rate_limit.take(), "the test's clock left no request for this step"

    async def attempt(self, record: OutboxRow) -> object:
        self.loop_spends()
        return await self.destination.attempt([record])

    async def begin(self, record: OutboxRow) -> OutboxRow:
        """As the loop begins an attempt: when it goes out noted, the record maybe sent."""
        self.destination.store.begin([record], await self.destination.prepare([record]))
        return self.again(record)

    async def settle(self, record: OutboxRow) -> object:
        """Settle once the record's last request can no longer land."""
        self.clock.now = max(self.clock.now, START + AFTER_S)
        self.loop_spends()
        return await self.destination.settle(record)

    def bill(self, record: OutboxRow, **changes: Any) -> dict[str, Any]:
        """An invoice for ``record`` made on the emulator directly (as an earlier attempt would have);
        ``changes`` alter the request body (another reference, another price)."""
        built = build_request(record.ref, record.payload, mirror_config(self.emu, None))
        assert isinstance(built, InvoiceRequest)
        body = {**built.body, **changes}
        status, invoice = self.emu.account.create_invoice(body)
        assert status == 200 and isinstance(invoice, dict), invoice
        return invoice

    async def aclose(self) -> None:
        await self.client.aclose()


def run(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    scenario: Callable[[Step], Awaitable[T]],
    *,
    training: bool = False,
    **step: Any,
) -> T:
    async def go() -> T:
        rig = MirrorRig(tmp_path, emu, training=training)
        mine = Step(rig, emu, **step)
        monkeypatch.setattr(destination_module, "asyncio", mine.sleeps)
        try:
            return await scenario(mine)
        finally:
            await mine.aclose()
            await rig.aclose()

    return asyncio.run(go())


def held(record: OutboxRow, detail: str) -> Each:
    """An attempt's outcome holding ``record`` for a person with ``detail``."""
    return Each((((record,), Unclear(detail)),))


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    return [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def requests(emu: Ready2OrderEmulator) -> dict[str, int]:
    return dict(emu.requests)


def searches(emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The query parameters of every search the emulator answers from now on, in order."""
    seen: list[dict[str, str]] = []
    real = emu.account.search

    def recording(params: Any) -> Answer:
        seen.append(dict(params))
        return real(params)

    monkeypatch.setattr(emu.account, "search", recording)
    return seen


def canned_search(
    emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch, answer: Callable[[dict[str, str]], Answer]
) -> list[dict[str, str]]:
    """The emulator's search answered by ``answer`` (its parameters recorded, in order)."""
    seen: list[dict[str, str]] = []

    def canned(params: Any) -> Answer:
        seen.append(dict(params))
        return answer(dict(params))

    monkeypatch.setattr(emu.account, "search", canned)
    return seen


def invoice(n: int, reference: str, *, total: str = "2.50", cancelled: bool = False) -> dict[str, Any]:
    """One invoice as a search lists it."""
    return {
        "invoice_id": n,
        "invoice_numberFull": f"RG2026/{n}",
        "invoice_total": total,
        "invoice_externalReferenceNumber": reference,
        "invoice_testMode": False,
        "invoice_deleted_at": "2026-03-10 13:00:00" if cancelled else None,
    }


def receipt(wire: dict[str, Any], *, found: bool = False) -> Receipt:
    return Receipt(wire["invoice_id"], wire["invoice_numberFull"], Decimal(str(wire["invoice_total"])), found)


def day(text: str) -> float:
    """Epoch seconds of noon UTC on ``text`` (``YYYY-MM-DD``)."""
    return datetime.fromisoformat(f"{text}T12:00:00+00:00").timestamp()


# --- the destination's shape -------------------------------------------------------------------------------


def test_each_record_is_its_own_lane_always_ready_and_settled_only_when_maybe_sent(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(step: Step) -> None:
        record = step.record()
        d = step.destination
        assert (d.name, d.batches) == (DESTINATION, False)
        assert d.lane(record) == record.ref and d.ready(record) is True
        assert d.needs_settle(record) is False
        assert d.needs_settle(await step.begin(record)) is True

    run(tmp_path, emu, monkeypatch, scenario)


@pytest.mark.parametrize(
    ("server", "expected"),
    [(None, NOON), (NOON - DAY_S, NOON - DAY_S), (NOON + DAY_S, NOON)],
    ids=["server-unknown", "server-behind", "server-ahead"],
)
def test_an_attempt_is_timed_by_the_earlier_of_both_clocks(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    server: float | None,
    expected: float,
) -> None:
    """A clock behind by either side cannot move the search's window past the invoice."""

    async def scenario(step: Step) -> tuple[object, object]:
        assert isinstance(step.client, ServerClock)
        step.client.said = server
        record = step.record()
        basis = await step.destination.prepare([record])
        return basis, step.again(await step.begin(record)).payload["first_attempt_at"]

    assert run(tmp_path, emu, monkeypatch, scenario, wall=lambda: NOON) == (AttemptTime(expected), expected)


# --- spending requests -------------------------------------------------------------------------------------


def test_each_request_beyond_the_loops_waits_for_the_bucket(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request a second at 60 a minute: a full bucket is spent without waiting, an empty one waits
    the second it needs, and a wait shorter than 10 ms is slept as 10 ms (no busy loop)."""

    async def scenario(step: Step) -> list[list[float]]:
        d = step.destination
        out = []
        await d.spend()
        out.append(list(step.sleeps.waits))
        assert d.rate_limit.wait_s() == pytest.approx(1.0), "the full bucket was spent"
        await d.spend()
        out.append(list(step.sleeps.waits))
        step.clock.now += 0.995
        await d.spend()
        out.append(list(step.sleeps.waits))
        return out

    full, empty, almost = run(tmp_path, emu, monkeypatch, scenario)
    assert full == []
    assert empty == [1.0]
    assert almost[:1] == [1.0] and almost[1:] == [0.01]


def test_a_bucket_given_is_the_one_spent(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime's bucket may be shared: two at once, then one every two seconds."""

    async def scenario(step: Step) -> list[float]:
        mine = step.destination
        bucket = TokenBucket(2, 0.5, monotonic=step.clock)
        shared = Ready2OrderDestination(
            mine.store, step.client, step.cfg, step.health, rate_limit=bucket, monotonic=step.clock
        )
        for _ in range(3):
            await shared.spend()
        return step.sleeps.waits

    assert run(tmp_path, emu, monkeypatch, scenario) == [2.0]


# --- attempts: created -------------------------------------------------------------------------------------


def test_a_created_invoice_with_the_sales_total_is_done_and_says_so(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario(step: Step) -> tuple[object, OutboxRow, str | None, object]:
        step.health.problem("an earlier timeout")
        record = step.record("espresso", "espresso")
        outcome = await step.attempt(record)
        step.clock.now += 1.0
        return outcome, record, step.health.last_problem, await step.destination.settle(record)

    outcome, record, problem, settle = run(tmp_path, emu, monkeypatch, scenario)
    (billed,) = emu.invoices()
    created = Receipt(billed["invoice_id"], billed["invoice_numberFull"], Decimal("5.00"))
    assert outcome == Done(created)
    assert billed["invoice_externalReferenceNumber"] == record.ref and billed["invoice_total"] == 5.0
    assert [(i["item_quantity"], i["item_price"]) for i in billed["items"]] == [(2, "2.50")]
    assert problem is None, "a request that went through clears the mirror's problem"
    assert lines(caplog) == [
        (
            LOGGER,
            logging.INFO,
            f"sale {record.ref} mirrored: invoice {created.number} (id {created.invoice_id}) created",
        )
    ]
    assert settle == Wait(AFTER_S - 1.0, WAITING), "its request was noted as sent when it went out"
    assert requests(emu) == {CREATE: 1}


def test_a_created_invoice_with_another_total_is_held_in_words_a_person_can_act_on(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    real = emu.account.create_invoice

    def rounding_server(body: object) -> Answer:
        status, answered = real(body)
        assert isinstance(answered, dict)
        return status, {**answered, "invoice_total": "2.40"}

    monkeypatch.setattr(emu.account, "create_invoice", rounding_server)

    async def scenario(step: Step) -> tuple[object, OutboxRow, str | None]:
        step.health.problem("an earlier timeout")
        record = step.record()
        return await step.attempt(record), record, step.health.last_problem

    outcome, record, problem = run(tmp_path, emu, monkeypatch, scenario)
    (billed,) = emu.invoices()
    number, invoice_id = billed["invoice_numberFull"], billed["invoice_id"]
    assert outcome == held(
        record,
        f"invoice {number} (id {invoice_id}) created totals 2.40, the sale 2.50: check it in ready2order "
        f"(cancel and bill it by hand if wrong), then taptill settle {record.ref} --booked",
    )
    assert problem is None, "the request went through all the same"
    assert lines(caplog) == [], "not said to be mirrored"


def test_a_record_that_cannot_be_billed_is_held_naming_itself_and_nothing_is_sent(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(step: Step) -> tuple[object, OutboxRow]:
        record = step.record("cappuccino")
        return await step.attempt(record), record

    products = {"espresso": ProductMapping(*PRODUCTS["espresso"])}
    outcome, record = run(tmp_path, emu, monkeypatch, scenario, products=products)
    assert outcome == held(
        record,
        "wallet product(s) cappuccino have no [ready2order.products] entry: add them, restart, then taptill "
        f"settle {record.ref} --not-booked",
    )
    assert requests(emu) == {} and emu.invoices() == []


# --- attempts: refused ------------------------------------------------------------------------------------


def test_a_refusal_while_the_day_is_open_is_a_rejection_in_the_servers_words(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The day is asked about first (a refusal for a closed day is not the invoice's fault), after the
    bucket allows a second request."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    monkeypatch.setattr(
        emu.account,
        "create_invoice",
        lambda body: api_error(422, "item_price is too precise", "invalidPrice"),
    )

    async def scenario(step: Step) -> tuple[object, list[float]]:
        return await step.attempt(step.record()), step.sleeps.waits

    outcome, waits = run(tmp_path, emu, monkeypatch, scenario)
    assert outcome == Rejected("item_price is too precise", "422 invalidPrice")
    assert lines(caplog) == [
        (
            LOGGER,
            logging.ERROR,
            "ready2order refused an invoice (422 invalidPrice): item_price is too precise",
        )
    ]
    assert waits == [1.0] and requests(emu) == {CREATE: 1, STATUS: 1}


def test_a_refusal_without_a_code_is_coded_by_its_status_alone(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario(step: Step) -> object:
        return await step.attempt(step.record())

    products = {"espresso": ProductMapping(111, 9)}
    outcome = run(tmp_path, emu, monkeypatch, scenario, products=products)
    said = "items[0].item_vatId 9 is not a VAT rate of this account"
    assert outcome == Rejected(said, "400")
    assert lines(caplog) == [(LOGGER, logging.ERROR, f"ready2order refused an invoice (400): {said}")]
    assert emu.invoices() == []


@pytest.mark.parametrize("open_day", [False, True])
def test_a_closed_day_stops_the_mirror_unless_it_may_be_and_can_be_opened(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    open_day: bool,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    emu.close_day()
    if open_day:  # the day may be opened, but ready2order does not answer the open
        emu.faults.inject(FaultKind.ERROR500_BEFORE, route="daily_report", method="PUT", times=1)

    async def scenario(step: Step) -> tuple[object, Stopped | None, list[float]]:
        outcome = await step.attempt(step.record())
        return outcome, step.health.day_closed, step.sleeps.waits

    outcome, stopped, waits = run(tmp_path, emu, monkeypatch, scenario, open_day=open_day)
    fix = (
        "the terminal could not open it; open the day in ready2order"
        if open_day
        else "open the day in ready2order (or set open_day = true in [ready2order])"
    )
    assert outcome == Unreachable("no daily report is open")
    assert stopped == Stopped("no daily report is open", fix, SINCE)
    assert lines(caplog) == [
        (LOGGER, logging.ERROR, f"ready2order: no daily report is open; the mirror waits: {fix}")
    ]
    assert not emu.account.day_is_open() and emu.invoices() == []
    assert requests(emu) == {CREATE: 1, STATUS: 1, **({OPEN: 1} if open_day else {})}
    assert waits == [1.0] * (2 if open_day else 1), "each request after the create waited for the bucket"


def test_a_closed_day_is_opened_with_open_day_and_the_record_sent_again_at_once(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    emu.close_day()

    async def scenario(step: Step) -> tuple[object, Stopped | None, list[float]]:
        outcome = await step.attempt(step.record())
        return outcome, step.health.day_closed, step.sleeps.waits

    outcome, stopped, waits = run(tmp_path, emu, monkeypatch, scenario, open_day=True)
    assert outcome == Unreachable("no daily report was open; opened one", retry_after_s=0.0)
    assert stopped is None and emu.account.day_is_open() and emu.invoices() == []
    assert lines(caplog) == [
        (LOGGER, logging.WARNING, "no daily report was open in ready2order: opened one (open_day = true)")
    ]
    assert requests(emu) == {CREATE: 1, STATUS: 1, OPEN: 1} and waits == [1.0, 1.0]


def test_a_refusal_whose_day_cannot_be_read_is_retried_saying_both(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    emu.close_day()
    emu.faults.inject(FaultKind.ERROR500_BEFORE, route="daily_report", times=1)

    async def scenario(step: Step) -> tuple[object, str | None, Stopped | None]:
        return await step.attempt(step.record()), step.health.last_problem, step.health.day_closed

    outcome, problem, stopped = run(tmp_path, emu, monkeypatch, scenario, open_day=True)
    said = f"refused (400: {NO_DAY}); the daily report cannot be read"
    assert (outcome, problem, stopped) == (Unreachable(said), said, None)
    assert lines(caplog) == [] and requests(emu) == {CREATE: 1, STATUS: 1}


def test_a_daily_report_status_refused_in_its_own_words_is_retried_in_the_creates(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu.close_day()
    monkeypatch.setattr(emu.account, "day_status", lambda: api_error(400, "no status for this account"))

    async def scenario(step: Step) -> tuple[object, str | None]:
        return await step.attempt(step.record()), step.health.last_problem

    said = f"refused (400: {NO_DAY}); the daily report cannot be read"
    assert run(tmp_path, emu, monkeypatch, scenario) == (Unreachable(said), said)


# --- attempts: failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "status", "message", "fix"),
    [
        ("revoked-token", 401, "Token is invalid or was revoked", FIX_401),
        ("developer", 403, "This endpoint needs an account token", FIX_403),
    ],
)
def test_a_refused_token_stops_the_mirror_and_says_what_to_do(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    token: str,
    status: int,
    message: str,
    fix: str,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    given = emu.developer_token if token == "developer" else token
    client = Ready2OrderClient(emu.base_url, Secret(given), timeout_s=TIMEOUT_S)

    async def scenario(step: Step) -> tuple[object, Stopped | None]:
        return await step.attempt(step.record()), step.health.refused

    outcome, refused = run(tmp_path, emu, monkeypatch, scenario, client=client)
    assert outcome == Unreachable(f"unauthorized ({status})")
    assert refused == Stopped(f"ready2order answered {status}: {message}", fix, SINCE)
    assert lines(caplog) == [(LOGGER, logging.ERROR, f"ready2order refuses the token ({status}): {fix}")]
    assert emu.invoices() == []


def test_a_429_pauses_the_mirror_for_the_time_it_names(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    emu.faults.inject(FaultKind.RATE_LIMIT_429, route="invoice_create", times=1, retry_after=90)

    async def scenario(step: Step) -> tuple[object, float | None]:
        outcome = await step.attempt(step.record())
        return outcome, step.health.paused[1] if step.health.paused else None

    outcome, paused = run(tmp_path, emu, monkeypatch, scenario)
    said = "HTTP 429 (rate limited): Request was throttled. Expected available in 90 seconds."
    assert outcome == RateLimited(90.0, said) and paused == 90.0
    assert lines(caplog) == [(LOGGER, logging.WARNING, f"ready2order: {said}; pausing the mirror 90 s")]


@pytest.mark.parametrize(
    ("kind", "status"), [(FaultKind.ERROR500_AFTER, 500), (FaultKind.DROP_AFTER, None)], ids=["500", "drop"]
)
def test_a_create_that_may_have_landed_is_ambiguous_then_searched_for_once_it_cannot_land(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kind: FaultKind,
    status: int | None,
) -> None:
    """Sent at 1010 s: no search before 1013 s (its deadline and a second); then it is found, not sent
    again."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    emu.faults.inject(kind, route="invoice_create", times=1)

    async def scenario(step: Step) -> tuple[object, str | None, object, object, int, OutboxRow]:
        record = await step.begin(step.record())
        step.clock.now = START + 10
        outcome = await step.attempt(record)
        problem = step.health.last_problem
        step.clock.now = START + 12
        early = await step.destination.settle(record)
        searched_early = requests(emu).get(SEARCH, 0)
        step.clock.now = START + 10 + AFTER_S
        return outcome, problem, early, await step.destination.settle(record), searched_early, record

    outcome, problem, early, settled, searched_early, record = run(tmp_path, emu, monkeypatch, scenario)
    assert isinstance(outcome, Ambiguous), outcome
    assert outcome == Ambiguous(outcome.detail, True, None, status) and problem == outcome.detail
    if status == 500:
        assert outcome.detail == "HTTP 500 (not the API's answer)"
    else:
        assert outcome.detail.startswith("connection trouble: no answer from ready2order ("), outcome
    assert early == Wait(1.0, WAITING) and searched_early == 0
    (billed,) = emu.invoices()
    found = receipt(billed, found=True)
    assert settled == Booked(found)
    assert lines(caplog)[-1] == (
        LOGGER,
        logging.INFO,
        f"sale {record.ref}: its earlier attempt was applied: invoice {found.number} (id {found.invoice_id}) "
        "found by its reference",
    )
    assert requests(emu) == {CREATE: 1, SEARCH: 1}


def test_a_create_that_provably_did_not_land_is_sent_again_saying_why(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong base_url answers 404: no invoice endpoint was reached."""
    client = Ready2OrderClient(
        f"http://127.0.0.1:{emu.port}/v2", Secret(emu.account_token), timeout_s=TIMEOUT_S
    )

    async def scenario(step: Step) -> tuple[object, str | None]:
        return await step.attempt(step.record()), step.health.last_problem

    said = "Not found; check [ready2order] base_url"
    assert run(tmp_path, emu, monkeypatch, scenario, client=client) == (Unreachable(said), said)
    assert emu.invoices() == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (r2o.Unavailable("HTTP 503: busy", True, 503, 30.0), Ambiguous("HTTP 503: busy", True, 30.0, 503)),
        (r2o.Unavailable("HTTP 503: busy", False, 503, 30.0), Unreachable("HTTP 503: busy", 30.0)),
    ],
    ids=["maybe-applied", "not-applied"],
)
def test_a_servers_wait_is_passed_on(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    answer: object,
    expected: object,
) -> None:
    async def scenario(step: Step) -> tuple[object, str | None]:
        return await step.attempt(step.record()), step.health.last_problem

    outcome, problem = run(tmp_path, emu, monkeypatch, scenario, client=Canned(answer))
    assert (outcome, problem) == (expected, "HTTP 503: busy")


# --- settling: when ----------------------------------------------------------------------------------------


def test_a_search_waits_until_the_last_request_cannot_land_then_happens_at_that_instant(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not sent by this process (an earlier one's attempt, before a restart): counted from the start."""

    async def scenario(step: Step) -> tuple[list[object], list[int]]:
        record = await step.begin(step.record())
        out: list[object] = []
        seen = []
        for at in (0.0, AFTER_S - 0.25, AFTER_S):
            step.clock.now = START + at
            out.append(await step.destination.settle(record))
            seen.append(requests(emu).get(SEARCH, 0))
        return out, seen

    (first, early, on_time), seen = run(tmp_path, emu, monkeypatch, scenario)
    assert first == Wait(AFTER_S, WAITING)
    assert isinstance(early, Wait) and early == Wait(pytest.approx(0.25), WAITING)  # type: ignore[arg-type]
    assert on_time == NotBooked(True)
    assert seen == [0, 0, 1], "no search while waiting, one at the instant"


def test_a_forgotten_record_waits_from_the_start_again(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(step: Step) -> tuple[object, object]:
        record = await step.begin(step.record())
        step.clock.now = START + 10
        await step.attempt(record)  # created: the loop forgets it once it is done
        step.clock.now = START + 11
        waiting = await step.destination.settle(record)
        step.destination.forget([record.id])
        return waiting, await step.destination.settle(record)

    waiting, settled = run(tmp_path, emu, monkeypatch, scenario)
    assert waiting == Wait(AFTER_S - 1.0, WAITING)
    assert isinstance(settled, Booked), settled


# --- settling: what the search finds ----------------------------------------------------------------------


def test_no_invoice_with_its_reference_sends_it_again_without_another_search(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    seen = searches(emu, monkeypatch)

    async def scenario(step: Step) -> tuple[object, OutboxRow, OutboxRow, tuple[str, str]]:
        record = await step.begin(step.record())
        return await step.settle(record), record, step.again(record), step.destination.window(record)

    outcome, record, after, (date_from, date_to) = run(tmp_path, emu, monkeypatch, scenario)
    assert outcome == NotBooked(True)
    assert record.maybe_sent and not after.maybe_sent, "the search proved it: not maybe sent any more"
    assert lines(caplog) == [
        (LOGGER, logging.INFO, f"sale {record.ref}: no invoice with its reference; sending it again")
    ]
    assert seen == [
        {
            "query": record.ref,
            "dateField": "b_dateTime",
            "dateFrom": date_from,
            "dateTo": date_to,
            "testMode": "false",
            "offset": "0",
            "limit": str(SEARCH_PAGE),
            "items": "false",
        }
    ]
    assert requests(emu) == {SEARCH: 1}


def test_a_found_invoice_books_the_record_and_clears_the_mirrors_problem(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario(step: Step) -> tuple[object, dict[str, Any], OutboxRow, str | None]:
        record = await step.begin(step.record())
        other = step.record()
        step.bill(other)  # another sale's invoice is not this one's
        billed = step.bill(record)
        step.health.problem("an earlier timeout")
        return await step.settle(record), billed, record, step.health.last_problem

    outcome, billed, record, problem = run(tmp_path, emu, monkeypatch, scenario)
    found = receipt(billed, found=True)
    assert outcome == Booked(found) and problem is None
    assert lines(caplog) == [
        (
            LOGGER,
            logging.INFO,
            f"sale {record.ref}: its earlier attempt was applied: invoice {found.number} (id "
            f"{found.invoice_id}) found by its reference",
        )
    ]


def test_a_training_sale_is_searched_for_among_training_invoices(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = searches(emu, monkeypatch)

    async def billed_first(step: Step) -> tuple[object, dict[str, Any]]:
        record = step.record()
        billed = step.bill(record)
        return await step.settle(record), billed

    outcome, billed = run(tmp_path, emu, monkeypatch, billed_first, training=True)
    assert billed["invoice_testMode"] is True and billed["invoice_numberFull"].startswith("TR")
    assert outcome == Booked(receipt(billed, found=True))
    assert [s["testMode"] for s in seen] == ["true"]


def test_two_live_invoices_book_the_newest_and_ask_to_cancel_all_but_one(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario(step: Step) -> tuple[object, list[dict[str, Any]], OutboxRow]:
        record = step.record()
        billed = [step.bill(record), step.bill(record)]
        return await step.settle(record), billed, record

    outcome, (older, newer), record = run(tmp_path, emu, monkeypatch, scenario)
    assert outcome == Booked(receipt(newer, found=True)), "the search lists the newest first"
    assert lines(caplog)[0] == (
        LOGGER,
        logging.ERROR,
        f"sale {record.ref} has 2 invoices with its reference ({newer['invoice_numberFull']}, "
        f"{older['invoice_numberFull']}): cancel all but one in ready2order",
    )
    assert [level for _, level, _ in lines(caplog)] == [logging.ERROR, logging.INFO]


@pytest.mark.parametrize(
    ("listed", "booked", "twice"),
    [
        ([invoice(1, "REF", cancelled=True), invoice(2, "REF")], 2, False),
        ([invoice(1, "REF", cancelled=True)], 1, False),
        ([invoice(1, "REF"), invoice(2, "REF", cancelled=True), invoice(3, "REF")], 1, True),
    ],
    ids=["cancelled-then-live", "cancelled-only", "two-live-one-cancelled"],
)
def test_a_live_invoice_is_booked_before_a_cancelled_one_and_only_live_ones_count_twice(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    listed: list[dict[str, Any]],
    booked: int,
    twice: bool,
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    refs: list[str] = []

    def answer(params: dict[str, str]) -> Answer:
        page = [{**i, "invoice_externalReferenceNumber": refs[0]} for i in listed]
        return 200, {"invoices": page, "count": len(page)}

    canned_search(emu, monkeypatch, answer)

    async def scenario(step: Step) -> tuple[object, OutboxRow]:
        record = step.record()
        refs.append(record.ref)
        return await step.settle(record), record

    outcome, record = run(tmp_path, emu, monkeypatch, scenario)
    chosen = next(i for i in listed if i["invoice_id"] == booked)
    assert outcome == Booked(
        Receipt(booked, f"RG2026/{booked}", Decimal(chosen["invoice_total"]), found=True)
    )
    said = (
        f"sale {record.ref} has 2 invoices with its reference (RG2026/1, RG2026/3): cancel all but one in "
        "ready2order"
    )
    assert lines(caplog) == ([(LOGGER, logging.ERROR, said)] if twice else [])


@pytest.mark.parametrize("billed_again", [False, True], ids=["cancelled", "cancelled-then-billed-again"])
def test_a_storno_is_not_taken_for_an_invoice_of_the_sale(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    billed_again: bool,
) -> None:
    """Staff cancelled the sale's invoice (its storno carries the same reference, total negated): the
    storno is not a second invoice of the sale, nor one whose total differs from the sale's."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario(step: Step) -> tuple[object, list[dict[str, Any]]]:
        record = step.record()
        first = step.bill(record)
        status, _ = emu.account.cancel(first["invoice_id"])
        assert status == 200
        billed = [first, *([step.bill(record)] if billed_again else [])]
        return await step.settle(record), billed

    outcome, billed = run(tmp_path, emu, monkeypatch, scenario)
    assert len(emu.invoices()) == 2 + billed_again, "the original, its storno (and the new invoice)"
    chosen = billed[-1]
    assert outcome == Booked(
        Receipt(
            chosen["invoice_id"], chosen["invoice_numberFull"], Decimal(chosen["invoice_total"]), found=True
        )
    )
    assert [level for _, level, _ in lines(caplog)] == [logging.INFO], lines(caplog)


def test_a_found_invoice_with_another_total_is_held_for_a_person(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario(step: Step) -> tuple[object, dict[str, Any], OutboxRow, str | None]:
        record = step.record()
        built = build_request(record.ref, record.payload, step.cfg)
        assert isinstance(built, InvoiceRequest)
        items = [{**built.body["items"][0], "item_price": "2.40"}]
        billed = step.bill(record, items=items)
        step.health.problem("an earlier timeout")
        return await step.settle(record), billed, record, step.health.last_problem

    outcome, billed, record, problem = run(tmp_path, emu, monkeypatch, scenario)
    assert outcome == Unclear(
        f"invoice {billed['invoice_numberFull']} (id {billed['invoice_id']}) found by its reference totals "
        f"2.4, the sale 2.50: check it in ready2order (cancel and bill it by hand if wrong), then taptill "
        f"settle {record.ref} --booked"
    )
    assert lines(caplog) == [] and problem == "an earlier timeout", "not booked, nothing cleared"


def test_a_found_invoice_is_booked_even_when_the_record_could_no_longer_be_billed(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its mapping removed since the attempt: there is no total to compare, and it was billed."""

    async def scenario(step: Step) -> tuple[object, dict[str, Any]]:
        record = step.record()
        billed = step.bill(record)
        return await step.settle(record), billed

    outcome, billed = run(tmp_path, emu, monkeypatch, scenario, products={})
    assert outcome == Booked(receipt(billed, found=True))


def test_the_search_pages_through_everything_it_lists_and_keeps_only_the_records_own(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server matches a part of the reference: 54 invoices of another reference that contains this
    one sit between its two invoices, one on each page; the second page waits for the bucket."""
    caplog.set_level(logging.ERROR, logger=LOGGER)
    seen = searches(emu, monkeypatch)

    async def scenario(step: Step) -> tuple[object, list[dict[str, Any]], OutboxRow, list[float]]:
        record = step.record()
        oldest = step.bill(record)
        for _ in range(54):
            step.bill(record, invoice_externalReferenceNumber=record.ref + "-2")
        newest = step.bill(record)
        return await step.settle(record), [newest, oldest], record, step.sleeps.waits

    outcome, (newest, oldest), record, waits = run(tmp_path, emu, monkeypatch, scenario)
    assert outcome == Booked(receipt(newest, found=True))
    assert lines(caplog) == [
        (
            LOGGER,
            logging.ERROR,
            f"sale {record.ref} has 2 invoices with its reference ({newest['invoice_numberFull']}, "
            f"{oldest['invoice_numberFull']}): cancel all but one in ready2order",
        )
    ]
    assert [(s["offset"], s["limit"]) for s in seen] == [("0", "50"), ("50", "50")]
    assert waits == [1.0]


def test_a_page_that_comes_back_empty_ends_the_search_whatever_the_count_says(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer(params: dict[str, str]) -> Answer:
        page = [invoice(n, "other") for n in range(SEARCH_PAGE)] if params["offset"] == "0" else []
        return 200, {"invoices": page, "count": 120}

    seen = canned_search(emu, monkeypatch, answer)

    async def scenario(step: Step) -> object:
        return await step.settle(step.record())

    assert run(tmp_path, emu, monkeypatch, scenario) == NotBooked(True)
    assert [s["offset"] for s in seen] == ["0", "50"]


def test_a_search_listing_over_the_limit_asks_a_person(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer(params: dict[str, str]) -> Answer:
        start = int(params["offset"])
        return 200, {"invoices": [invoice(start + n, "other") for n in range(SEARCH_PAGE)], "count": 5000}

    seen = canned_search(emu, monkeypatch, answer)

    async def scenario(step: Step) -> tuple[object, OutboxRow, list[float]]:
        record = step.record()
        return await step.settle(record), record, step.sleeps.waits

    outcome, record, waits = run(tmp_path, emu, monkeypatch, scenario)
    assert outcome == Unclear(
        f"the search for its reference lists over {SEARCH_MAX} invoices; look for reference {record.ref} in "
        f"ready2order, then taptill settle {record.ref} --booked (or --not-booked)"
    )
    assert [s["offset"] for s in seen] == [str(n) for n in range(0, SEARCH_MAX, SEARCH_PAGE)]
    assert waits == [1.0] * (SEARCH_MAX // SEARCH_PAGE - 1), "every page after the first waits its turn"


def test_a_refused_search_holds_the_record_in_words_a_person_can_act_on(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    canned_search(emu, monkeypatch, lambda params: api_error(400, "query too short"))

    async def scenario(step: Step) -> tuple[object, OutboxRow]:
        record = await step.begin(step.record())
        return await step.settle(record), record

    outcome, record = run(tmp_path, emu, monkeypatch, scenario)
    assert outcome == Unclear(
        f"the search for its reference was refused (400: query too short); look for an invoice with "
        f"reference {record.ref} in ready2order, then taptill settle {record.ref} --booked (or --not-booked)"
    )


@pytest.mark.parametrize("fault", ["500", "401", "429"])
def test_a_search_that_fails_sends_nothing_and_says_why(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    if fault == "500":
        emu.faults.inject(FaultKind.ERROR500_BEFORE, route="invoice_search", times=1)
    elif fault == "429":
        emu.faults.inject(FaultKind.RATE_LIMIT_429, route="invoice_search", times=1, retry_after=70)
    client = None
    if fault == "401":
        client = Ready2OrderClient(emu.base_url, Secret("revoked-token"), timeout_s=TIMEOUT_S)

    async def scenario(step: Step) -> tuple[object, str | None, OutboxRow]:
        record = await step.begin(step.record())
        return await step.settle(record), step.health.last_problem, step.again(record)

    outcome, problem, after = run(tmp_path, emu, monkeypatch, scenario, client=client)
    expected: dict[str, tuple[object, str | None]] = {
        "500": (
            Unreachable("cannot search for its invoice: HTTP 500 (not the API's answer)"),
            "cannot search for its invoice: HTTP 500 (not the API's answer)",
        ),
        "401": (Unreachable("unauthorized (401)"), None),
        "429": (
            RateLimited(
                70.0, "HTTP 429 (rate limited): Request was throttled. Expected available in 70 seconds."
            ),
            None,
        ),
    }
    assert (outcome, problem) == expected[fault]
    assert after.maybe_sent and after.state == "pending", "still to be settled"
    assert requests(emu) == {SEARCH: 1} and emu.invoices() == []


def test_a_crash_after_the_search_leaves_the_record_to_be_searched_for_again(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TAPTILL_CRASHPOINT=ready2order.after_search`` dies with the search answered, nothing recorded."""

    class Died(Exception):
        pass

    def kill(pid: int, sig: int) -> None:
        raise Died

    monkeypatch.setattr(crashpoint_module, "_target", "ready2order.after_search")
    monkeypatch.setattr(crashpoint_module, "_remaining", 1)
    monkeypatch.setattr(
        crashpoint_module, "os", type("Os", (), {"kill": staticmethod(kill), "getpid": os.getpid})
    )

    async def scenario(step: Step) -> OutboxRow:
        record = await step.begin(step.record())
        with pytest.raises(Died):
            await step.settle(record)
        return step.again(record)

    after = run(tmp_path, emu, monkeypatch, scenario)
    assert after.maybe_sent, "not marked not sent: a restart searches again"
    assert requests(emu) == {SEARCH: 1}


# --- settling: the window ----------------------------------------------------------------------------------


def _window(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    *,
    now: float,
    server: float | None,
    created: str,
    first: float | None,
) -> tuple[str, str]:
    async def scenario(step: Step) -> tuple[str, str]:
        assert isinstance(step.client, ServerClock)
        step.client.said = server
        record = step.record()
        payload = dict(record.payload)
        if first is not None:
            payload["first_attempt_at"] = first
        return step.destination.window(dataclasses.replace(record, created_at=created, payload=payload))

    return run(tmp_path, emu, monkeypatch, scenario, wall=lambda: now)


@pytest.mark.usefixtures("far_east")
@pytest.mark.parametrize(
    ("now", "server", "created", "first", "expected"),
    [
        (NOON, None, "2026-03-10T11:00:00+00:00", None, ("2026-03-09", "2026-03-11")),
        (NOON, None, "2026-03-05T11:00:00.000+00:00", NOON, ("2026-03-04", "2026-03-11")),
        (NOON, None, "2026-03-10T11:00:00+00:00", day("2026-03-07"), ("2026-03-06", "2026-03-11")),
        (day("2026-03-06"), NOON, "2026-03-10T11:00:00+00:00", NOON, ("2026-03-05", "2026-03-11")),
        (NOON, day("2026-03-08"), "2026-03-10T11:00:00+00:00", None, ("2026-03-07", "2026-03-11")),
        (NOON, day("2026-03-12"), "2026-03-10T11:00:00+00:00", None, ("2026-03-09", "2026-03-13")),
        (NOON, None, "not a time", None, ("2026-03-09", "2026-03-11")),
    ],
    ids=[
        "one-day",
        "sale-days-before",
        "first-attempt-by-a-server-behind",
        "clock-stepped-back-behind-its-sale",
        "server-behind",
        "server-ahead",
        "sale-time-unreadable",
    ],
)
def test_the_window_runs_in_utc_days_from_before_the_earliest_to_after_the_latest(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    now: float,
    server: float | None,
    created: str,
    first: float | None,
    expected: tuple[str, str],
) -> None:
    """The day before the earliest of now, the server's now, the first attempt and the sale, to the day after
    the later of now and the server's now; in UTC dates though the terminal's zone is 14 hours ahead."""
    got = _window(tmp_path, emu, monkeypatch, now=now, server=server, created=created, first=first)
    assert got == expected


def test_a_window_the_servers_date_widens_is_searched_again(
    tmp_path: Path,
    emu: Ready2OrderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server's clock is known only from its first answer (its Date header): four days ahead, the
    window reaches further, so the search runs again over it, after waiting for the bucket."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    ahead = email.utils.format_datetime(datetime(2026, 3, 14, 12, 0, tzinfo=UTC), usegmt=True)
    empty = json.dumps({"invoices": [], "count": 0}).encode()
    answer = http_response(200, empty, Date=ahead, Connection="close")

    with RawHttpServer([answer]) as server:
        client = Ready2OrderClient(server.base_url, Secret("token"), timeout_s=TIMEOUT_S)

        async def scenario(step: Step) -> tuple[object, OutboxRow, list[float]]:
            record = dataclasses.replace(step.record(), created_at="2026-03-10T11:00:00+00:00")
            return await step.settle(record), record, step.sleeps.waits

        outcome, record, waits = run(tmp_path, emu, monkeypatch, scenario, client=client, wall=lambda: NOON)
        sent = [dict(parse_qsl(urlsplit(r.split(b" ")[1].decode()).query)) for r in server.requests]

    assert outcome == NotBooked(True)
    assert [(s["dateFrom"], s["dateTo"]) for s in sent] == [
        ("2026-03-09", "2026-03-11"),
        ("2026-03-09", "2026-03-15"),
    ]
    assert lines(caplog) == [
        (
            LOGGER,
            logging.INFO,
            f"sale {record.ref}: the server's clock widens the search to 2026-03-09..2026-03-15",
        ),
        (LOGGER, logging.INFO, f"sale {record.ref}: no invoice with its reference; sending it again"),
    ]
    assert waits == [1.0]
