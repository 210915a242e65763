"""ApplyPayment through the one outbox, in-process: a real journal (the table sale, its table_bills row and
its payment records committed with its done), the real runtime, loop and client against the PAR Brink
emulator on loopback. Each order's payment lands once (the emulator's ledger) whatever the answers; the
order is looked at before every send; what cannot be applied is held for staff with what to refund."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from terminal.brink.bill import Bill, amount_due, payment_key
from terminal.brink.business_date import business_date
from terminal.brink.config import BrinkConfig
from terminal.brink.outcomes import PartyFound
from terminal.brink.payment_outbox import DESTINATION, payment_counts
from terminal.brink.runtime import BrinkPaymentRuntime
from terminal.config import load_config
from terminal.emulator.brink.parties import Payment
from terminal.emulator.brink.server import DEMO_ACCESS_TOKEN, DEMO_LOCATION_TOKEN, BrinkEmulator
from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal, SaleRecord, table_bill_statement
from terminal.ops.doctor import diagnose
from terminal.outbox.table import REASON_MAX, OutboxRow, give_up_held, rows, settle_held
from terminal.service.secret import Secret
from tests.table_lab import write_table_config
from tests.terminal_lab import taptill

# Today's business date (the venue's day starts at 06:00): `taptill status` lists the tables paid on the
# current business day, so parties on a fixed date would drop out of it once that day is over.
DAY = business_date(dt.datetime.now(), dt.time(6, 0))
TENDER = 7
CARD = "04DE4A7AB1E000"
TIMEOUT_S = 1.0
APPLY = f"apply_payment = true\ntender_id = {TENDER}"


@pytest.fixture
def emu() -> Iterator[BrinkEmulator]:
    with BrinkEmulator(business_date=DAY) as emulator:
        yield emulator


class PayRig:
    """One table terminal's journal whose booked table sales the runtime tells ``emulator`` about."""

    def __init__(
        self,
        directory: Path,
        emulator: BrinkEmulator,
        *,
        access: str = DEMO_ACCESS_TOKEN,
        journal_path: Path | None = None,
        terminal_id: str = "bar1",
        day: dt.date = DAY,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.emulator = emulator
        self.day = day  # the business date the emulator's parties are on
        self.access_file = directory / "brink.access.token"
        self.location_file = directory / "brink.location.token"
        for path, value in ((self.access_file, access), (self.location_file, DEMO_LOCATION_TOKEN)):
            path.write_text(value + "\n")
            path.chmod(0o600)
        self.cfg = BrinkConfig(emulator.url, self.access_file, self.location_file, timeout_s=TIMEOUT_S)
        self.journal = Journal.open(journal_path or directory / "journal.sqlite3")
        self.runtime = BrinkPaymentRuntime(
            self.cfg,
            self.journal,
            Secret(access),
            Secret(DEMO_LOCATION_TOKEN),
            tender_id=TENDER,
            terminal_id=terminal_id,
        )

    async def bill(self, table: int) -> Bill:
        outcome = await self.runtime.client.get_party(self.day, table)
        assert isinstance(outcome, PartyFound), outcome
        return amount_due(outcome.party)

    async def pay(self, table: int, *, approved: bool = True) -> SaleRecord:
        """The wallet booked the table's bill (as table mode journals it): sale and bill row, then done
        with the payment records; ``approved`` False: the guest was never told (a sale to refund)."""
        bill = await self.bill(table)
        row = table_bill_statement(
            key=bill.key(),
            table_id=table,
            party_id=bill.party_id,
            business_date=self.day.isoformat(),
            orders=[(o.order_id, o.number, o.due_cents) for o in bill.orders],
            amount_cents=bill.total_cents,
        )
        sale = self.journal.record_sale(
            token_id=CARD,
            products=["eur10"],
            amount_cents=-bill.total_cents,
            description="Restaurant",
            tag=None,
            offline=False,
            key=bill.key(),
            also=[row],
            approved=approved,
        )
        self.journal.mark_done(sale.id, 5000, self.runtime.records_for(sale))
        return sale

    def records(self) -> list[OutboxRow]:
        return list(rows(self.journal, DESTINATION))

    def waiting(self) -> int:
        return sum(1 for r in self.records() if r.state == "pending" and not r.hold)

    async def drain(self, timeout_s: float = 20.0) -> None:
        """Run the loop until no record waits (held ones do not count), at most ``timeout_s``."""
        stop = asyncio.Event()
        task = asyncio.ensure_future(self.runtime.loop.run(stop))
        try:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while self.waiting() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
        assert self.waiting() == 0, [(r.ref, r.state, r.reason) for r in self.records()]

    async def aclose(self) -> None:
        await self.runtime.client.aclose()


def run(tmp_path: Path, emu: BrinkEmulator, scenario: Callable[[PayRig], Awaitable[None]]) -> PayRig:
    async def go() -> PayRig:
        rig = PayRig(tmp_path, emu)
        try:
            await scenario(rig)
        finally:
            await rig.aclose()
        return rig

    return asyncio.run(go())


def ledger(emu: BrinkEmulator) -> list[tuple[int, str, str | None]]:
    """(order id, amount, taptill_key) of every payment the emulator applied, in order."""
    return [(p["order_id"], p["amount"], p["reference"].get("taptill_key")) for p in emu.applied_payments()]


def sent(emu: BrinkEmulator, operation: str) -> int:
    """Requests of ``operation`` that reached the emulator (faulted ones too: by their SOAPAction)."""
    route = {"GetParty": "get_party", "ApplyPayment": "apply_payment"}[operation]
    return sum(1 for r in emu.requests() if r["route"] == route)


def test_each_order_of_a_paid_bill_gets_its_payment_once_with_the_record_key(
    tmp_path: Path, emu: BrinkEmulator
) -> None:
    sales: list[SaleRecord] = []

    async def scenario(rig: PayRig) -> None:
        sales.append(await rig.pay(3))  # three orders: 17.70, 11.05, 12.04
        await rig.drain()
        await rig.drain()  # nothing left to send

    rig = run(tmp_path, emu, scenario)
    key = sales[0].idempotency_key
    assert ledger(emu) == [
        (70301, "17.70", payment_key(key, "bar1", 70301)),
        (70302, "11.05", payment_key(key, "bar1", 70302)),
        (70303, "12.04", payment_key(key, "bar1", 70303)),
    ]
    assert {p["tender_id"] for p in emu.applied_payments()} == {TENDER}
    assert all(p["closed_order"] for p in emu.applied_payments()), "each order paid in full closes"
    assert [(r.state, r.reason, r.attempts) for r in rig.records()] == [("done", "applied", 1)] * 3
    assert sent(emu, "GetParty") == 1 + 3, "the bill's read, then one look before each send"
    counts = payment_counts(rig.journal)
    assert (counts.applied, counts.waiting, counts.held) == (3, 0, 0)


def test_the_records_are_committed_with_the_sale_and_carry_what_staff_need(
    tmp_path: Path, emu: BrinkEmulator
) -> None:
    async def scenario(rig: PayRig) -> None:
        sale = await rig.pay(1)
        (record,) = rig.records()
        assert record.sale_id == sale.id and record.ref == payment_key(sale.idempotency_key, "bar1", 70101)
        assert record.payload == {
            "sale_key": sale.idempotency_key,
            "order_id": 70101,
            "number": 2101,
            "amount_cents": 1111,
            "tender_id": TENDER,
            "table_id": 1,
            "party_id": 60001,
            "business_date": DAY.isoformat(),
            "card": CARD,
            "terminal_id": "bar1",
        }
        # a sale that paid no table bill (another mode's) has no payment record
        other = rig.journal.record_sale(
            token_id=CARD, products=["eur1"], amount_cents=-100, description="Bar", tag=None, offline=False
        )
        rig.journal.mark_done(other.id, 4900, rig.runtime.records_for(other))
        assert len(rig.records()) == 1

    run(tmp_path, emu, scenario)
    assert ledger(emu) == []


def test_a_104_after_applying_is_found_on_the_order_and_not_sent_again(
    tmp_path: Path, emu: BrinkEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.force("ApplyPayment", 104, after_applying=True)
    caplog.set_level(logging.WARNING, logger="terminal.brink.destination")

    async def scenario(rig: PayRig) -> None:
        await rig.pay(2)
        await rig.drain()

    rig = run(tmp_path, emu, scenario)
    (record,) = rig.records()
    assert [(o, a) for o, a, _ in ledger(emu)] == [(70201, "23.89")], "applied once"
    assert sent(emu, "ApplyPayment") == 1
    assert record.state == "done" and "(found)" in record.reason and record.attempts == 1
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "on table 2 order 2201 (23.89)" in line and "104" in line, line
    assert "may have been applied: in 2 s the order is looked at" in line, line


def test_a_104_before_applying_finds_nothing_and_is_sent_again_once(
    tmp_path: Path, emu: BrinkEmulator
) -> None:
    emu.force("ApplyPayment", 104)

    async def scenario(rig: PayRig) -> None:
        await rig.pay(2)
        await rig.drain()

    rig = run(tmp_path, emu, scenario)
    (record,) = rig.records()
    assert [(o, a) for o, a, _ in ledger(emu)] == [(70201, "23.89")]
    assert sent(emu, "ApplyPayment") == 2
    assert record.state == "done" and record.attempts == 2 and record.reason == "applied"


@pytest.mark.parametrize("code", [102, 103])
def test_an_order_gone_or_closed_meanwhile_is_held_with_what_to_refund(
    tmp_path: Path, emu: BrinkEmulator, code: int
) -> None:
    emu.force("ApplyPayment", code)

    async def scenario(rig: PayRig) -> None:
        await rig.pay(1)
        await rig.drain()

    rig = run(tmp_path, emu, scenario)
    (record,) = rig.records()
    assert ledger(emu) == []
    assert record.state == "pending" and record.hold
    assert f"({code})" in record.reason
    # the POS no longer owes it (the order gone or closed): refunding is the only right advice
    assert f"the POS no longer owes it, so refund 11.11 to card {CARD}" in record.reason
    assert f"taptill settle {record.ref} --refunded" in record.reason and "book" not in record.reason
    assert payment_counts(rig.journal).held == 1


@pytest.mark.parametrize(
    "change, said",
    [
        ("closed", "was closed without it: the bill was paid at the POS"),
        ("party_closed", "has no open party"),
        ("paid_in_part", "owes 1.11, less than the wallet paid"),
        ("deleted", "was deleted at the POS"),
    ],
)
def test_a_bill_changed_at_the_pos_before_the_send_is_held_without_sending(
    tmp_path: Path, emu: BrinkEmulator, change: str, said: str
) -> None:
    async def scenario(rig: PayRig) -> None:
        sale = await rig.pay(1)
        loc = emu.location
        if change == "closed":
            loc.set_order(70101, closed_time="2026-11-30T21:00:00Z")
        elif change == "party_closed":
            loc.close_party(DAY, 1)
        elif change == "paid_in_part":
            loc.add_payment(70101, Payment(9, "10.00", 1, DAY))
        else:
            ref = payment_key(sale.idempotency_key, "bar1", 70101)
            loc.add_payment(
                70101, Payment(9, "11.11", TENDER, DAY, deleted=True, additional={"taptill_key": ref})
            )
        await rig.drain()

    rig = run(tmp_path, emu, scenario)
    (record,) = rig.records()
    assert sent(emu, "ApplyPayment") == 0 and ledger(emu) == []
    assert record.hold and said in record.reason, record.reason
    assert "refund 11.11 to card" in record.reason
    if change == "deleted":  # whether the POS still owes it is staff's to say: the line says it is unknown
        assert "unknown whether table 1 order 2101 still owes 11.11" in record.reason, record.reason
    else:  # the POS no longer owes it: only a refund is right
        assert "the POS no longer owes it" in record.reason and "book" not in record.reason, record.reason


def test_a_held_payment_is_settled_by_hand_as_booked(tmp_path: Path, emu: BrinkEmulator) -> None:
    emu.force("ApplyPayment", 103)

    async def scenario(rig: PayRig) -> None:
        await rig.pay(1)
        await rig.drain()
        (record,) = rig.records()
        assert settle_held(rig.journal, record.ref, booked=True)
        (record,) = rig.records()
        assert record.state == "done" and record.reason == "settled by hand: applied"

    run(tmp_path, emu, scenario)


@pytest.mark.parametrize(
    "kind, fields, applied",
    [
        # the answer comes after the deadline: the payment lands late; the look waits for it, finds it
        (FaultKind.LATENCY, {"ms": int(TIMEOUT_S * 1000) + 400}, True),
        (FaultKind.HANG, {"cap_s": 3}, False),
        (FaultKind.DROP_AFTER, {}, True),
        (FaultKind.DROP_BEFORE, {}, False),
        (FaultKind.ERROR500_AFTER, {}, True),
        (FaultKind.DRIP_AFTER, {"ms": 60, "cap_s": 5}, True),
    ],
)
def test_no_answer_to_apply_payment_is_settled_by_looking_at_the_order(
    tmp_path: Path,
    emu: BrinkEmulator,
    kind: FaultKind,
    fields: dict[str, Any],
    applied: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emu.faults.inject(kind, route="apply_payment", times=1, **fields)
    caplog.set_level(logging.WARNING, logger="terminal.brink.destination")

    async def scenario(rig: PayRig) -> None:
        await rig.pay(2)
        await rig.drain()

    rig = run(tmp_path, emu, scenario)
    (record,) = rig.records()
    assert [(o, a) for o, a, _ in ledger(emu)] == [(70201, "23.89")], "applied exactly once"
    assert sent(emu, "ApplyPayment") == (1 if applied else 2)
    assert record.state == "done" and ("(found)" in record.reason) == applied
    # staff reading the log see which table and order, and what the terminal does next
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"table payment {record.ref} on table 2 order 2201 (23.89)" in line, line
    assert "the order is looked at" in line or "sent again after a pause" in line, line


def test_a_bill_another_terminal_paid_too_is_held_for_a_refund_not_taken_for_ours(
    tmp_path: Path, emu: BrinkEmulator
) -> None:
    """A non-deduplicating wallet debited both terminals' taps on one bill (the same sale key): each
    terminal's references carry its own terminal id, so ours does not take the other's POS payments
    for its own; it finds the orders closed by them and holds its own for a refund."""

    async def scenario(rig: PayRig) -> None:
        other = PayRig(tmp_path / "other", emu, terminal_id="bar2")
        try:
            theirs, ours = await other.pay(3), await rig.pay(3)
            assert theirs.idempotency_key == ours.idempotency_key
            await other.drain()
            before = sent(emu, "ApplyPayment")
            await rig.drain()
            assert sent(emu, "ApplyPayment") == before, "ours looked, found the orders paid, sent none"
        finally:
            await other.aclose()

    rig = run(tmp_path, emu, scenario)
    assert {k for _, _, k in ledger(emu)} == {
        payment_key(rig.records()[0].payload["sale_key"], "bar2", o) for o in (70301, 70302, 70303)
    }, "the other terminal's payments, applied once each"
    records = rig.records()
    assert len(records) == 3 and all(r.hold and r.state == "pending" for r in records)
    for r in records:
        assert "the bill was paid by another terminal" in r.reason and "-bar2-" in r.reason, r.reason
        assert (
            f"the POS no longer owes it, so refund {r.payload['amount_cents'] / 100:.2f} to card {CARD}"
            in (r.reason)
        )
        assert "book" not in r.reason
    assert payment_counts(rig.journal).held == 3


@pytest.mark.parametrize("code", [101, 106])
def test_a_payment_the_pos_refused_but_still_owes_may_be_booked_by_hand_or_refunded(
    tmp_path: Path, emu: BrinkEmulator, code: int
) -> None:
    emu.force("ApplyPayment", code)

    async def scenario(rig: PayRig) -> None:
        await rig.pay(1)
        await rig.drain()

    rig = run(tmp_path, emu, scenario)
    (record,) = rig.records()
    assert record.hold and f"({code}:" in record.reason, record.reason
    assert "book 11.11 (tender 7) on table 1 order 2101 at the POS by hand, or refund 11.11" in record.reason
    assert f"taptill settle {record.ref} --booked (or --refunded)" in record.reason


def test_a_sale_booked_elsewhere_ends_its_payment_records_unsent(tmp_path: Path, emu: BrinkEmulator) -> None:
    async def scenario(rig: PayRig) -> None:
        sale = await rig.pay(3)
        rig.journal.mark_booked_elsewhere(sale.id, "the wallet had booked this key already (202)")
        await rig.drain()

    rig = run(tmp_path, emu, scenario)
    assert sent(emu, "ApplyPayment") == 0
    assert all(r.state == "done" and r.reason.startswith("booked elsewhere") for r in rig.records())


def test_a_wrong_token_stops_the_payments_until_the_file_holds_the_right_one(
    tmp_path: Path, emu: BrinkEmulator
) -> None:
    async def scenario(rig: PayRig) -> None:
        await rig.pay(1)
        rig.access_file.write_text("not-the-token\n")  # the token was changed at PAR meanwhile
        rig.runtime.client.use_tokens(Secret("not-the-token"), Secret(DEMO_LOCATION_TOKEN))
        rig.runtime.loop.probe_interval_s = 0.1
        health = rig.runtime.health
        stop = asyncio.Event()
        task = asyncio.ensure_future(rig.runtime.loop.run(stop))
        try:
            for _ in range(250):
                if health.refused is not None:
                    break
                await asyncio.sleep(0.02)
            assert health.refused is not None and "ResultCode 4" in health.refused.reason
            cached = rig.journal.cache_get("brink_status")
            assert cached is not None and isinstance(cached[0], dict)
            assert cached[0]["refused"]["reason"] == health.refused.reason
            await asyncio.sleep(0.3)  # probes meanwhile, still refused
            assert rig.waiting() == 1 and ledger(emu) == [] and health.refused is not None
            rig.access_file.write_text(DEMO_ACCESS_TOKEN + "\n")  # staff put the right one in the file
            for _ in range(250):
                if not rig.waiting():
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task

    rig = run(tmp_path, emu, scenario)
    assert [(o, a) for o, a, _ in ledger(emu)] == [(70101, "11.11")]
    assert rig.records()[0].state == "done" and rig.runtime.health.running


def test_staff_see_a_held_payment_in_status_and_queue_and_give_it_up_as_refunded(
    tmp_path: Path, emu: BrinkEmulator
) -> None:
    """``taptill status``/``queue`` list the held payment with what to do; ``settle --refunded`` gives it
    up; refunding the sale says which payments stand at the POS."""
    with WalletEmulator.demo("doc") as wallet:
        config = write_table_config(tmp_path / "t", wallet, emu, tables=f"table_id = 1\n{APPLY}")
    journal_path = load_config(config).journal_path
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    emu.force("ApplyPayment", 103)
    emu.force("ApplyPayment", 0)  # table 3's first order is applied; the rest as usual

    async def scenario(rig: PayRig) -> None:
        await rig.pay(1)
        await rig.pay(3, approved=False)  # charged, the terminal stopped before telling the guest
        await rig.drain()

    async def go() -> PayRig:
        rig = PayRig(tmp_path / "t", emu, journal_path=journal_path)
        try:
            await scenario(rig)
        finally:
            await rig.aclose()
        return rig

    rig = asyncio.run(go())
    (held,) = [r for r in rig.records() if r.hold]
    status = json.loads(taptill("status", "--json", "--config", str(config)).stdout)["brink"]
    assert status["applied"] == 3 and [h["ref"] for h in status["held"]] == [held.ref]
    assert "refund 11.11 to card" in status["held"][0]["reason"]
    text = taptill("status", "--config", str(config)).stdout
    assert "3 payment(s) applied, 0 waiting, 1 held for staff" in text, text
    assert f"HELD {held.ref}: order 2101 was closed meanwhile (103)" in text, text
    assert "paid, but a POS payment is HELD" in text, text
    assert (
        "paid (not shown paid here: the terminal stopped or had no answer in time), applied at the POS"
        in text
    ), text
    assert "to refund:       0 (" in text, text
    queue = taptill("queue", "--config", str(config)).stdout
    assert "HELD     " in queue and f"brink  ref {held.ref}" in queue, queue

    out = taptill("settle", held.ref, "--refunded", "--config", str(config)).stdout
    assert "given up" in out and "(refunded)" in out
    text = taptill("status", "--config", str(config)).stdout
    assert "0 held for staff, 1 given up" in text, text
    # the other table's sale refunded: its applied payments stand at the POS until deleted there
    key3 = next(r.payload["sale_key"] for r in rig.records() if r.payload["table_id"] == 3)
    out = taptill("settle", key3, "--refunded", "--config", str(config)).stdout
    assert "PAR Brink: 17.70 on table 3 order 2301 was applied: delete that payment at the POS" in out, out


def test_doctor_checks_the_brink_tokens_and_that_the_pos_answers(tmp_path: Path, emu: BrinkEmulator) -> None:
    with WalletEmulator.demo("doc") as wallet:
        config = write_table_config(tmp_path, wallet, emu, tables=f"table_id = 1\n{APPLY}")
        checks = {c.name: (c.status, c.detail) for c in diagnose(config)}
        assert checks["brink-access"][0] == checks["brink-location"][0] == "OK"
        status, detail = checks["brink"]
        assert status == "OK" and "the POS answers (table 1" in detail and "tender 7" in detail, detail
        assert "brink over http:// on this machine" in checks["transport"][1]

        (tmp_path / "brink.access.token").chmod(0o644)
        assert diagnose_one(config, "brink-access")[0] == "FAIL"
        (tmp_path / "brink.access.token").chmod(0o600)
        (tmp_path / "brink.access.token").write_text("not-the-token\n")
        status, detail = diagnose_one(config, "brink")
        assert status == "FAIL" and "denies access (ResultCode 4" in detail, detail
        assert "not-the-token" not in detail
        emu.faults.set_down(True)
        (tmp_path / "brink.access.token").write_text(DEMO_ACCESS_TOKEN + "\n")
        status, detail = diagnose_one(config, "brink")
        assert status == "FAIL" and "unreachable" in detail, detail


def diagnose_one(config: Path, name: str) -> tuple[str, str]:
    return next((c.status, c.detail) for c in diagnose(config) if c.name == name)


def test_status_and_doctor_count_the_payments_alike(tmp_path: Path, emu: BrinkEmulator) -> None:
    """One record in each state (applied, waiting, waiting maybe applied, held after a maybe-sent
    attempt, given up, left to the terminal that booked the sale): ``taptill status`` and ``doctor``
    give the one count, each record in exactly one part (a held one is not also pending)."""
    with WalletEmulator.demo("doc") as wallet:
        config = write_table_config(tmp_path / "t", wallet, emu, tables=f"table_id = 1\n{APPLY}")
    journal_path = load_config(config).journal_path
    journal_path.parent.mkdir(parents=True, exist_ok=True)

    async def go() -> None:
        rig = PayRig(tmp_path / "t", emu, journal_path=journal_path)
        try:
            await rig.pay(3)  # three records
            await rig.pay(2)
            elsewhere = await rig.pay(1)
            rig.journal.mark_booked_elsewhere(elsewhere.id, "the wallet had booked this key already (202)")
            store = rig.runtime.destination.store
            applied, maybe, held, given_up = (r for r in rig.records() if r.state == "pending")
            store.done([applied], "applied", by_settling=False)
            store.begin([maybe], None)
            store.begin([held], None)
            store.hold([held], "order 2301 was closed meanwhile (103): refund")
            store.begin([given_up], None)
            store.hold([given_up], "order 2201 was closed meanwhile (103): refund")
            assert give_up_held(rig.journal, given_up.ref, "staff")
        finally:
            await rig.aclose()
            rig.journal.close()

    asyncio.run(go())
    summary = "1 payment(s) applied, 1 waiting (1 maybe applied: looked for first), 1 held for staff, "
    summary += "1 given up, 1 left to the terminal that booked their sale"
    status = taptill("status", "--config", str(config)).stdout
    assert f"PAR Brink:       {summary}" in status, status
    assert f"outbox:          brink: {summary}" in status, status
    outbox = diagnose_one(config, "outbox")
    assert outbox[0] == "WARN" and f"brink: {summary}" in outbox[1], outbox


@pytest.mark.parametrize("gone", ["party_closed", "order_gone"])
def test_a_payment_maybe_applied_then_unseen_is_looked_for_at_the_pos_not_refunded_outright(
    tmp_path: Path, emu: BrinkEmulator, gone: str
) -> None:
    # the store applied our payment but answered 104; staff close the party within seconds, so the
    # look cannot see the order our taptill_key is on: refunding outright would pay the guest twice
    emu.force("ApplyPayment", 104, after_applying=True)

    async def scenario(rig: PayRig) -> None:
        await rig.pay(1)
        stop = asyncio.Event()
        task = asyncio.ensure_future(rig.runtime.loop.run(stop))
        try:
            while not sent(emu, "ApplyPayment"):
                await asyncio.sleep(0.01)
            if gone == "party_closed":
                emu.location.close_party(DAY, 1)
            else:  # the order left this table's party at the POS (moved, or taken off the list)
                party, _ = emu.location.order(70101)
                with emu.location.lock:
                    party.orders[:] = [o for o in party.orders if o.id != 70101]
            while rig.waiting():
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task

    rig = run(tmp_path, emu, scenario)
    (record,) = rig.records()
    assert [(o, a, k) for o, a, k in ledger(emu)] == [(70101, "11.11", record.ref)], "on the closed bill"
    assert sent(emu, "ApplyPayment") == 1 and record.hold, record.reason
    assert "no longer owes" not in record.reason, record.reason
    assert (
        f"unknown if applied: look on table 1's closed bill at the POS for a payment with reference "
        f"{record.ref}; if it is there: taptill settle {record.ref} --booked; if not: refund 11.11 to card "
        f"{CARD}, then --refunded"
    ) in record.reason, record.reason
    assert len(record.reason) < REASON_MAX, "the whole advice fits the held reason"


def test_a_refund_is_given_once_whether_settled_by_record_or_by_sale(tmp_path: Path) -> None:
    """One refund per amount: a record refunded by hand is counted when its sale is refunded whole (only
    the rest is named), a sale refunded whole takes its held records with it, and a record of a refunded
    sale is refused. ``status`` counts the held payments under *to refund* and no refunded table paid."""
    with WalletEmulator.demo("doc") as wallet, BrinkEmulator() as emu:  # today's business date, as status
        config = write_table_config(tmp_path / "t", wallet, emu, tables=f"table_id = 1\n{APPLY}")
        cfg = load_config(config)
        assert cfg.brink is not None
        today = business_date(dt.datetime.now(), cfg.brink.business_day_starts)
        cfg.journal_path.parent.mkdir(parents=True, exist_ok=True)
        emu.force("ApplyPayment", 103)  # table 3's first order (17.70): held; the other two applied
        emu.force("ApplyPayment", 0)
        emu.force("ApplyPayment", 0)
        emu.force("ApplyPayment", 103)  # table 1's one order (11.11): held

        async def go() -> tuple[SaleRecord, SaleRecord]:
            rig = PayRig(tmp_path / "t", emu, journal_path=cfg.journal_path, day=today)
            try:
                three = await rig.pay(3)
                await rig.drain()
                one = await rig.pay(1)
                await rig.drain()
            finally:
                await rig.aclose()
            return three, one

        three, one = asyncio.run(go())

        def held() -> dict[int, str]:
            journal = Journal.open(cfg.journal_path)
            try:
                return {int(r.payload["table_id"]): r.ref for r in rows(journal, DESTINATION) if r.hold}
            finally:
                journal.close()

        refs = held()
        assert sorted(refs) == [1, 3]
        status = json.loads(taptill("status", "--json", "--config", str(config)).stdout)
        assert status["to_refund"] == 0 and status["brink"]["held_cents"] == 1770 + 1111
        text = taptill("status", "--config", str(config)).stdout
        assert "to refund:       0 (" in text and "  and held:      2 table payment(s) (" in text, text
        assert "tables paid:     2 by wallet" in text, text

        # a record refunded by hand, then its sale refunded whole: only what is left is named
        taptill("settle", refs[3], "--refunded", "--config", str(config))
        out = taptill("settle", three.idempotency_key, "--refunded", "--config", str(config)).stdout
        assert (
            f"PAR Brink: 17.70 of the sale's 40.79 was refunded already ({refs[3]}): "
            "refund only the 23.09 left" in out
        ), out
        assert "is held" not in out and "--refunded" not in out.split("recorded as refunded", 1)[1], out

        # a sale refunded whole, then one of its records: the record went with the sale, and is refused
        out = taptill("settle", one.idempotency_key, "--refunded", "--config", str(config)).stdout
        assert "PAR Brink: 11.11 on table 1 order 2101 was held: given up with the sale, never sent" in out, (
            out
        )
        assert held() == {}
        again = taptill("settle", refs[1], "--refunded", "--config", str(config), check=False)
        assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1, again.stderr
        assert f"belongs to sale {one.idempotency_key}, refunded whole already" in again.stderr, again.stderr
        again = taptill("settle", refs[3], "--refunded", "--config", str(config), check=False)
        assert again.returncode == 1 and "refund nothing more" in again.stderr, again.stderr

        text = taptill("status", "--config", str(config)).stdout
        assert "applied at the POS" not in text, text
        assert "REFUNDED to the guest (taptill settle): a POS payment of it was applied, delete it" in text, (
            text
        )
        assert "tables paid:     0 by wallet" in text and "2 more listed" in text, text
        assert "and held:" not in text, text


def test_doctor_names_the_denominations_a_table_terminal_cannot_sell(
    tmp_path: Path, emu: BrinkEmulator
) -> None:
    # a busy pretix answered three concurrent debits 500 ("database is locked"): the denomination
    # product is marked unsellable, and doctor must point at the table's config, not [terminal] products
    with WalletEmulator.demo("doc") as wallet:
        config = write_table_config(tmp_path, wallet, emu, tables="table_id = 1")
        journal_path = load_config(config).journal_path
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        journal = Journal.open(journal_path)
        try:
            journal.mark_unsellable([("eur10", "10 EUR")], "the server answered 500 to every attempt (3)")
        finally:
            journal.close()
        status, detail = diagnose_one(config, "products")
    assert status == "FAIL" and "10 EUR (id eur10" in detail, detail
    assert "take it out of [table] denominations" in detail and "[terminal] products" not in detail, detail
    assert "if it was only busy (database is locked), the next debit of it booked sells it again" in detail
