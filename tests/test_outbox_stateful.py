"""Stateful property test of the outbox: any interleaving of enqueue, send, ambiguous and definitive
failures, crashes and restarts delivers every sale at most once and, once the server heals, leaves none
behind. The journal is a real SQLite file; the server is the wallet emulator on loopback, both flavours."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import Flavour, WalletEmulator
from terminal.journal import Journal
from terminal.model import SaleState
from terminal.service.secret import Secret
from terminal.wallet.client import WalletClient
from terminal.wallet.health import ServerHealth
from terminal.wallet.sale_sender import SaleSender

CARDS = ("04CA0000000001", "04CA0000000002", "04CA0000000003")
STRANGER = "04BADC0FFEE000"  # no wallet on the server
BALANCE = 1_000_000
AMBIGUOUS = (FaultKind.DROP_AFTER, FaultKind.ERROR500_AFTER, FaultKind.GARBAGE_TRUNCATED)
UNREACHABLE = (
    FaultKind.DROP_BEFORE,
    FaultKind.ERROR500_BEFORE,
    FaultKind.RATE_LIMIT_429,
    FaultKind.GARBAGE_HTML,
)
PRODUCTS: dict[Flavour, tuple[str | int, str | int]] = {"doc": ("espresso", "nonexistent"), "real": (1, 999)}
PRICE = 250
DRAIN_ROUNDS = 30


class OutboxMachine(RuleBasedStateMachine):
    """One terminal's journal and sale sender; ``flavour`` is set by the subclasses below."""

    flavour: Flavour = "doc"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-"))
        self.path = self.dir / "journal.sqlite3"
        self.server = WalletEmulator(self.flavour, seed=1).start()
        for uid in CARDS:
            self.server.add_wallet(uid, BALANCE)
        self.loop = asyncio.new_event_loop()
        self.now = 1_000_000.0  # the sender's clock: every rule moves it past any backoff
        self.journal: Journal | None = None
        self.sender: SaleSender | None = None
        self.crashes = 0
        self._open()

    # --- the terminal's parts -----------------------------------------------------------------

    def _clock(self) -> float:
        return self.now

    def _open(self) -> None:
        self.journal = Journal.open(self.path)
        client = WalletClient(self.server.base_url, Secret(self.server.api_token), timeout_s=2.0)
        self.sender = SaleSender(
            self.journal,
            client,
            ServerHealth(),
            dedupes=self.flavour == "doc",
            clock=self._clock,
            monotonic=self._clock,
        )

    def _close(self) -> None:
        assert self.journal is not None and self.sender is not None
        self.loop.run_until_complete(self.sender.client.aclose())
        self.journal.close()
        self.journal, self.sender = None, None

    def _send_one(self) -> bool:
        """One attempt for the oldest due sale; False if none is due."""
        assert self.journal is not None and self.sender is not None
        self.now += 1000.0
        due = self.journal.due_sales(self.now, 1)
        if not due:
            return False
        self.loop.run_until_complete(self.sender.attempt(due[0]))
        return True

    def _transactions_seen(self) -> int:
        return int(self.server.stats()["requests_by_route"].get("transaction", 0))

    # --- rules --------------------------------------------------------------------------------

    @rule(card=st.sampled_from((*CARDS, STRANGER)), good_product=st.booleans(), count=st.integers(1, 2))
    def enqueue(self, card: str, good_product: bool, count: int) -> None:
        assert self.journal is not None
        good, bad = PRODUCTS[self.flavour]
        products = [good if good_product else bad] + [good] * (count - 1)
        self.journal.record_sale(
            token_id=card,
            products=products,
            amount_cents=-PRICE * count,
            description="Kaffee",
            tag="coffee",
            offline=True,
            reason="offline: accepted (stateful test)",
        )

    @rule()
    def send(self) -> None:
        self._send_one()

    @rule(kind=st.sampled_from(AMBIGUOUS))
    def ambiguous_failure(self, kind: FaultKind) -> None:
        """The server books the debit, the answer is lost or mangled."""
        self.server.faults.inject(kind, method="POST", route="transaction", times=1)
        self._send_one()

    @rule(kind=st.sampled_from(UNREACHABLE))
    def unreachable(self, kind: FaultKind) -> None:
        """The request is refused before anything is booked (on any route)."""
        self.server.faults.inject(kind, times=1, retry_after=0)
        self._send_one()

    @precondition(lambda self: self.journal is not None)
    @rule(booked=st.booleans())
    def crash_in_flight(self, booked: bool) -> None:
        """Power cut while a debit is on its way: the server books it later, or never."""
        assert self.journal is not None and self.sender is not None
        self.now += 1000.0
        due = self.journal.due_sales(self.now, 1)
        if not due:
            return
        self.server.faults.clear()  # rules left by earlier steps would decide this request's fate
        if booked:
            self.server.faults.inject(FaultKind.LATENCY, ms=150, method="POST", times=1)
        else:
            self.server.faults.inject(FaultKind.HANG, method="POST", times=1, cap_s=10)
        seen = self._transactions_seen()
        before = len(self.server.transactions())

        async def until_request_arrives() -> bool:
            task = asyncio.ensure_future(self.sender.attempt(due[0]))  # type: ignore[union-attr]
            while self._transactions_seen() == seen and not task.done():
                await asyncio.sleep(0.002)
            arrived = not task.done()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return arrived

        arrived = self.loop.run_until_complete(until_request_arrives())
        self.journal.close()  # no more writes from the dead process; its HTTP connection dies with it
        self.journal, self.sender = None, None
        self.crashes += 1
        bookable = due[0].token_id in CARDS and PRODUCTS[self.flavour][1] not in due[0].products
        if arrived and booked and bookable:
            deadline = self.loop.time() + 5.0
            while len(self.server.transactions()) == before and self.loop.time() < deadline:
                self.loop.run_until_complete(asyncio.sleep(0.01))
        self.server.faults.clear()  # releases a hanging request: it closes without booking
        self._open()

    @rule()
    def crash_idle(self) -> None:
        """Power cut between requests (after journaling, before sending)."""
        assert self.journal is not None and self.sender is not None
        self.journal.close()
        self.journal, self.sender = None, None
        self.crashes += 1
        self._open()

    @rule()
    def restart(self) -> None:
        self._close()
        self._open()

    # --- what must always hold ------------------------------------------------------------------

    @invariant()
    def delivered_at_most_once(self) -> None:
        keys = Counter(t.idempotency_key for t in self.server.transactions())
        doubled = {k: n for k, n in keys.items() if n > 1}
        assert not doubled, f"charged more than once: {doubled}"
        if self.journal is not None:
            known = {s.idempotency_key for s in self.journal.sales()}
            assert set(keys) <= known, "the server booked a sale the journal does not know"

    def teardown(self) -> None:
        try:
            if self.journal is None:
                self._open()
            self.server.faults.clear()
            for _ in range(DRAIN_ROUNDS):
                if not self._send_one():
                    break
            assert self.journal is not None
            sales = list(self.journal.sales())
            left = [s for s in sales if s.state is SaleState.PENDING]
            assert not left, f"left behind (held: {[s.reason for s in left if s.hold]})"
            ledger = {t.idempotency_key: t for t in self.server.transactions()}
            for s in sales:
                if s.state is SaleState.DONE:
                    assert s.idempotency_key in ledger, f"sale {s.id} done but never booked"
                    assert ledger[s.idempotency_key].amount == s.amount_cents
                else:
                    assert s.idempotency_key not in ledger, f"sale {s.id} is {s.state} but was booked"
                    assert s.token_id == STRANGER or PRODUCTS[self.flavour][1] in s.products
        finally:
            if self.journal is not None:
                self._close()
            self.server.stop()
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


STATEFUL = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class DocOutbox(OutboxMachine):
    flavour: Flavour = "doc"


class RealOutbox(OutboxMachine):
    flavour: Flavour = "real"


@pytest.mark.parametrize("machine", [DocOutbox, RealOutbox], ids=["doc", "real"])
def test_outbox_delivers_each_sale_at_most_once_and_leaves_none_behind(
    machine: type[OutboxMachine],
) -> None:
    run_state_machine_as_test(machine, settings=STATEFUL)
