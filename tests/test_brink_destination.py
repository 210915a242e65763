"""BrinkPaymentDestination in-process, step by step, against the PAR Brink emulator on loopback and a real
journal: what each look and each ApplyPayment answer becomes, word for word where a person reads it (the
held reason, the operator's log line), and when a look waits for a request that may still land."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from terminal.brink.client import BrinkClient
from terminal.brink.destination import BrinkPaymentDestination
from terminal.brink.health import PosHealth
from terminal.brink.payment_outbox import DESTINATION
from terminal.emulator.brink.parties import Payment
from terminal.emulator.brink.server import DEMO_ACCESS_TOKEN, DEMO_LOCATION_TOKEN, BrinkEmulator
from terminal.outbox.landing import SLACK_S
from terminal.outbox.outcome import Booked, Done, Each, NotBooked, Unclear, Unreachable, Wait
from terminal.outbox.table import OutboxRow, OutboxTable
from terminal.service.secret import Secret
from tests.brink_samples import result
from tests.raw_http import RawHttpServer, http_response
from tests.test_brink_payments import CARD, DAY, TENDER, TIMEOUT_S, PayRig

T = TypeVar("T")
LOGGER = "terminal.brink.destination"
WAITING = "table payments wait until the tokens are fixed"
ORDER = 70101  # table 1's one order, number 2101, 11.11 due


@pytest.fixture
def emu() -> Iterator[BrinkEmulator]:
    with BrinkEmulator(business_date=DAY) as emulator:
        yield emulator


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Step:
    """Table 1's bill paid through ``rig``'s journal, and a destination of its own on ``client`` with the
    test's clock: each call is one step of the loop, taken by hand."""

    def __init__(self, rig: PayRig, client: BrinkClient | None = None) -> None:
        self.rig = rig
        self.clock = Clock()
        self.health = PosHealth()
        self.client = client or rig.runtime.client
        self.destination = BrinkPaymentDestination(
            OutboxTable(rig.journal, DESTINATION), self.client, self.health, monotonic=self.clock
        )

    async def record(self, table: int = 1) -> OutboxRow:
        await self.rig.pay(table)
        return self.rig.records()[0]


def run(tmp_path: Path, emu: BrinkEmulator, scenario: Callable[[PayRig], Awaitable[T]]) -> T:
    async def go() -> T:
        rig = PayRig(tmp_path, emu)
        try:
            return await scenario(rig)
        finally:
            await rig.aclose()

    return asyncio.run(go())


def held(outcome: object) -> str:
    """The reason of a record an attempt holds for staff."""
    assert isinstance(outcome, Each), outcome
    ((_, unclear),) = outcome.parts
    assert isinstance(unclear, Unclear), unclear
    return unclear.detail


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    return [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


# --- looking before sending --------------------------------------------------------------------------------


def test_a_maybe_sent_record_waits_until_its_request_cannot_land_then_looks(
    tmp_path: Path, emu: BrinkEmulator
) -> None:
    """A request may land until the client's deadline and a second after it: looking earlier could miss
    it and pay the order twice; at that instant exactly the look happens."""

    async def scenario(rig: PayRig) -> list[object]:
        step = Step(rig)
        record = dataclasses.replace(await step.record(), maybe_sent=True)
        gets = [0]
        out: list[object] = []
        for at in (0.0, TIMEOUT_S + SLACK_S - 0.25, TIMEOUT_S + SLACK_S):
            step.clock.now = 1000.0 + at
            before = len(emu.requests())
            out.append(await step.destination.settle(record))
            gets.append(len(emu.requests()) - before)
        out.append(gets)
        return out

    first, early, on_time, gets = run(tmp_path, emu, scenario)
    assert first == Wait(
        TIMEOUT_S + SLACK_S, "waiting until its last ApplyPayment can no longer land, then looking"
    )
    assert isinstance(early, Wait) and early.seconds == pytest.approx(0.25)
    assert on_time == NotBooked(True), "the order open and owing it: sent"
    assert gets == [0, 0, 0, 1], "no GetParty while waiting, one at the instant it can no longer land"


def test_a_record_never_sent_is_looked_for_at_once(tmp_path: Path, emu: BrinkEmulator) -> None:
    async def scenario(rig: PayRig) -> object:
        step = Step(rig)
        return await step.destination.settle(await step.record())

    assert run(tmp_path, emu, scenario) == NotBooked(True)


def test_a_payment_found_on_the_order_is_booked_and_says_where(
    tmp_path: Path, emu: BrinkEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Found on a first look (another process applied it): no "(found)"; after an attempt of ours: found."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario(rig: PayRig) -> tuple[object, object, OutboxRow]:
        step = Step(rig)
        record = await step.record()
        assert await step.destination.attempt([record]) == Done("applied")
        first = await step.destination.settle(record)
        again = await step.destination.settle(dataclasses.replace(record, attempts=1))
        return first, again, record

    first, again, record = run(tmp_path, emu, scenario)
    described = f"payment id 1, 11.11, tender {TENDER}"
    assert first == Booked(f"on the order: {described}")
    assert again == Booked(f"on the order: {described} (found)")
    assert lines(caplog) == [
        (LOGGER, logging.INFO, f"table payment {record.ref} applied to order 2101"),
        (LOGGER, logging.INFO, f"table payment {record.ref} is on order 2101: {described}"),
        (LOGGER, logging.INFO, f"table payment {record.ref} is on order 2101: {described}"),
    ]


def test_payments_that_are_not_another_terminals_do_not_make_the_bill_theirs(
    tmp_path: Path, emu: BrinkEmulator
) -> None:
    """On a closed order, a payment staff deleted (even one carrying another terminal's key) and one
    taken at the POS (no key) are not "paid by another terminal": it was paid at the POS."""
    deleted_other = Payment(7, "5.00", TENDER, DAY, deleted=True, additional={"taptill_key": "other-bar2-1"})
    cash = Payment(8, "11.11", 1, DAY)

    async def scenario(rig: PayRig) -> object:
        step = Step(rig)
        record = await step.record()
        emu.location.add_payment(ORDER, deleted_other)
        emu.location.add_payment(ORDER, cash)
        emu.location.set_order(ORDER, closed_time="2026-01-01T12:00:00Z")
        return await step.destination.settle(record)

    outcome = run(tmp_path, emu, scenario)
    assert isinstance(outcome, Unclear), outcome
    assert outcome.detail.startswith("order 2101 was closed without it: the bill was paid at the POS: "), (
        outcome
    )


def test_an_open_order_owing_nothing_says_it_owes_nothing(tmp_path: Path, emu: BrinkEmulator) -> None:
    async def scenario(rig: PayRig) -> object:
        step = Step(rig)
        record = await step.record()
        emu.location.add_payment(ORDER, Payment(8, "11.11", 1, DAY))  # paid in cash; staff left it open
        return await step.destination.settle(record)

    outcome = run(tmp_path, emu, scenario)
    assert isinstance(outcome, Unclear), outcome
    assert outcome.detail.startswith(
        "order 2101 owes 0.00, less than the wallet paid (it was paid at the POS in part meanwhile; take "
        "what it still owes at the POS): the POS no longer owes it, so refund 11.11 to card "
    ), outcome


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (1, "GetParty: POS unavailable (1: Unknown Error)"),
        (3, "GetParty: POS unavailable (3: Server Unavailable)"),
        (2, "GetParty refused as invalid (2): Invalid Request"),
    ],
)
def test_a_look_the_pos_cannot_answer_sends_nothing_and_says_why(
    tmp_path: Path, emu: BrinkEmulator, code: int, said: str
) -> None:
    async def scenario(rig: PayRig) -> tuple[object, str | None]:
        step = Step(rig)
        record = await step.record()
        emu.force("GetParty", code)
        outcome = await step.destination.settle(record)
        return outcome, step.health.last_problem

    assert run(tmp_path, emu, scenario) == (Unreachable(said), said)
    assert not [r for r in emu.requests() if r["route"] == "apply_payment"]


def test_a_party_closed_before_anything_was_sent_is_refunded(tmp_path: Path, emu: BrinkEmulator) -> None:
    async def scenario(rig: PayRig) -> tuple[object, OutboxRow]:
        step = Step(rig)
        record = await step.record()
        emu.location.close_party(DAY, 1)
        return await step.destination.settle(record), record

    outcome, record = run(tmp_path, emu, scenario)
    assert outcome == Unclear(
        f"table 1 has no open party on {DAY.isoformat()} any more (closed at the POS), so the payment cannot "
        f"be looked for or applied: the POS no longer owes it, so refund 11.11 to card {CARD}; then taptill "
        f"settle {record.ref} --refunded"
    )


# --- sending ----------------------------------------------------------------------------------------------


def test_a_record_that_cannot_be_read_is_held_without_sending(tmp_path: Path, emu: BrinkEmulator) -> None:
    async def scenario(rig: PayRig) -> object:
        step = Step(rig)
        record = dataclasses.replace(await step.record(), payload={})
        return await step.destination.attempt([record])

    assert held(run(tmp_path, emu, scenario)) == "the record cannot be read"
    assert not [r for r in emu.requests() if r["route"] == "apply_payment"]


def test_a_record_that_ended_while_it_was_looked_for_is_not_sent(tmp_path: Path, emu: BrinkEmulator) -> None:
    """Its sale turned out booked by another terminal, which applies the payment: sending now would race
    that terminal's own look and could pay the order twice."""

    async def scenario(rig: PayRig) -> object:
        step = Step(rig)
        record = await step.record()
        rig.journal.execute_all([("UPDATE outbox SET state = 'done' WHERE id = ?", (record.id,))])
        return await step.destination.attempt([record])

    assert run(tmp_path, emu, scenario) == Done("ended while it was looked for; not sent")
    assert not [r for r in emu.requests() if r["route"] == "apply_payment"]
    assert emu.applied_payments() == []


@pytest.mark.parametrize(("code", "hint"), [(106, f"; check [table] tender_id {TENDER}"), (101, "")])
def test_a_refused_payment_names_the_tender_only_when_the_tender_was_refused(
    tmp_path: Path, emu: BrinkEmulator, code: int, hint: str
) -> None:
    emu.force("ApplyPayment", code)

    async def scenario(rig: PayRig) -> object:
        step = Step(rig)
        return await step.destination.attempt([await step.record()])

    outcome = run(tmp_path, emu, scenario)
    message = {106: "Tender error", 101: "Payment could not be processed"}[code]  # the emulator's words
    assert held(outcome).startswith(f"PAR Brink refused the payment ({code}: {message}){hint}: book 11.11")


def test_no_answer_before_the_request_left_is_sent_again_after_a_pause(
    tmp_path: Path, emu: BrinkEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused connection: nothing can have been applied, so no look is needed before the next send."""

    async def scenario(rig: PayRig) -> tuple[object, OutboxRow, str]:
        step = Step(rig)
        record = await step.record()
        with RawHttpServer([b""]) as gone:
            url = gone.base_url
        client = BrinkClient(url, Secret(DEMO_ACCESS_TOKEN), Secret(DEMO_LOCATION_TOKEN), timeout_s=TIMEOUT_S)
        try:
            return await Step(rig, client).destination.attempt([record]), record, url
        finally:
            await client.aclose()

    caplog.set_level(logging.INFO, logger=LOGGER)
    outcome, record, _ = run(tmp_path, emu, scenario)
    assert isinstance(outcome, Unreachable), outcome
    ((name, level, line),) = lines(caplog)
    assert (name, level) == (LOGGER, logging.WARNING)
    assert line == (
        f"table payment {record.ref} on table 1 order 2101 (11.11): {outcome.detail}; nothing applied, sent "
        "again after a pause"
    )


# --- access refused ---------------------------------------------------------------------------------------


def test_a_wrong_token_on_apply_payment_stops_the_payments_in_the_servers_words(
    tmp_path: Path, emu: BrinkEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario(rig: PayRig) -> tuple[object, str | None]:
        step = Step(rig)
        record = await step.record()
        step.client.use_tokens(Secret("not-the-token"), Secret(DEMO_LOCATION_TOKEN))
        outcome = await step.destination.attempt([record])
        return outcome, step.health.refused.reason if step.health.refused else None

    outcome, refused = run(tmp_path, emu, scenario)
    assert outcome == Unreachable("access denied (ResultCode 4)")
    assert refused is not None and refused.startswith("PAR Brink denies access (ResultCode 4: "), refused
    assert lines(caplog) == [(LOGGER, logging.ERROR, f"{refused}: {WAITING}")]
    assert emu.applied_payments() == []


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("operation", ["GetParty", "ApplyPayment"])
def test_an_http_refusal_names_the_status(
    tmp_path: Path, emu: BrinkEmulator, caplog: pytest.LogCaptureFixture, status: int, operation: str
) -> None:
    """A gateway in front of PAR Brink refuses with HTTP 401/403 rather than a ResultCode: the look and
    the send alike stop the payments, naming the status (once: not "HTTP 401: HTTP 401")."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario(rig: PayRig) -> tuple[object, str | None]:
        step = Step(rig)
        record = await step.record()
        with RawHttpServer([http_response(status, b"", "text/plain")]) as gateway:
            client = BrinkClient(
                gateway.base_url, Secret(DEMO_ACCESS_TOKEN), Secret(DEMO_LOCATION_TOKEN), timeout_s=TIMEOUT_S
            )
            try:
                mine = Step(rig, client)
                if operation == "GetParty":
                    outcome: object = await mine.destination.settle(record)
                else:
                    outcome = await mine.destination.attempt([record])
                return outcome, mine.health.refused.reason if mine.health.refused else None
            finally:
                await client.aclose()

    outcome, refused = run(tmp_path, emu, scenario)
    assert outcome == Unreachable(f"access denied (HTTP {status})")
    assert refused == f"PAR Brink denies access (HTTP {status})"
    assert lines(caplog) == [(LOGGER, logging.ERROR, f"{refused}: {WAITING}")]


def test_a_refusal_without_words_leaves_no_empty_colon(tmp_path: Path, emu: BrinkEmulator) -> None:
    """ResultCode 4 with an empty Message: "(ResultCode 4)", not "(ResultCode 4: )"."""

    async def scenario(rig: PayRig) -> tuple[object, str | None]:
        step = Step(rig)
        record = await step.record()
        answer = http_response(200, result("ApplyPayment", 4), "text/xml")
        with RawHttpServer([answer]) as pos:
            client = BrinkClient(
                pos.base_url, Secret(DEMO_ACCESS_TOKEN), Secret(DEMO_LOCATION_TOKEN), timeout_s=TIMEOUT_S
            )
            try:
                mine = Step(rig, client)
                outcome = await mine.destination.attempt([record])
                return outcome, mine.health.refused.reason if mine.health.refused else None
            finally:
                await client.aclose()

    outcome, refused = run(tmp_path, emu, scenario)
    assert outcome == Unreachable("access denied (ResultCode 4)")
    assert refused == "PAR Brink denies access (ResultCode 4)"
