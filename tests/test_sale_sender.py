"""SaleSender against both emulator flavours and every fault: one ledger transaction per sale, never two."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal, SaleRecord
from terminal.model import DeclineReason, SaleState
from terminal.service.secret import Secret
from terminal.wallet.balance import Booked, booked_by_balance
from terminal.wallet.client import WalletClient
from terminal.wallet.health import ServerHealth
from terminal.wallet.outcomes import Applied
from terminal.wallet.sale_sender import AttemptResult, Delivered, Later, Refusal, SaleSender
from tests.terminal_lab import ERIKA, MAX, STRANGER, espresso

T = TypeVar("T")

FAULTS = [
    FaultKind.DROP_AFTER,
    FaultKind.ERROR500_AFTER,
    FaultKind.GARBAGE_TRUNCATED,
    FaultKind.DROP_BEFORE,
    FaultKind.RATE_LIMIT_429,
    FaultKind.HANG,
    FaultKind.ERROR500_BEFORE,
    FaultKind.GARBAGE_HTML,
    FaultKind.GARBAGE_CONTENT_TYPE,
    FaultKind.GARBAGE_OVERSIZED,
]


class Rig:
    """A journal, a client and a sender wired to one emulator, inside one event loop."""

    def __init__(self, emu: WalletEmulator, path: Path, *, dedupes: bool, timeout_s: float = 1.0) -> None:
        self.emu = emu
        # The rig's clocks jump past every wait, the reconcile window included, so the server must answer
        # within the client's timeout unless a fault says otherwise: a slow answer landing after the
        # window would look like a double charge that the real window prevents. Slow servers are tested
        # end to end (tests/test_loop_freeze.py, test_crash.py, the campaign) with real clocks.
        emu.faults.set_profile("fast")
        self.journal = Journal.open(path / "journal.sqlite3")
        self.client = WalletClient(emu.base_url, Secret(emu.api_token), timeout_s=timeout_s)
        self.health = ServerHealth()
        ticks = itertools.count()
        # Every reading of the clocks is 100 s later: backoff never makes a test wait.
        self.sender = SaleSender(
            self.journal,
            self.client,
            self.health,
            dedupes=dedupes,
            probe_interval_s=0.01,
            clock=lambda: 1e6 + 100.0 * next(ticks),
            monotonic=lambda: 1e6 + 100.0 * next(ticks),
            rng=random.Random(7),
        )

    def record(
        self, uid: str = MAX, products: list[str | int] | None = None, amount: int = -250
    ) -> SaleRecord:
        return self.journal.record_sale(
            token_id=uid,
            products=products or [espresso(self.emu.flavour)],
            amount_cents=amount,
            description="Kaffee",
            tag="coffee",
            offline=False,
        )

    def current(self, sale: SaleRecord) -> SaleRecord:
        now = self.journal.sale(sale.id)
        assert now is not None
        return now

    async def deliver(self, sale: SaleRecord, attempts: int = 8) -> list[AttemptResult]:
        results: list[AttemptResult] = []
        for _ in range(attempts):
            now = self.current(sale)
            if now.state is not SaleState.PENDING or now.hold:
                break
            results.append(await self.sender.attempt(now))
        return results

    def keyed(self, sale: SaleRecord) -> int:
        return sum(1 for t in self.emu.transactions() if t.idempotency_key == sale.idempotency_key)

    async def close(self) -> None:
        await self.client.aclose()
        self.journal.close()


def with_rig(
    emu: WalletEmulator, path: Path, dedupes: bool, body: Callable[[Rig], Awaitable[T]], **options: float
) -> T:
    async def main() -> T:
        rig = Rig(emu, path, dedupes=dedupes, **options)
        try:
            return await body(rig)
        finally:
            await rig.close()

    return asyncio.run(main())


def dedup_modes(flavour: str) -> list[bool]:
    return [True, False] if flavour == "doc" else [False]


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("tap_path", [False, True], ids=["outbox", "tap"])
def test_every_fault_ends_in_exactly_one_debit(
    wallet_server: WalletEmulator, flavour: str, tmp_path: Path, kind: FaultKind, tap_path: bool
) -> None:
    for n, dedupes in enumerate(dedup_modes(flavour)):
        uid = [MAX, ERIKA][n]
        before = wallet_server.balance(uid)
        wallet_server.faults.inject(kind, times=1, method="POST", route="transaction", cap_s=5, retry_after=1)

        async def scenario(rig: Rig, uid: str = uid, before: int = before) -> tuple[SaleRecord, int]:
            if tap_path:  # the tap has just read the balance and journals the sale as attempting
                sale = rig.journal.record_sale(
                    token_id=uid,
                    products=[espresso(flavour)],
                    amount_cents=-250,
                    description="Kaffee",
                    tag="coffee",
                    offline=False,
                    balance_before=before,
                    attempting=True,
                )
                first = await rig.sender.attempt(sale, fresh_balance=before)
            else:
                sale = rig.record(uid)
                first = await rig.sender.attempt(sale)
            assert isinstance(first, Later), first
            results = await rig.deliver(sale)
            assert isinstance(results[-1], Delivered), results
            return rig.current(sale), rig.keyed(sale)

        done, keyed = with_rig(wallet_server, tmp_path / f"{n}", dedupes, scenario, timeout_s=0.5)
        assert done.state is SaleState.DONE and not done.hold, done
        assert keyed == 1, f"{kind} with dedupes={dedupes}: {keyed} ledger transactions for one sale"
        assert wallet_server.balance(uid) == before - 250
        assert done.balance_after in (before - 250, None)
        assert wallet_server.faults.applied().get(kind.value, 0) == n + 1
    assert sum(t.amount for t in wallet_server.transactions()) == -250 * len(dedup_modes(flavour))


def test_the_real_server_would_double_charge_a_blind_resend(tmp_path: Path) -> None:
    with WalletEmulator.demo("real") as emu:

        async def blind() -> None:
            client = WalletClient(emu.base_url, Secret(emu.api_token), timeout_s=10.0)
            try:
                for _ in range(2):
                    res = await client.transact(MAX, [1], description="K", tag=None, idempotency_key="x" * 24)
                    assert isinstance(res, Applied)
            finally:
                await client.aclose()

        asyncio.run(blind())
        assert emu.balance(MAX) == 1500 and len(emu.transactions()) == 2  # the same key, charged twice

    with WalletEmulator.demo("real") as emu:
        emu.faults.inject(FaultKind.DROP_AFTER, times=3, method="POST", route="transaction")

        async def reconciled(rig: Rig) -> list[AttemptResult]:
            return await rig.deliver(rig.record())

        results = with_rig(emu, tmp_path, False, reconciled)
        # the debit was booked by the first drop_after; the balance read shows it: no second POST
        assert [type(r) for r in results] == [Later, Delivered]
        assert emu.balance(MAX) == 1750 and len(emu.transactions()) == 1
        assert emu.faults.applied() == {"drop_after": 1}


@pytest.mark.parametrize("booked_first", [False, True], ids=["not-booked", "booked"])
def test_a_foreign_debit_between_attempts_holds_the_sale(tmp_path: Path, booked_first: bool) -> None:
    kind = FaultKind.DROP_AFTER if booked_first else FaultKind.ERROR500_BEFORE
    with WalletEmulator.demo("real") as emu:
        emu.faults.inject(kind, times=1, method="POST", route="transaction")

        async def scenario(rig: Rig) -> tuple[SaleRecord, list[AttemptResult]]:
            sale = rig.record()
            assert isinstance(await rig.sender.attempt(sale), Later)
            # another terminal of the event debits the same wallet meanwhile
            emu.ledger.apply(
                MAX,
                -300,
                [2],
                description="Bar",
                tag=None,
                idempotency_key="foreign-key-0000000",
                terminal="bar",
            )
            later = [await rig.sender.attempt(rig.current(sale)) for _ in range(3)]
            assert rig.journal.due_sales(1e12) == []  # held sales are not retried by the outbox
            return rig.current(sale), later

        held, later = with_rig(emu, tmp_path, False, scenario)
        assert all(isinstance(r, Later) for r in later)
        assert (
            held.state is SaleState.PENDING
            and held.hold
            and f"taptill settle {held.idempotency_key} --booked" in held.reason
        )
        ours = [t for t in emu.transactions() if t.idempotency_key == held.idempotency_key]
        assert len(ours) == (1 if booked_first else 0)  # never a second debit
        assert emu.balance(MAX) == 2000 - 300 - (250 if booked_first else 0)
        assert emu.faults.applied() == {kind.value: 1}


def test_only_one_request_per_card_is_in_flight(tmp_path: Path) -> None:
    with WalletEmulator.demo("real") as emu:
        emu.faults.inject(FaultKind.LATENCY, ms=300, times=1, method="GET", route="wallet")

        async def scenario(rig: Rig) -> list[AttemptResult]:
            sale = rig.record()
            return list(await asyncio.gather(rig.sender.attempt(sale), rig.sender.attempt(sale)))

        results = with_rig(emu, tmp_path, False, scenario)
        assert sorted(type(r).__name__ for r in results) == ["Delivered", "Later"]
        assert len(emu.transactions()) == 1


def test_definitive_refusals_reject_with_the_reason(
    wallet_server: WalletEmulator, flavour: str, tmp_path: Path
) -> None:
    bad_product: str | int = "nope" if flavour == "doc" else 999

    async def scenario(rig: Rig) -> list[tuple[AttemptResult, SaleRecord]]:
        out = []
        for uid, products in ((MAX, [bad_product]), (STRANGER, [espresso(flavour)])):
            sale = rig.record(uid, products)
            out.append((await rig.sender.attempt(sale), rig.current(sale)))
        return out

    for dedupes in dedup_modes(flavour):
        (bad, bad_sale), (stranger, stranger_sale) = with_rig(
            wallet_server, tmp_path / str(dedupes), dedupes, scenario
        )
        assert isinstance(bad, Refusal) and bad.reason is DeclineReason.BAD_PRODUCT
        assert bad_sale.state is SaleState.REJECTED and "400" in bad_sale.reason
        assert isinstance(stranger, Refusal) and stranger.reason is DeclineReason.UNKNOWN_CARD
        assert stranger_sale.state is SaleState.REJECTED
    assert wallet_server.transactions() == []


def test_a_refusal_for_the_balance_is_insufficient_balance_not_a_bad_product(tmp_path: Path) -> None:
    """The doc server refuses a debit over the balance with 400 "Insufficient balance" (an offline-accepted
    sale delivered later): the guest's screen and the shift report must say so, not "product unavailable".
    (The real server has no balance rule: its wallets go negative.)"""

    async def scenario(rig: Rig) -> tuple[AttemptResult, SaleRecord]:
        sale = rig.record(ERIKA, [espresso("doc")] * 3, amount=-750)  # 500 cents in the wallet
        return await rig.sender.attempt(sale), rig.current(sale)

    with WalletEmulator.demo("doc", latency="fast") as emu:
        for dedupes in dedup_modes("doc"):
            result, sale = with_rig(emu, tmp_path / str(dedupes), dedupes, scenario)
            assert result == Refusal(DeclineReason.INSUFFICIENT_BALANCE, "400: Insufficient balance")
            assert sale.state is SaleState.REJECTED
            assert sale.reason == "insufficient_balance: 400: Insufficient balance"
        assert emu.transactions() == []


def test_a_wrong_token_keeps_the_sale_pending(
    wallet_server: WalletEmulator, flavour: str, tmp_path: Path
) -> None:
    async def scenario() -> SaleRecord:
        journal = Journal.open(tmp_path / "j.sqlite3")
        client = WalletClient(wallet_server.base_url, Secret("wrong"), timeout_s=10.0)
        sender = SaleSender(journal, client, ServerHealth(), dedupes=flavour == "doc", clock=lambda: 0.0)
        try:
            sale = journal.record_sale(
                token_id=MAX,
                products=[espresso(flavour)],
                amount_cents=-250,
                description="K",
                tag=None,
                offline=False,
            )
            assert await sender.attempt(sale) == Later("unauthorized")
            now = journal.sale(sale.id)
            assert now is not None
            return now
        finally:
            await client.aclose()
            journal.close()

    sale = asyncio.run(scenario())
    assert sale.state is SaleState.PENDING and sale.next_attempt_at == 60.0
    assert wallet_server.transactions() == []


def test_the_outbox_drains_a_faulty_backlog_exactly_once(
    wallet_server: WalletEmulator, flavour: str, tmp_path: Path
) -> None:
    cards = {f"04AA00000000{i:02X}": 10_000 for i in range(4)}
    for uid, balance in cards.items():
        wallet_server.add_wallet(uid, balance)
    wallet_server.faults.reseed(11)
    for kind in FAULTS:
        if kind is not FaultKind.HANG:
            wallet_server.faults.inject(kind, probability=0.08, method="POST", route="transaction")
    wallet_server.faults.inject(FaultKind.HANG, probability=0.03, method="POST", route="transaction", cap_s=3)

    async def scenario(rig: Rig) -> list[SaleRecord]:
        sales = [rig.record(uid) for _ in range(6) for uid in cards]
        stop = asyncio.Event()
        runner = asyncio.ensure_future(rig.sender.run(stop))
        for _ in range(3000):
            status = rig.journal.status()
            if status.pending == 0:
                break
            await asyncio.sleep(0.02)
        stop.set()
        rig.sender.wake()
        await asyncio.wait_for(runner, 10)
        return [rig.current(s) for s in sales]

    final = with_rig(wallet_server, tmp_path, flavour == "doc", scenario, timeout_s=0.5)
    faults = wallet_server.faults.applied()
    assert sum(faults.values()) >= 5, faults  # the backlog really met faults
    assert all(s.state is SaleState.DONE for s in final), [(s.state, s.reason) for s in final]
    booked = [t.idempotency_key for t in wallet_server.transactions()]
    # one ledger transaction per sale: none lost, none doubled
    assert sorted(k or "" for k in booked) == sorted(s.idempotency_key for s in final)
    for uid in cards:
        assert wallet_server.balance(uid) == 10_000 - 6 * 250


# --- real pretix's truncated balances: a reported balance can be a cent nearer zero than the wallet holds

TRUNCATING = ((1, "Club-Mate", 120), (5, "Kaugummi", 3), (6, "Bonbon", 2))
PRICES = {pid: price for pid, _, price in TRUNCATING}


def truncating(balance: int) -> WalletEmulator:
    return WalletEmulator("real", products=TRUNCATING, wallets={MAX: balance})


def foreign(emu: WalletEmulator, *amounts: int) -> None:
    """Another terminal moves money on the wallet; the caller's amounts net to zero in cents."""
    for amount in amounts:
        emu.ledger.apply(MAX, amount, [], description="Bar", tag=None, idempotency_key=None, terminal="bar")


@pytest.mark.parametrize(
    ("balance", "product", "before", "after"),
    [
        (500, 1, 500, 379),  # 5.00 - 1.20 holds 3.80 and reads 379: moved by the price plus a cent
        (120, 1, 119, 0),  # exactly 1.20 reads 119 before and 0 after: moved by the price less a cent
        (38, 5, 38, 34),  # 3 cents, the smallest amount whose move a cent off cannot mean "not booked"
    ],
)
def test_a_booked_attempt_is_recognised_when_the_balance_moved_a_cent_more_or_less(
    tmp_path: Path, balance: int, product: int, before: int, after: int
) -> None:
    with truncating(balance) as emu:
        emu.faults.inject(FaultKind.DROP_AFTER, times=1, method="POST", route="transaction")

        async def scenario(rig: Rig) -> tuple[list[AttemptResult], SaleRecord]:
            sale = rig.record(MAX, [product], -PRICES[product])
            results = await rig.deliver(sale)
            return results, rig.current(sale)

        results, sale = with_rig(emu, tmp_path, False, scenario)
        assert [type(r) for r in results] == [Later, Delivered], sale.reason
        assert sale.state is SaleState.DONE and not sale.hold
        assert (sale.balance_before, sale.balance_after) == (before, after)  # what the server reported
        assert len(emu.transactions()) == 1 and emu.balance(MAX) == balance - PRICES[product]


@pytest.mark.parametrize(
    ("settle", "meanwhile", "before", "seen"),
    [
        ((), (500, -500), 119, 120),  # a top-up and its refund elsewhere: the same 1.20 now reads 120
        ((500, -500), (130, -130), 120, 119),  # and back: reads a cent less, holding the same
    ],
)
def test_a_not_booked_attempt_is_sent_again_when_the_balance_is_a_cent_off(
    tmp_path: Path, settle: tuple[int, ...], meanwhile: tuple[int, ...], before: int, seen: int
) -> None:
    with truncating(120) as emu:
        foreign(emu, *settle)
        emu.faults.inject(FaultKind.ERROR500_BEFORE, times=1, method="POST", route="transaction")

        async def scenario(rig: Rig) -> tuple[list[AttemptResult], SaleRecord]:
            sale = rig.record(MAX, [1], -120)
            first = await rig.sender.attempt(sale)
            assert rig.current(sale).balance_before == before
            foreign(emu, *meanwhile)
            assert emu.reported_balance(MAX) == seen and emu.balance(MAX) == 120
            return [first, *await rig.deliver(sale)], rig.current(sale)

        results, sale = with_rig(emu, tmp_path, False, scenario)
        assert [type(r) for r in results] == [Later, Delivered], sale.reason
        assert sale.state is SaleState.DONE and not sale.hold
        ours = [t for t in emu.transactions() if t.idempotency_key == sale.idempotency_key]
        assert len(ours) == 1 and emu.balance(MAX) == 0


@pytest.mark.parametrize(
    ("balance", "kind", "meanwhile", "ours", "readings"),
    [
        (8, FaultKind.DROP_AFTER, (), 1, (8, 5)),  # booked: 0.08 - 0.02 moved by 3
        (15, FaultKind.DROP_AFTER, (), 1, (14, 13)),  # booked: 0.15 - 0.02 moved by 1
        (120, FaultKind.ERROR500_BEFORE, (500, -500), 0, (119, 120)),  # not booked: moved by 1
    ],
)
def test_a_2_cent_sale_whose_balance_is_a_cent_off_is_held_not_guessed(
    tmp_path: Path,
    balance: int,
    kind: FaultKind,
    meanwhile: tuple[int, ...],
    ours: int,
    readings: tuple[int, int],
) -> None:
    with truncating(balance) as emu:
        emu.faults.inject(kind, times=1, method="POST", route="transaction")

        async def scenario(rig: Rig) -> SaleRecord:
            sale = rig.record(MAX, [6], -2)
            assert isinstance(await rig.sender.attempt(sale), Later)
            foreign(emu, *meanwhile)
            await rig.deliver(sale)
            return rig.current(sale)

        held = with_rig(emu, tmp_path, False, scenario)
        # for 1-2 cents "booked" and "not booked" a cent off overlap, so only an exact move counts
        assert (
            held.state is SaleState.PENDING
            and held.hold
            and f"taptill settle {held.idempotency_key} --booked" in held.reason
        )
        assert (held.balance_before, emu.reported_balance(MAX)) == readings
        assert sum(1 for t in emu.transactions() if t.idempotency_key == held.idempotency_key) == ours
        assert emu.balance(MAX) == balance - 2 * ours


def test_booked_by_balance_allows_a_cent_only_where_booked_and_not_booked_cannot_meet() -> None:
    def verdicts(amount: int) -> list[str]:
        return [booked_by_balance(1000, 1000 + amount + d, amount).value for d in (-1, 0, 1)] + [
            booked_by_balance(1000, 1000 + d, amount).value for d in (-1, 0, 1)
        ]

    booked, not_booked, unclear = "booked", "not booked", "unclear"
    assert verdicts(-3) == [booked] * 3 + [not_booked] * 3
    assert verdicts(3) == [booked] * 3 + [not_booked] * 3  # a top-up, signed as the wallet books it
    assert verdicts(-2) == [unclear, booked, unclear, unclear, not_booked, unclear]
    assert verdicts(-1) == [unclear, booked, not_booked, booked, not_booked, unclear]
    assert booked_by_balance(1000, 1000 - 250 - 2, -250) is Booked.UNCLEAR  # two cents off: a foreign move


NO_QUOTA = 3  # the real flavour's Latte Macchiato, put in no quota: every debit with it answers 500


def _offline_sale(rig: Rig, products: Sequence[str | int]) -> SaleRecord:
    return rig.journal.record_sale(
        token_id=MAX,
        products=products,
        amount_cents=-250 * len(products),
        description="Kaffee",
        tag="coffee",
        offline=True,
        reason="offline: accepted",
    )


def test_a_cart_failing_with_a_product_in_no_quota_marks_only_the_product_never_booked(
    tmp_path: Path,
) -> None:
    """Espresso was booked before; a cart of Espresso and the no-quota item, sold offline, keeps failing:
    only the no-quota item is not sold offline any more, and the guest's card stays allowed offline."""

    async def scenario(rig: Rig) -> tuple[list[AttemptResult], SaleRecord]:
        await rig.deliver(rig.record(MAX, [1]))
        cart = _offline_sale(rig, [1, NO_QUOTA])
        return await rig.deliver(cart), rig.current(cart)

    with WalletEmulator.demo("real", latency="fast", unsellable=[NO_QUOTA]) as emu:
        results, cart = with_rig(emu, tmp_path, False, scenario)
        assert isinstance(results[-1], Refusal) and results[-1].reason is DeclineReason.BAD_PRODUCT
        assert cart.state is SaleState.REJECTED and cart.reason.startswith("bad_product"), cart.reason
        assert "it cannot book 3 (id 3):" in cart.reason and "(id 1)" not in cart.reason, cart.reason
        journal = Journal.open(tmp_path / "journal.sqlite3")
        try:
            assert set(journal.unsellable()) == {"3"}
            assert journal.denied_cards() == {}
            assert journal.offline_view(MAX, 0.0).denied_reason is None
        finally:
            journal.close()
        assert [t.amount for t in emu.transactions()] == [-250]


def test_a_cart_of_products_each_booked_before_failing_marks_none_and_says_the_cart_failed(
    tmp_path: Path,
) -> None:
    async def scenario(rig: Rig) -> SaleRecord:
        for product in (1, NO_QUOTA):
            await rig.deliver(rig.record(MAX, [product]))
        emu.set_unsellable([NO_QUOTA])  # taken out of its quota after it sold
        cart = _offline_sale(rig, [1, NO_QUOTA])
        await rig.deliver(cart)
        return rig.current(cart)

    with WalletEmulator.demo("real", latency="fast") as emu:
        cart = with_rig(emu, tmp_path, False, scenario)
        assert cart.state is SaleState.REJECTED and cart.reason.startswith("server_trouble"), cart.reason
        assert "the cart as a whole failed" in cart.reason, cart.reason
        journal = Journal.open(tmp_path / "journal.sqlite3")
        try:
            assert journal.unsellable() == {} and journal.denied_cards() == {}
        finally:
            journal.close()


def test_the_tap_path_counts_and_marks_only_the_products_never_booked(tmp_path: Path) -> None:
    """The tap path's count of unbooked error answers (settle_after_error): per product, suspects only."""

    async def scenario(rig: Rig) -> list[tuple[DeclineReason, str]]:
        await rig.deliver(rig.record(MAX, [1]))
        destination = rig.sender.destination
        cart = rig.record(MAX, [1, NO_QUOTA, 1])
        verdicts = [destination.failed_unbooked(cart, 500) for _ in range(3)]
        assert destination.store.unbooked_errors == {"3": 3}
        both_booked = rig.record(MAX, [1, 2])
        rig.journal.mark_done(rig.record(MAX, [2]).id, 1200)
        verdicts.append(destination.failed_unbooked(both_booked, 500))
        return verdicts

    with WalletEmulator.demo("real", latency="fast", unsellable=[NO_QUOTA]) as emu:
        verdicts = with_rig(emu, tmp_path, False, scenario)
    assert [code for code, _ in verdicts] == [
        DeclineReason.SERVER_TROUBLE,
        DeclineReason.SERVER_TROUBLE,
        DeclineReason.BAD_PRODUCT,
        DeclineReason.SERVER_TROUBLE,
    ]
    assert "cart as a whole failed" not in verdicts[2][1]
    assert "the cart as a whole failed" in verdicts[3][1], verdicts[3][1]
    journal = Journal.open(tmp_path / "journal.sqlite3")
    try:
        assert set(journal.unsellable()) == {"3"}
    finally:
        journal.close()
