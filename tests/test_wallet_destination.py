"""WalletDestination against the wallet emulator on loopback and a real journal: each answer's outcome, what
it tells the server's health, settling by balance, and the unsellable products and their words."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal, SaleRecord
from terminal.model import DeclineReason
from terminal.outbox.outcome import (
    Ambiguous,
    Booked,
    Done,
    NotBooked,
    Rejected,
    Unclear,
    Unreachable,
    Wait,
)
from terminal.service.secret import Secret
from terminal.wallet import destination
from terminal.wallet.balance import Booked as ByBalance
from terminal.wallet.client import WalletClient
from terminal.wallet.destination import ALREADY_BOOKED, WalletDestination, refusal_reason
from terminal.wallet.health import ServerHealth
from terminal.wallet.sale_store import SaleStore
from tests.terminal_lab import ERIKA, MAX, STRANGER

T = TypeVar("T")
LOG = "terminal.wallet.destination"
START = 5000.0  # the destination's monotonic clock when it is made
TIMEOUT_S = 2.0  # the client's; a request can land until TIMEOUT_S + 1 s after it left
WINDOW_S = TIMEOUT_S + 1.0
NAMES = {"1": "Espresso", "2": "Cappuccino", "3": "Latte Macchiato"}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Lab:
    emu: WalletEmulator | None
    journal: Journal
    client: WalletClient
    health: ServerHealth
    store: SaleStore
    dest: WalletDestination
    clock: Clock

    def sale(
        self,
        uid: str = MAX,
        products: Sequence[str | int] = ("espresso",),
        amount: int = -250,
        **fields: Any,
    ) -> SaleRecord:
        """A pending sale in the journal, with ``fields`` (approved, maybe_sent, …) as the outbox sees it."""
        record = self.journal.record_sale(
            token_id=uid,
            products=products,
            amount_cents=amount,
            description="Kaffee",
            tag="coffee",
            offline=False,
        )
        return dataclasses.replace(record, **fields)


def run(
    base_url: str,
    tmp_path: Path,
    body: Callable[[Lab], Awaitable[T]],
    *,
    emu: WalletEmulator | None = None,
    token: str = "",
    dedupes: bool = False,
    limit: int = 3,
    names: Callable[[str], str] | None = None,
    down: bool = True,
) -> T:
    """``body`` on a destination wired to the server at ``base_url``; the health starts down (``down``), so
    that marking it up shows."""

    async def main() -> T:
        journal = Journal.open(tmp_path / "journal.sqlite3")
        client = WalletClient(
            base_url, Secret(token or (emu.api_token if emu else "token")), timeout_s=TIMEOUT_S
        )
        health = ServerHealth()
        if down:
            health.mark_down("earlier trouble")
        store = SaleStore(journal, dedupes=dedupes, clock=lambda: 1.8e9)
        clock = Clock()
        dest = WalletDestination(
            store,
            client,
            health,
            dedupes=dedupes,
            server_error_limit=limit,
            product_name=names,
            monotonic=clock,
        )
        try:
            return await body(Lab(emu, journal, client, health, store, dest, clock))
        finally:
            await client.aclose()
            journal.close()

    return asyncio.run(main())


@pytest.fixture
def doc() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc", latency="fast") as emu:
        yield emu


def on(emu: WalletEmulator, tmp_path: Path, body: Callable[[Lab], Awaitable[T]], **options: Any) -> T:
    return run(emu.base_url, tmp_path, body, emu=emu, **options)


class Canned:
    """A loopback server answering every request with one fixed answer: for the answers a real server may
    give and the emulators never do (a 503 with Retry-After, a 403 to a balance read)."""

    def __init__(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v1"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the decline code of a refusal ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [
        (403, "Insufficient balance", DeclineReason.PERMISSION),  # the terminal's permission comes first
        (403, "", DeclineReason.PERMISSION),
        (400, "Insufficient balance", DeclineReason.INSUFFICIENT_BALANCE),
        (400, "INSUFFICIENT", DeclineReason.INSUFFICIENT_BALANCE),
        (400, "Balance", DeclineReason.INSUFFICIENT_BALANCE),
        (409, "not enough funds", DeclineReason.INSUFFICIENT_BALANCE),
        (400, "Item in no quota", DeclineReason.BAD_PRODUCT),
        (404, "", DeclineReason.BAD_PRODUCT),
    ],
)
def test_a_refusal_is_the_terminals_permission_the_wallets_money_or_the_products(
    status: int, reason: str, code: DeclineReason
) -> None:
    assert refusal_reason(status, reason) is code


# --- which sales, in which lane -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dedupes", "approved", "maybe_sent", "settle"),
    [
        (False, False, False, True),  # never approved: find out whether booked, never send
        (True, False, False, True),
        (False, True, True, True),  # may have reached a server that does not deduplicate
        (False, True, False, False),
        (True, True, True, False),  # the same key is safe to send again
        (True, True, False, False),
    ],
)
def test_a_sale_is_settled_when_never_approved_or_maybe_sent_to_a_server_that_does_not_deduplicate(
    doc: WalletEmulator, tmp_path: Path, dedupes: bool, approved: bool, maybe_sent: bool, settle: bool
) -> None:
    async def body(lab: Lab) -> bool:
        return lab.dest.needs_settle(lab.sale(approved=approved, maybe_sent=maybe_sent))

    assert on(doc, tmp_path, body, dedupes=dedupes) is settle


def test_each_card_is_its_own_lane_and_a_sale_being_decided_is_not_ready(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> None:
        max_sale, erika_sale = lab.sale(MAX), lab.sale(ERIKA)
        assert (lab.dest.lane(max_sale), lab.dest.lane(erika_sale)) == (MAX, ERIKA)
        lab.dest.deciding.add(max_sale.id)
        assert (lab.dest.ready(max_sale), lab.dest.ready(erika_sale)) == (False, True)
        assert lab.dest.reconcile_after_s == WINDOW_S

    on(doc, tmp_path, body)


# --- the balance before an attempt ----------------------------------------------------------------------


@pytest.mark.parametrize("dedupes", [False, True])
def test_the_balance_before_an_attempt_is_read_only_where_the_server_does_not_deduplicate(
    doc: WalletEmulator, tmp_path: Path, dedupes: bool
) -> None:
    async def body(lab: Lab) -> object:
        return await lab.dest.prepare([lab.sale(ERIKA)])

    assert on(doc, tmp_path, body, dedupes=dedupes) == (None if dedupes else 500)


# --- one attempt: every answer ---------------------------------------------------------------------------


def test_a_booked_debit_is_done_with_the_balance_after_and_the_server_is_up(
    doc: WalletEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(lab: Lab) -> tuple[object, SaleRecord, float]:
        lab.clock.now = START + 100  # the request goes out now: its window runs from here
        sale = lab.sale()
        with caplog.at_level(logging.INFO, logger=LOG):
            done = await lab.dest.attempt([sale])
        return done, sale, lab.dest.landing.wait_s(sale.id)

    done, sale, wait = on(doc, tmp_path, body)
    assert done == Done(1750, "")
    assert wait == WINDOW_S
    (booked,) = doc.transactions()
    assert (booked.description, booked.tag, booked.idempotency_key) == (
        "Kaffee",
        "coffee",
        sale.idempotency_key,
    )
    assert [r.getMessage() for r in caplog.records if r.name == LOG] == [f"sale {sale.id} delivered"]


def test_a_key_booked_before_is_done_as_already_booked(
    doc: WalletEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(lab: Lab) -> tuple[object, object, SaleRecord, ServerHealth]:
        sale = lab.sale()
        first = await lab.dest.attempt([sale])
        lab.health.mark_down("a dropped answer")
        with caplog.at_level(logging.INFO, logger=LOG):
            again = await lab.dest.attempt([sale])
        return first, again, sale, lab.health

    first, again, sale, health = on(doc, tmp_path, body, dedupes=True)
    assert (first, again) == (Done(1750, ""), Done(1750, ALREADY_BOOKED))
    assert health.online
    assert [r.getMessage() for r in caplog.records if r.name == LOG] == [
        f"sale {sale.id} delivered (already booked)"
    ]
    assert len(doc.transactions()) == 1


def test_an_unknown_card_is_rejected_as_unknown_and_the_server_is_up(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> tuple[object, bool]:
        return await lab.dest.attempt([lab.sale(STRANGER)]), lab.health.online

    assert on(doc, tmp_path, body) == (
        Rejected("This token is not paired to a wallet.", DeclineReason.UNKNOWN_CARD),
        True,
    )


@pytest.mark.parametrize(
    ("refusal", "products", "rejected"),
    [
        (None, ["nope"], Rejected("400: products: Unknown product 'nope'.", DeclineReason.BAD_PRODUCT)),
        (
            "Insufficient balance",
            ["espresso"],
            Rejected("400: Insufficient balance", DeclineReason.INSUFFICIENT_BALANCE),
        ),
        (
            None,
            ["topup_10"],
            Rejected(
                "403: Terminal permission 'debit' does not allow this transaction.", DeclineReason.PERMISSION
            ),
        ),
    ],
)
def test_a_refused_debit_is_rejected_with_status_reason_and_code(
    tmp_path: Path, refusal: str | None, products: list[str], rejected: Rejected
) -> None:
    with WalletEmulator.demo("doc", latency="fast", permission="debit") as emu:
        if refusal is not None:
            emu.refuse_transactions(refusal)

        async def body(lab: Lab) -> tuple[object, bool]:
            return await lab.dest.attempt([lab.sale(MAX, products)]), lab.health.online

        assert on(emu, tmp_path, body) == (rejected, True)
        assert emu.transactions() == []


def test_a_refused_token_is_unreachable_for_a_minute_and_out_of_service(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> tuple[object, str | None]:
        return await lab.dest.attempt([lab.sale()]), lab.health.token_refused

    assert on(doc, tmp_path, body, token="wrong") == (Unreachable("unauthorized", 60.0), "Invalid token.")


def test_an_error_answer_is_ambiguous_with_its_status_and_the_server_counts_as_up(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    doc.faults.inject(FaultKind.ERROR500_BEFORE, times=1, method="POST", route="transaction")

    async def body(lab: Lab) -> tuple[object, bool]:
        return await lab.dest.attempt([lab.sale()]), lab.health.online

    assert on(doc, tmp_path, body) == (Ambiguous("server error 500", True, None, 500), True)


def test_an_error_answer_keeps_the_servers_retry_after(tmp_path: Path) -> None:
    with Canned(503, {"detail": "maintenance"}, {"Retry-After": "7"}) as url:

        async def body(lab: Lab) -> object:
            return await lab.dest.attempt([lab.sale()])

        assert run(url, tmp_path, body) == Ambiguous("server error 503", True, 7.0, 503)


def test_a_dropped_answer_is_ambiguous_and_the_server_down(doc: WalletEmulator, tmp_path: Path) -> None:
    doc.faults.inject(FaultKind.DROP_AFTER, times=1, method="POST", route="transaction")

    async def body(lab: Lab) -> tuple[object, bool, str]:
        lab.health.mark_up()
        result = await lab.dest.attempt([lab.sale()])
        return result, lab.health.online, lab.health.last_problem

    result, online, problem = on(doc, tmp_path, body)
    assert result == Ambiguous("connection trouble (ServerDisconnectedError)", True, None)
    assert (online, problem) == (False, "connection trouble (ServerDisconnectedError)")


def test_a_request_that_never_arrived_is_unreachable_with_the_servers_wait(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    doc.faults.inject(FaultKind.RATE_LIMIT_429, times=1, method="POST", route="transaction", retry_after=4)

    async def body(lab: Lab) -> tuple[object, bool, str]:
        lab.health.mark_up()
        result = await lab.dest.attempt([lab.sale()])
        return result, lab.health.online, lab.health.last_problem

    assert on(doc, tmp_path, body) == (Unreachable("rate limited (429)", 4.0), False, "rate limited (429)")
    assert doc.transactions() == []


# --- reading the balance ---------------------------------------------------------------------------------


def test_a_balance_read_gives_the_cents_and_the_server_is_up(doc: WalletEmulator, tmp_path: Path) -> None:
    async def body(lab: Lab) -> tuple[object, bool]:
        return await lab.dest.read_balance(lab.sale(ERIKA)), lab.health.online

    assert on(doc, tmp_path, body) == (500, True)


def test_a_balance_read_of_an_unknown_card_rejects_the_sale(doc: WalletEmulator, tmp_path: Path) -> None:
    async def body(lab: Lab) -> tuple[object, bool]:
        return await lab.dest.read_balance(lab.sale(STRANGER)), lab.health.online

    assert on(doc, tmp_path, body) == (
        Rejected("This token is not paired to a wallet.", DeclineReason.UNKNOWN_CARD),
        True,
    )


def test_a_balance_read_refused_rejects_the_sale_with_its_code(tmp_path: Path) -> None:
    with Canned(403, {"detail": "Terminal may not read wallets"}) as url:

        async def body(lab: Lab) -> tuple[object, bool]:
            return await lab.dest.read_balance(lab.sale()), lab.health.online

        assert run(url, tmp_path, body) == (
            Rejected("403: Terminal may not read wallets", DeclineReason.PERMISSION),
            True,
        )


def test_a_balance_read_with_a_refused_token_is_unreachable_and_out_of_service(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> tuple[object, str | None]:
        return await lab.dest.read_balance(lab.sale()), lab.health.token_refused

    assert on(doc, tmp_path, body, token="wrong") == (Unreachable("unauthorized", 60.0), "Invalid token.")


@pytest.mark.parametrize(
    ("kind", "result", "said"),
    [
        (
            FaultKind.ERROR500_BEFORE,
            Ambiguous("server error 500", True, None),
            "wallet server answers with an error (server error 500): deciding taps offline",
        ),
        (
            FaultKind.RATE_LIMIT_429,
            Ambiguous("rate limited (429)", False, 3.0),
            "wallet server unreachable (rate limited (429)): deciding taps offline",
        ),
    ],
)
def test_a_balance_read_without_an_answer_is_ambiguous_and_the_server_down(
    doc: WalletEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    kind: FaultKind,
    result: Ambiguous,
    said: str,
) -> None:
    doc.faults.inject(kind, times=2, method="GET", route="wallet", retry_after=3)

    async def body(lab: Lab) -> tuple[object, str]:
        with caplog.at_level(logging.WARNING, logger="terminal.wallet.health"):
            read = await lab.dest.read_balance(lab.sale())
        return read, lab.health.last_problem

    assert on(doc, tmp_path, body, down=False) == (result, result.detail)
    assert [r.getMessage() for r in caplog.records if r.name == "terminal.wallet.health"] == [said]


def test_a_balance_read_keeps_to_its_own_time_limit(doc: WalletEmulator, tmp_path: Path) -> None:
    # answered after a second: within the client's own limit, past the read's
    doc.faults.inject(FaultKind.LATENCY, times=2, method="GET", route="wallet", ms=1000)

    async def body(lab: Lab) -> tuple[object, object]:
        limited = await lab.dest.read_balance(lab.sale(ERIKA), timeout=0.3)
        return limited, await lab.dest.read_balance(lab.sale(ERIKA))

    limited, whole = on(doc, tmp_path, body)
    assert isinstance(limited, Ambiguous)
    assert whole == 500


# --- settling a sale that may have been booked ----------------------------------------------------------


def test_a_sale_never_approved_nor_sent_is_not_booked_without_asking_the_server(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    doc.revoke_token()  # any request would be refused: none is made

    async def body(lab: Lab) -> tuple[object, str | None]:
        settled = await lab.dest.settle(lab.sale(approved=False, maybe_sent=False))
        return settled, lab.health.token_refused

    assert on(doc, tmp_path, body) == (
        NotBooked(
            False,
            "never approved at the terminal (stopped or declined before the decision); never sent",
            code=DeclineReason.SERVER_TROUBLE,
        ),
        None,
    )


def test_settling_waits_out_the_window_of_a_request_sent_before_this_process_and_of_its_own(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> list[object]:
        sale = lab.sale(ERIKA, maybe_sent=True, balance_before=500)
        early = await lab.dest.settle(sale)  # sent by an earlier process: the window runs from the start
        lab.clock.now = START + WINDOW_S - 0.5
        almost = await lab.dest.settle(sale)
        lab.clock.now = START + WINDOW_S  # exactly over: look now
        looked = await lab.dest.settle(sale)
        lab.clock.now = START + 10
        lab.dest.landing.sent(sale.id)
        lab.clock.now = START + 11
        again = await lab.dest.settle(sale)
        lab.dest.forget([sale.id])  # forgotten: from the start again, long over
        return [early, almost, looked, again, await lab.dest.settle(sale)]

    early, almost, looked, again, forgotten = on(doc, tmp_path, body)
    assert early == Wait(WINDOW_S, "waiting before reconciling")
    assert almost == Wait(0.5, "waiting before reconciling")
    assert looked == NotBooked(True, basis=500)
    assert again == Wait(WINDOW_S - 1, "waiting before reconciling")
    assert forgotten == NotBooked(True, basis=500)


def settle(lab: Lab, sale: SaleRecord) -> Awaitable[object]:
    lab.clock.now = START + WINDOW_S
    return lab.dest.settle(sale)


def test_settling_a_card_the_server_does_not_know_rejects_the_sale(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> object:
        return await settle(lab, lab.sale(STRANGER, maybe_sent=True, balance_before=500))

    assert on(doc, tmp_path, body) == Rejected(
        "This token is not paired to a wallet.", DeclineReason.UNKNOWN_CARD
    )


@pytest.mark.parametrize("pays_table", [False, True])
def test_a_sale_never_approved_but_booked_is_done_for_a_person_to_refund(
    doc: WalletEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, pays_table: bool
) -> None:
    async def body(lab: Lab) -> tuple[object, SaleRecord]:
        sale = lab.sale(ERIKA, approved=False, maybe_sent=True, balance_before=750, pays_table=pays_table)
        with caplog.at_level(logging.INFO, logger=LOG):
            return await settle(lab, sale), sale

    booked, sale = on(doc, tmp_path, body)
    assert booked == Booked(500)
    said = (
        (
            "WARNING",
            f"sale {sale.id} paid its table bill, not shown paid at the terminal (it stopped or had no "
            "answer in time); nothing to refund",
        )
        if pays_table
        else ("ERROR", f"sale {sale.id} was booked but the guest was never told it was approved: refund it")
    )
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOG] == [said]


def test_a_sale_never_approved_and_not_booked_is_never_sent(doc: WalletEmulator, tmp_path: Path) -> None:
    async def body(lab: Lab) -> object:
        return await settle(lab, lab.sale(ERIKA, approved=False, maybe_sent=True, balance_before=500))

    assert on(doc, tmp_path, body) == NotBooked(
        False, "never approved at the terminal; not booked, not sent again", code=DeclineReason.SERVER_TROUBLE
    )


def test_a_sale_never_approved_whose_balance_moved_otherwise_is_held(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> tuple[object, str]:
        sale = lab.sale(ERIKA, approved=False, maybe_sent=True, balance_before=900)
        return await settle(lab, sale), sale.idempotency_key

    held, key = on(doc, tmp_path, body)
    assert held == Unclear(
        "never approved at the terminal and unclear whether booked: balance 500, before the attempt 900, "
        f"amount -250; check the card's wallet in pretix, then taptill settle {key} --booked "
        "(or --not-booked)"
    )


def test_an_approved_sale_found_booked_is_done(
    doc: WalletEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(lab: Lab) -> tuple[object, SaleRecord]:
        sale = lab.sale(ERIKA, maybe_sent=True, balance_before=750)
        with caplog.at_level(logging.INFO, logger=LOG):
            return await settle(lab, sale), sale

    booked, sale = on(doc, tmp_path, body)
    assert booked == Booked(500)
    assert [r.getMessage() for r in caplog.records if r.name == LOG] == [
        f"sale {sale.id} reconciled: the earlier attempt was booked"
    ]


@pytest.mark.parametrize("before", [None, 520])
def test_an_approved_sale_whose_balance_does_not_tell_is_held(
    doc: WalletEmulator, tmp_path: Path, before: int | None
) -> None:
    async def body(lab: Lab) -> tuple[object, str]:
        sale = lab.sale(ERIKA, maybe_sent=True, balance_before=before)
        return await settle(lab, sale), sale.idempotency_key

    held, key = on(doc, tmp_path, body)
    assert held == Unclear(
        f"unclear whether booked: balance 500, before the attempt {before}, amount -250; check the card's "
        f"wallet in pretix, then taptill settle {key} --booked (or --not-booked)"
    )


def test_an_approved_sale_not_booked_is_sent_again_on_the_balance_just_read(
    doc: WalletEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(lab: Lab) -> tuple[object, SaleRecord]:
        sale = lab.sale(ERIKA, maybe_sent=True, balance_before=500)
        with caplog.at_level(logging.INFO, logger=LOG):
            again = await settle(lab, sale)
        now = lab.journal.sale(sale.id)
        assert now is not None
        return again, now

    again, sale = on(doc, tmp_path, body)
    assert again == NotBooked(True, basis=500)
    assert sale.server_errors == 0  # no error answer to count
    assert [r.getMessage() for r in caplog.records if r.name == LOG] == [
        f"sale {sale.id} reconciled: the earlier attempt was not booked, sending again"
    ]


def test_an_error_answer_not_booked_is_sent_again_until_the_limit_then_its_product_is_unsellable(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> tuple[list[object], dict[str, tuple[str, str, str]]]:
        record = lab.sale(ERIKA, ["latte"], -350, maybe_sent=True, balance_before=500, last_status=500)
        results = [await settle(lab, record) for _ in range(3)]
        return results, lab.journal.unsellable()

    results, unsellable = on(doc, tmp_path, body, names=lambda pid: f"Artikel {pid}")
    detail = (
        "the server answered 500 to every attempt (3) and booked nothing; it cannot book Artikel latte (id "
        "latte): is the item in a pretix quota and active? (or was the server only busy: a debit of it "
        "booked sells it again)"
    )
    assert results == [
        NotBooked(True, basis=500),
        NotBooked(True, basis=500),
        NotBooked(False, detail, code=DeclineReason.BAD_PRODUCT),
    ]
    assert {pid: row[:2] for pid, row in unsellable.items()} == {"latte": ("Artikel latte", detail)}


def test_error_answers_of_a_cart_booked_before_name_the_cart_and_mark_nothing(
    doc: WalletEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(lab: Lab) -> tuple[object, SaleRecord, dict[str, tuple[str, str, str]]]:
        for product in ("espresso", "water"):
            lab.journal.mark_done(lab.sale(MAX, [product]).id, 1500)
        cart = lab.sale(ERIKA, ["espresso", "water", "espresso"], -650, maybe_sent=True, balance_before=500)
        cart = dataclasses.replace(cart, last_status=502)
        with caplog.at_level(logging.INFO, logger=LOG):
            return await settle(lab, cart), cart, lab.journal.unsellable()

    result, cart, unsellable = on(doc, tmp_path, body, limit=1)
    detail = (
        "the server answered 502 to every attempt (1) and booked nothing; the cart as a whole failed: the "
        "server booked each of its products before (espresso (id espresso), water (id water)), so none is "
        "marked unsellable"
    )
    assert result == NotBooked(False, detail, code=DeclineReason.SERVER_TROUBLE)
    assert unsellable == {}
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOG] == [
        ("ERROR", f"sale {cart.id} not booked: {detail}")
    ]


@pytest.mark.parametrize("amount", [-250, 250])
def test_booked_by_balance_compares_with_the_balance_before_the_attempt(
    doc: WalletEmulator, tmp_path: Path, amount: int
) -> None:
    async def body(lab: Lab) -> list[ByBalance]:
        sale = lab.sale(amount=amount, balance_before=1000)
        unknown = lab.sale(amount=amount)
        return [
            lab.dest.booked(sale, 1000 + amount),
            lab.dest.booked(sale, 1000),
            lab.dest.booked(unknown, 1000),
        ]

    assert on(doc, tmp_path, body) == [ByBalance.YES, ByBalance.NO, ByBalance.UNCLEAR]


# --- the products a failing server cannot book ----------------------------------------------------------


def test_the_suspects_of_a_sale_are_its_one_product_or_those_of_its_cart_never_booked(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> list[list[str]]:
        lab.journal.mark_done(lab.sale(MAX, ["espresso"]).id, 1750)
        return [
            lab.dest.suspects(lab.sale(products=["espresso"])),  # booked before, yet alone: it
            lab.dest.suspects(lab.sale(products=["espresso", "espresso"])),
            lab.dest.suspects(lab.sale(products=["latte", "espresso", "water", "latte"])),
            lab.dest.suspects(lab.sale(products=[1, "1"])),
        ]

    assert on(doc, tmp_path, body) == [["espresso"], ["espresso"], ["latte", "water"], ["1"]]


def test_unbooked_error_answers_are_counted_per_suspect_and_mark_them_at_the_limit(
    doc: WalletEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    told: list[frozenset[str]] = []

    async def body(lab: Lab) -> list[tuple[DeclineReason, str]]:
        lab.store.on_unsellable = told.append
        lab.journal.mark_done(lab.sale(MAX, ["1"]).id, 1750)
        cart = lab.sale(products=["1", "2", "3"])
        with caplog.at_level(logging.INFO, logger=LOG):
            first = lab.dest.failed_unbooked(cart, 500)
            assert (lab.store.unbooked_errors, told) == ({"2": 1, "3": 1}, [])
            second = lab.dest.failed_unbooked(cart, 500)
        assert lab.store.unbooked_errors == {"2": 2, "3": 2}
        return [first, second]

    verdicts = on(doc, tmp_path, body, limit=2, names=NAMES.__getitem__)
    declined = "the server answered its debit with 500 and booked nothing; the tap was declined"
    assert verdicts == [(DeclineReason.SERVER_TROUBLE, declined), (DeclineReason.BAD_PRODUCT, declined)]
    assert told == [frozenset({"2", "3"})]
    why = (
        "the server answered 500 to every attempt (2) and booked nothing; it cannot book Cappuccino (id 2), "
        "Latte Macchiato (id 3): is the item in a pretix quota and active? (or was the server only busy: a "
        "debit of it booked sells it again)"
    )
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOG] == [
        (
            "WARNING",
            "the server answered 500 to a debit of Cappuccino (id 2), Latte Macchiato (id 3) and booked "
            "nothing: 1 such answer(s) in a row; at 2 it is no longer sold",
        ),
        ("ERROR", f"not selling Cappuccino (id 2), Latte Macchiato (id 3) offline any more: {why}"),
    ]


def test_only_the_suspects_at_the_limit_are_marked(doc: WalletEmulator, tmp_path: Path) -> None:
    async def body(lab: Lab) -> tuple[tuple[DeclineReason, str], dict[str, tuple[str, str, str]]]:
        lab.store.unbooked_errors.update({"2": 2, "3": 1})
        verdict = lab.dest.failed_unbooked(lab.sale(products=["2", "3"]), 500)
        return verdict, lab.journal.unsellable()

    verdict, unsellable = on(doc, tmp_path, body, names=NAMES.__getitem__)
    assert verdict[0] is DeclineReason.BAD_PRODUCT
    assert {pid: row[0] for pid, row in unsellable.items()} == {"2": "Cappuccino"}


def test_error_answers_of_a_cart_booked_before_decline_the_tap_and_name_the_cart(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> tuple[tuple[DeclineReason, str], dict[str, int]]:
        lab.journal.mark_done(lab.sale(MAX, ["1", "2"]).id, 1750)
        verdict = lab.dest.failed_unbooked(lab.sale(products=["2", "1"]), 500)
        return verdict, lab.store.unbooked_errors

    verdict, counts = on(doc, tmp_path, body, limit=1, names=NAMES.__getitem__)
    assert verdict == (
        DeclineReason.SERVER_TROUBLE,
        "the server answered its debit with 500 and booked nothing; the tap was declined; the cart as a "
        "whole failed: the server booked each of its products before (Cappuccino (id 2), Espresso (id 1)), "
        "so none is marked unsellable",
    )
    assert counts == {}


# --- the probe that closes the circuit breaker ----------------------------------------------------------


def test_a_probe_answered_closes_the_breaker(doc: WalletEmulator, tmp_path: Path) -> None:
    async def body(lab: Lab) -> tuple[bool, bool]:
        return await lab.dest.probe(), lab.health.online

    assert on(doc, tmp_path, body) == (True, True)


def test_a_probe_with_a_refused_token_keeps_the_terminal_out_of_service(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> tuple[bool, str | None, bool]:
        return await lab.dest.probe(), lab.health.token_refused, lab.health.online

    assert on(doc, tmp_path, body, token="wrong", down=False) == (False, "Invalid token.", False)


def test_a_probe_answered_with_an_error_keeps_the_breaker_open(
    doc: WalletEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc.faults.inject(FaultKind.ERROR500_BEFORE, times=1, method="GET", route="terminal")

    async def body(lab: Lab) -> tuple[bool, bool, str]:
        with caplog.at_level(logging.WARNING, logger="terminal.wallet.health"):
            return await lab.dest.probe(), lab.health.online, lab.health.last_problem

    probed, online, problem = on(doc, tmp_path, body, down=False)
    assert (probed, online) == (False, False)
    assert problem.startswith("server error 500"), problem
    assert [r.getMessage() for r in caplog.records if r.name == "terminal.wallet.health"] == [
        f"wallet server answers with an error ({problem}): deciding taps offline"
    ]


def test_a_probe_keeps_within_its_own_time_limit_when_the_clients_is_longer(
    doc: WalletEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the probe's own limit, shortened to 0.3 s; the answer comes after a second, within the client's 2 s
    monkeypatch.setattr(destination, "PROBE_TIMEOUT_S", 0.3)
    doc.faults.inject(FaultKind.LATENCY, times=1, method="GET", route="terminal", ms=1000)

    async def body(lab: Lab) -> tuple[bool, bool]:
        return await lab.dest.probe(), lab.health.online

    assert on(doc, tmp_path, body) == (False, False)


def test_a_probe_keeps_within_the_clients_time_limit_when_it_is_short(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    # the probe's own limit (5 s) is longer than this client's (2 s): the client's holds
    doc.faults.inject(FaultKind.LATENCY, times=1, method="GET", route="terminal", ms=3000)

    async def body(lab: Lab) -> tuple[bool, bool]:
        return await lab.dest.probe(), lab.health.online

    assert on(doc, tmp_path, body) == (False, False)
