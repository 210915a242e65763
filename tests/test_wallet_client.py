"""WalletClient against both emulator flavours: every status and every fault kind maps to a typed outcome."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from terminal.service.secret import Secret
from terminal.wallet.client import MAX_BODY_BYTES, WalletClient
from terminal.wallet.outcomes import (
    Applied,
    Found,
    InfoLoaded,
    NotFound,
    Refused,
    Unauthorized,
    Unavailable,
)
from tests.raw_http import RawHttpServer, StaleKeepAliveServer, connect_never_completes, http_response
from tests.terminal_lab import EMPTY, ERIKA, MAX, SMALL, STRANGER, espresso

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def client_for(emu: WalletEmulator, **options: Any) -> WalletClient:
    return WalletClient(emu.base_url, Secret(emu.api_token), **{"timeout_s": 10.0, **options})


def unknown_product(flavour: str) -> str | int:
    return "nope" if flavour == "doc" else 999


async def debit(client: WalletClient, flavour: str, uid: str = MAX, key: str = "k" * 24) -> object:
    return await client.transact(
        uid, [espresso(flavour)], description="Kaffee", tag="coffee", idempotency_key=key
    )


def test_terminal_info_in_either_shape(wallet_server: WalletEmulator, flavour: str) -> None:
    async def scenario() -> object:
        client = client_for(wallet_server)
        try:
            return await client.terminal_info()
        finally:
            await client.aclose()

    res = run(scenario())
    assert isinstance(res, InfoLoaded)
    espresso_product = res.info.product(espresso(flavour))
    assert espresso_product is not None and espresso_product.price_cents == 250
    assert type(espresso_product.id) is type(espresso(flavour))
    if flavour == "doc":
        assert (res.info.id, res.info.friendly_name, res.info.permission) == (
            "coffee_machine",
            "Kaffeemaschine",
            "all",
        )
    else:
        # The real server lists products only: permission comes from the config default.
        assert (res.info.id, res.info.friendly_name, res.info.permission) == (None, None, "debit")


def test_the_real_servers_paginated_product_list_is_followed() -> None:
    products = [(i, f"Item {i}", 100 + i) for i in range(1, 121)]
    with WalletEmulator("real", products=products) as emu:

        async def scenario() -> object:
            client = client_for(emu, default_permission="credit")
            try:
                return await client.terminal_info()
            finally:
                await client.aclose()

        res = run(scenario())
        requests = emu.stats()["requests"]
    assert isinstance(res, InfoLoaded)
    assert [(p.id, p.price_cents) for p in res.info.products] == [(i, 100 + i) for i in range(1, 121)]
    assert res.info.permission == "credit"
    assert requests == 3  # 50 per page


def test_wallets_found_and_not_found(wallet_server: WalletEmulator) -> None:
    async def scenario() -> list[object]:
        client = client_for(wallet_server)
        try:
            return [await client.wallet(uid) for uid in (MAX, ERIKA, SMALL, EMPTY, STRANGER, MAX.lower())]
        finally:
            await client.aclose()

    found = run(scenario())
    assert [(r.wallet.token_id, r.wallet.balance_cents) for r in found[:4] if isinstance(r, Found)] == [
        (MAX, 2000),
        (ERIKA, 500),
        (SMALL, 100),
        (EMPTY, 0),
    ]
    assert isinstance(found[0], Found) and found[0].wallet.paired_user == "Max Mustermann"
    assert isinstance(found[2], Found) and found[2].wallet.paired_user is None  # "" and null alike
    assert isinstance(found[4], NotFound) and isinstance(found[5], NotFound)


def test_a_debit_is_applied_with_the_new_balance(wallet_server: WalletEmulator, flavour: str) -> None:
    async def scenario() -> object:
        client = client_for(wallet_server)
        try:
            return await debit(client, flavour)
        finally:
            await client.aclose()

    res = run(scenario())
    assert isinstance(res, Applied) and not res.already
    assert res.wallet is not None and res.wallet.balance_cents == 1750 == wallet_server.balance(MAX)
    booked = wallet_server.transactions()
    assert [(t.amount, t.idempotency_key, t.tag) for t in booked] == [(-250, "k" * 24, "coffee")]


def test_doc_repeated_key_is_applied_already_and_moves_no_money() -> None:
    with WalletEmulator.demo("doc") as emu:

        async def scenario() -> list[object]:
            client = client_for(emu)
            try:
                return [await debit(client, "doc") for _ in range(3)]
            finally:
                await client.aclose()

        results = run(scenario())
        assert [isinstance(r, Applied) and r.already for r in results] == [False, True, True]
        assert emu.balance(MAX) == 1750 and len(emu.transactions()) == 1


def test_refusals_are_definitive_and_book_nothing(wallet_server: WalletEmulator, flavour: str) -> None:
    async def scenario() -> list[object]:
        client = client_for(wallet_server)
        try:
            bad = await client.transact(
                MAX, [unknown_product(flavour)], description="d", tag=None, idempotency_key="b" * 24
            )
            empty = await client.transact(MAX, [], description="d", tag=None, idempotency_key="e" * 24)
            return [bad, empty]
        finally:
            await client.aclose()

    bad, empty = run(scenario())
    assert isinstance(bad, Refused) and bad.status == 400 and "products" in bad.reason
    assert empty == Refused(400, "no products")
    assert wallet_server.transactions() == [] and wallet_server.balance(MAX) == 2000


def test_doc_insufficient_balance_and_permission_are_refused() -> None:
    with WalletEmulator.demo("doc", permission="debit") as emu:

        async def scenario() -> list[object]:
            client = client_for(emu)
            try:
                poor = await debit(client, "doc", uid=SMALL)
                topup = await client.transact(
                    MAX, ["topup_10"], description="d", tag=None, idempotency_key="t" * 24
                )
                unknown = await debit(client, "doc", uid=STRANGER)
                return [poor, topup, unknown]
            finally:
                await client.aclose()

        poor, topup, unknown = run(scenario())
        assert poor == Refused(400, "Insufficient balance")
        assert isinstance(topup, Refused) and topup.status == 403
        assert isinstance(unknown, NotFound)
        assert emu.transactions() == []


def test_real_unknown_token_on_post_is_an_html_500_and_stays_ambiguous() -> None:
    with WalletEmulator.demo("real") as emu:
        res = run(_one_call(emu, lambda c: debit(c, "real", uid=STRANGER)))
        assert isinstance(res, Unavailable) and res.maybe_applied and "500" in res.reason
        assert emu.transactions() == []


def _one_call(emu: WalletEmulator, call: Any, **options: Any) -> Awaitable[Any]:
    async def scenario() -> object:
        client = client_for(emu, **options)
        try:
            return await call(client)
        finally:
            await client.aclose()

    return scenario()


def test_a_wrong_token_is_unauthorized_everywhere(wallet_server: WalletEmulator, flavour: str) -> None:
    async def scenario() -> list[object]:
        client = WalletClient(wallet_server.base_url, Secret("wrong-token"), timeout_s=10.0)
        try:
            return [await client.terminal_info(), await client.wallet(MAX), await debit(client, flavour)]
        finally:
            await client.aclose()

    assert [type(r) for r in run(scenario())] == [Unauthorized] * 3
    assert wallet_server.transactions() == []


def test_the_trailing_slash_is_learnt_from_the_real_servers_redirect() -> None:
    with WalletEmulator.demo("real") as emu:

        async def scenario() -> tuple[object, object, bool]:
            client = client_for(emu, trailing_slash=False)
            try:
                blind = await debit(client, "real", key="s" * 24)  # POST without slash: HTML 404
                found = await client.wallet(MAX)  # GET: 301 to the slash URL, learnt
                return blind, found, client.trailing_slash
            finally:
                await client.aclose()

        blind, found, slash = run(scenario())
        assert isinstance(blind, Unavailable) and not blind.maybe_applied
        assert isinstance(found, Found) and found.wallet.balance_cents == 2000 and slash is True
        assert emu.transactions() == []
        applied = run(_one_call(emu, lambda c: debit(c, "real"), trailing_slash=False))
        # a fresh client learns nothing from a POST; the real server charged nothing for it
        assert isinstance(applied, Unavailable) and emu.transactions() == []


def test_the_doc_server_keeps_urls_without_a_slash() -> None:
    with WalletEmulator.demo("doc", prefix="/wallet") as emu:

        async def scenario() -> tuple[object, bool]:
            client = client_for(emu)
            try:
                return await debit(client, "doc"), client.trailing_slash
            finally:
                await client.aclose()

        res, slash = run(scenario())
        assert isinstance(res, Applied) and slash is False


AMBIGUOUS = {
    FaultKind.DROP_BEFORE: False,  # applied?
    FaultKind.DROP_AFTER: True,
    FaultKind.ERROR500_BEFORE: False,
    FaultKind.ERROR500_AFTER: True,
    FaultKind.GARBAGE_HTML: False,
    FaultKind.GARBAGE_TRUNCATED: True,
    FaultKind.GARBAGE_CONTENT_TYPE: True,
    FaultKind.GARBAGE_OVERSIZED: True,
    FaultKind.HANG: False,
}


@pytest.mark.parametrize("kind", list(AMBIGUOUS))
def test_every_fault_on_a_debit_is_unavailable_and_maybe_applied(
    wallet_server: WalletEmulator, flavour: str, kind: FaultKind
) -> None:
    wallet_server.faults.inject(kind, times=1, method="POST", route="transaction", cap_s=10)
    res = run(_one_call(wallet_server, lambda c: debit(c, flavour), timeout_s=0.5))
    assert isinstance(res, Unavailable), res
    # the client cannot tell which of these the server applied: the sender must reconcile
    assert res.maybe_applied is True
    assert len(wallet_server.transactions()) == int(AMBIGUOUS[kind])
    assert wallet_server.faults.applied() == {kind.value: 1}


def test_429_is_unavailable_not_applied_with_retry_after(wallet_server: WalletEmulator, flavour: str) -> None:
    wallet_server.faults.inject(
        FaultKind.RATE_LIMIT_429, times=2, method="POST", route="transaction", retry_after=7
    )
    res = run(_one_call(wallet_server, lambda c: debit(c, flavour)))
    assert res == Unavailable("rate limited (429)", maybe_applied=False, retry_after_s=7.0)
    assert wallet_server.transactions() == []


@pytest.mark.parametrize("kind", [*AMBIGUOUS, FaultKind.RATE_LIMIT_429])
def test_every_fault_on_a_wallet_lookup_is_unavailable(
    wallet_server: WalletEmulator, kind: FaultKind
) -> None:
    # twice: a connection dropped unanswered is asked again once (the next test), and fails again here
    wallet_server.faults.inject(kind, times=2, method="GET", route="wallet", cap_s=10)
    res = run(_one_call(wallet_server, lambda c: c.wallet(MAX), timeout_s=0.5))
    assert isinstance(res, Unavailable), res


@pytest.mark.parametrize("kind", [FaultKind.DROP_BEFORE, FaultKind.DROP_AFTER])
def test_a_lookup_whose_connection_dropped_once_is_asked_again(
    wallet_server: WalletEmulator, kind: FaultKind
) -> None:
    wallet_server.faults.inject(kind, times=1, method="GET", route="wallet")
    res = run(_one_call(wallet_server, lambda c: c.wallet(MAX), timeout_s=2.0))
    assert isinstance(res, Found), res
    assert wallet_server.stats()["requests_by_route"]["wallet"] == 2


def test_latency_within_the_timeout_is_fine(wallet_server: WalletEmulator, flavour: str) -> None:
    wallet_server.faults.inject(FaultKind.LATENCY, ms=100, times=1, method="POST", route="transaction")
    res = run(_one_call(wallet_server, lambda c: debit(c, flavour), timeout_s=5.0))
    assert isinstance(res, Applied)


def test_a_per_call_timeout_overrides_the_default(wallet_server: WalletEmulator) -> None:
    wallet_server.faults.inject(FaultKind.HANG, times=1, method="GET", route="wallet", cap_s=10)
    res = run(_one_call(wallet_server, lambda c: c.wallet(MAX, timeout=0.2), timeout_s=30.0))
    assert res == Unavailable("no complete answer within 0.2 s")


def test_connection_refused_is_unavailable_and_provably_not_applied() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client_url = f"http://127.0.0.1:{port}/api/v1/organizers/o/events/e/wallet"

    async def scenario() -> list[object]:
        client = WalletClient(client_url, Secret("x"), timeout_s=1.0)
        try:
            return [await debit(client, "doc"), await client.wallet(MAX), await client.terminal_info()]
        finally:
            await client.aclose()

    for res in run(scenario()):
        assert isinstance(res, Unavailable) and res.maybe_applied is False, res


def test_a_burst_of_calls_opens_at_most_four_connections(wallet_server: WalletEmulator) -> None:
    """Eight lookups at once, each answered after 300 ms: four connections carry them (the rest wait for
    one), so a terminal never floods a small server with connections."""
    wallet_server.faults.inject(FaultKind.LATENCY, ms=300, method="GET", times=8)

    async def scenario() -> list[object]:
        client = client_for(wallet_server)
        try:
            return list(await asyncio.gather(*(client.wallet(MAX) for _ in range(8))))
        finally:
            await client.aclose()

    assert all(isinstance(found, Found) for found in run(scenario()))
    assert wallet_server.connections_accepted == 4


def test_a_base_url_loses_only_its_trailing_slashes() -> None:
    """An event slug may end in any letter: only the slashes after it go."""
    base = "http://127.0.0.1:9/api/v1/organizers/fsr/events/BOX"
    for given in (base, base + "/", base + "//"):
        assert WalletClient(given, Secret("t"), timeout_s=1.0).base_url == base


def test_one_keep_alive_connection_serves_many_calls(wallet_server: WalletEmulator, flavour: str) -> None:
    async def scenario() -> None:
        client = client_for(wallet_server)
        try:
            assert isinstance(await client.terminal_info(), InfoLoaded)
            for i in range(5):
                assert isinstance(await client.wallet(MAX), Found)
                assert isinstance(await debit(client, flavour, key=f"{i}" * 24), Applied)
            assert isinstance(await client.wallet(STRANGER), NotFound)
        finally:
            await client.aclose()

    run(scenario())
    assert wallet_server.connections_accepted == 1
    assert wallet_server.balance(MAX) == 2000 - 5 * 250


def test_the_token_never_appears_in_logs_or_outcomes(
    wallet_server: WalletEmulator, flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = wallet_server.api_token
    wallet_server.faults.inject(FaultKind.ERROR500_BEFORE, times=1, method="POST", route="transaction")
    wallet_server.faults.inject(FaultKind.DROP_BEFORE, times=1, method="GET", route="wallet")

    async def scenario() -> list[object]:
        client = client_for(wallet_server, trailing_slash=False)
        try:
            results: list[object] = [client, client._http.headers]
            results.append(await debit(client, flavour))
            results.append(await client.wallet(MAX))
            results.append(await client.wallet(MAX))
            results.append(await client.terminal_info())
            wrong = WalletClient(wallet_server.base_url, Secret(token + "x"), timeout_s=10.0)
            results.append(await wrong.wallet(MAX))
            await wrong.aclose()
            return results
        finally:
            await client.aclose()

    with caplog.at_level(logging.DEBUG):
        results = run(scenario())
    assert caplog.records  # httpx/httpcore did log at debug level
    assert token not in caplog.text
    for res in results:
        assert token not in repr(res) and token not in str(res)


# -- bodies the emulators never send: a raw socket server answers --------------------------------------


WALLET_JSON = json.dumps({"id": 1, "token_id": MAX, "balance": 1750, "paired_user": ""}).encode()
# The same answer for another card (ERIKA), and for this one spelt as a server may spell a UID.
OTHER_JSON = json.dumps({"id": 2, "token_id": ERIKA, "balance": 250, "paired_user": ""}).encode()
SPELT_JSON = json.dumps({"id": 1, "token_id": "04:a1:b2:c3:d4:e5:f6", "balance": 1750}).encode()


def may_be_booked(res: object) -> bool:
    """Whether the debit may have been booked: what decides between sending again and reconciling.

    Applied was; a definitive answer (refused, unknown card, wrong API token) booked nothing; an
    Unavailable says so itself.
    """
    if isinstance(res, Applied):
        return True
    if isinstance(res, Unavailable):
        return res.maybe_applied
    assert isinstance(res, Refused | NotFound | Unauthorized), res
    return False


# (raw answer, outcome type, whether the debit may have been booked)
@pytest.mark.parametrize(
    ("answer", "expected", "maybe_booked"),
    [
        (http_response(201, WALLET_JSON), Applied, True),
        (http_response(200, json.dumps({"data": json.loads(WALLET_JSON)}).encode()), Applied, True),
        (http_response(201, SPELT_JSON), Applied, True),
        (http_response(202, b"<html>already</html>", "text/html"), Applied, True),
        (http_response(202, b""), Applied, True),
        (http_response(201, OTHER_JSON), Unavailable, True),
        (http_response(202, OTHER_JSON), Unavailable, True),
        (http_response(201, b"{}"), Unavailable, True),
        (http_response(201, b"<html>ok</html>", "text/html"), Unavailable, True),
        (http_response(201, WALLET_JSON, "text/plain"), Unavailable, True),
        (http_response(201, WALLET_JSON + b" " * MAX_BODY_BYTES), Unavailable, True),
        (http_response(201, b"[" * 100_000), Unavailable, True),
        (http_response(201, b'{"balance": 1.5, "token_id": "X"}'), Unavailable, True),
        (http_response(403, b'{"detail": "This terminal may not debit."}'), Refused, False),
        (http_response(409, b'{"detail": "conflict"}'), Refused, False),
        (http_response(404, b'{"detail": "Not found."}'), NotFound, False),
        (http_response(404, b"<h1>Please append a /</h1>", "text/html"), Unavailable, False),
        (http_response(400, b"<h1>Bad Request</h1>", "text/html"), Unavailable, True),
        (http_response(401, b"<h1>login</h1>", "text/html"), Unauthorized, False),
        (http_response(429, b"{}", Retry_After="3"), Unavailable, False),
        (http_response(502, b"<h1>Bad Gateway</h1>", "text/html"), Unavailable, True),
        (http_response(302, b"", "text/html", Location="http://portal.example/"), Unavailable, True),
        (b'HTTP/1.1 201 Created\r\nContent-Length: 500\r\n\r\n{"balance"', Unavailable, True),
        (b"this is not http at all\r\n\r\n", Unavailable, True),
        (b"", Unavailable, True),
    ],
)
def test_odd_transaction_answers_map_to_typed_outcomes(
    answer: bytes, expected: type, maybe_booked: bool
) -> None:
    with RawHttpServer([answer]) as server:

        async def scenario() -> object:
            client = WalletClient(server.base_url, Secret("t"), timeout_s=2.0)
            try:
                return await debit(client, "doc")
            finally:
                await client.aclose()

        res = run(scenario())
    assert isinstance(res, expected), res
    assert may_be_booked(res) is maybe_booked, res
    if isinstance(res, Applied) and res.wallet is not None:
        assert res.wallet.balance_cents == 1750


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (http_response(200, WALLET_JSON), Found),
        (http_response(200, SPELT_JSON), Found),
        (http_response(200, OTHER_JSON), Unavailable),
        (http_response(403, b'{"detail": "no"}'), Refused),
        (http_response(404, b"<html>captive portal: not found</html>", "text/html"), Unavailable),
        (http_response(200, b"<html>portal</html>", "text/html"), Unavailable),
        (http_response(418, b"<html>teapot</html>", "text/html"), Unavailable),
        (http_response(429, b"{}", Retry_After="Wed, 21 Oct 2015 07:28:00 GMT"), Unavailable),
    ],
)
def test_odd_wallet_answers_map_to_typed_outcomes(answer: bytes, expected: type) -> None:
    # An HTML 404 is a proxy or a wrong URL, not the API saying "unknown card": treating it as
    # NotFound would reject (and lose) a sale and put a good card on the deny list. Another card's
    # wallet is not this card's balance: shown to the guest, or read to reconcile this card's sale, it
    # would be wrong.
    with RawHttpServer([answer]) as server:

        async def scenario() -> object:
            client = WalletClient(server.base_url, Secret("t"), timeout_s=2.0)
            try:
                return await client.wallet(MAX)
            finally:
                await client.aclose()

        res = run(scenario())
    assert isinstance(res, expected), res
    if isinstance(res, Found):
        assert res.wallet.balance_cents == 1750
    if isinstance(res, Unavailable) and "429" in res.reason:
        assert res.retry_after_s == 0.0 and res.maybe_applied is False  # a date in the past


@pytest.mark.parametrize(
    "next_url",
    ["http://[broken", "http://evil.example/steal?page=2", "/relative?page=2", "file:///etc/passwd"],
)
def test_a_product_page_pointing_elsewhere_is_not_followed(next_url: str) -> None:
    page = {"links": {"next": next_url}, "data": {"products": [{"id": 1, "price": 250}]}}
    with RawHttpServer([http_response(200, json.dumps(page).encode())]) as server:

        async def scenario() -> object:
            client = WalletClient(server.base_url, Secret("t"), timeout_s=2.0)
            try:
                return await client.terminal_info()
            finally:
                await client.aclose()

        res = run(scenario())
        assert isinstance(res, Unavailable), res
        assert server.served == 1


def test_a_same_host_product_page_with_an_invalid_url_is_unavailable() -> None:
    with RawHttpServer([b""]) as server:
        page = {
            "links": {"next": server.base_url + "/pos/terminal/\x01\u2028?page=2"},
            "data": {"products": []},
        }
        server.answers = [http_response(200, json.dumps(page).encode())]

        async def scenario() -> object:
            client = WalletClient(server.base_url, Secret("t"), timeout_s=2.0)
            try:
                return await client.terminal_info()
            finally:
                await client.aclose()

        res = run(scenario())
        assert isinstance(res, Unavailable), res


# -- an overall deadline: a server that drips its answer a byte at a time -------------------------------

DEADLINE_S = 1.0
SLACK_S = 5.0  # generous for a loaded machine; a 100 ms drip of any answer here lasts over 20 s
DRIPPING_CALLS: dict[str, tuple[str, str, Any]] = {
    "wallet": ("GET", "wallet", lambda c, flavour: c.wallet(MAX)),
    "terminal_info": ("GET", "terminal", lambda c, flavour: c.terminal_info()),
    "debit": ("POST", "transaction", lambda c, flavour: debit(c, flavour)),
}


@pytest.mark.parametrize(("kind", "booked"), [(FaultKind.DRIP_AFTER, 1), (FaultKind.DRIP_BEFORE, 0)])
@pytest.mark.parametrize("call", list(DRIPPING_CALLS))
def test_a_dripping_answer_ends_the_call_at_its_deadline(
    wallet_server: WalletEmulator, flavour: str, call: str, kind: FaultKind, booked: int
) -> None:
    method, route, make = DRIPPING_CALLS[call]
    wallet_server.faults.inject(kind, ms=100, cap_s=60, times=1, method=method, route=route)
    started = time.monotonic()
    res = run(_one_call(wallet_server, lambda c: make(c, flavour), timeout_s=DEADLINE_S))
    elapsed = time.monotonic() - started
    assert res == Unavailable(f"no complete answer within {DEADLINE_S:g} s", maybe_applied=True)
    assert DEADLINE_S <= elapsed <= DEADLINE_S + SLACK_S
    # After the server applied a debit the terminal must reconcile; before, nothing was charged.
    assert len(wallet_server.transactions()) == (booked if call == "debit" else 0)
    assert wallet_server.faults.applied() == {kind.value: 1}


def test_the_deadline_spans_every_product_page() -> None:
    products = [(i, f"Item {i}", 100 + i) for i in range(1, 121)]  # three pages of 50
    with WalletEmulator("real", products=products) as emu:
        emu.faults.inject(FaultKind.LATENCY, ms=450, route="terminal")  # each page in time, not all three
        started = time.monotonic()
        res = run(_one_call(emu, lambda c: c.terminal_info(timeout=DEADLINE_S), timeout_s=30.0))
        elapsed = time.monotonic() - started
        pages = emu.stats()["requests"]
    assert res == Unavailable(f"no complete answer within {DEADLINE_S:g} s", maybe_applied=True)
    assert DEADLINE_S <= elapsed <= DEADLINE_S + SLACK_S
    assert pages == 3


def test_a_deadline_that_strikes_while_connecting_is_provably_not_applied() -> None:
    with connect_never_completes() as port:
        url = f"http://127.0.0.1:{port}/api/v1/organizers/o/events/e/wallet"

        async def scenario() -> object:
            client = WalletClient(url, Secret("x"), timeout_s=0.5)
            try:
                return await debit(client, "real")
            finally:
                await client.aclose()

        started = time.monotonic()
        res = run(scenario())
        elapsed = time.monotonic() - started
    assert isinstance(res, Unavailable) and res.maybe_applied is False, res
    assert 0.5 <= elapsed <= 0.5 + SLACK_S


def test_a_debit_never_outlives_the_clients_timeout_which_the_reconcile_window_relies_on() -> None:
    with WalletEmulator.demo("doc") as emu:
        emu.faults.inject(FaultKind.DRIP_AFTER, ms=100, cap_s=60, times=1, method="POST", route="transaction")

        async def long_debit(client: WalletClient) -> object:
            return await client.transact(
                MAX, ["espresso"], description="Kaffee", tag=None, idempotency_key="k" * 24, timeout=30.0
            )

        started = time.monotonic()
        res = run(_one_call(emu, long_debit, timeout_s=DEADLINE_S))
        elapsed = time.monotonic() - started
        booked = len(emu.transactions())
    assert res == Unavailable(f"no complete answer within {DEADLINE_S:g} s", maybe_applied=True)
    assert DEADLINE_S <= elapsed <= DEADLINE_S + SLACK_S
    assert booked == 1


@pytest.mark.parametrize(
    ("location", "said"),
    [
        (
            "https://pretix.example/api/wallet/pos/terminal",
            '; put base_url = "https://pretix.example/api/wallet" in',
        ),
        ("/elsewhere", " redirects to http://127.0.0.1:{port}/elsewhere; put the wallet API's URL in"),
        ("", " keeps redirecting to itself; check [wallet] base_url"),
        (
            "/wallet/pos/terminal/",
            " keeps redirecting to itself; check [wallet] base_url",
        ),  # slash, then again
        ("http://[", " redirects to 'http://[', not a URL; check [wallet] base_url"),
    ],
)
def test_a_redirect_of_the_terminal_info_says_where_to(location: str, said: str) -> None:
    with RawHttpServer([http_response(301, b"", "text/html", Location=location)]) as server:

        async def scenario() -> object:
            client = WalletClient(server.base_url, Secret("t"), timeout_s=2.0)
            try:
                return await client.terminal_info()
            finally:
                await client.aclose()

        res = run(scenario())
        port = server.base_url.split(":")[2].split("/")[0]
    assert isinstance(res, Refused) and res.status == 301, res
    assert res.reason.startswith(server.base_url) and said.format(port=port) in res.reason, res.reason


def test_a_lookup_on_a_connection_the_server_dropped_is_asked_again_but_a_debit_never() -> None:
    """A kept-alive connection closed by the server just as it is reused: the balance GET is asked again
    on a fresh connection (it moves no money); the debit POST is not repeated, and may have arrived."""
    wallet = json.dumps({"token_id": MAX, "balance": 500, "paired_user": ""}).encode()
    with StaleKeepAliveServer(http_response(200, wallet)) as server:

        async def scenario() -> tuple[object, object, object]:
            client = WalletClient(server.base_url, Secret("t"), timeout_s=2.0, trailing_slash=False)
            try:
                first = await client.wallet(MAX)
                again = await client.wallet(MAX)  # reuses the connection the server drops
                debit = await client.transact(MAX, ["1"], description="x", tag=None, idempotency_key="k1")
                return first, again, debit
            finally:
                await client.aclose()

        first, again, debit = run(scenario())
    assert isinstance(first, Found) and isinstance(again, Found), (first, again)
    assert isinstance(debit, Unavailable) and debit.maybe_applied, debit
    posts = [line for line in server.requests if line.startswith("POST")]
    assert len(posts) == 1, server.requests
    assert [line.split()[0] for line in server.requests] == ["GET", "GET", "GET", "POST"], server.requests


@pytest.mark.parametrize(("call", "asked"), [("lookup", 2), ("debit", 1)])
def test_a_server_that_drops_every_request_is_asked_a_lookup_twice_and_a_debit_once(
    call: str, asked: int
) -> None:
    """The clients' rule is the only resend: a GET once more, a POST never (aiohttp's own resend of an
    idempotent request on a dropped connection is off, or a lookup would be asked four times)."""
    with RawHttpServer([b""]) as server:  # every connection closed with no answer

        async def scenario() -> object:
            client = WalletClient(server.base_url, Secret("t"), timeout_s=2.0, trailing_slash=False)
            try:
                if call == "lookup":
                    return await client.wallet(MAX)
                return await client.transact(MAX, ["1"], description="x", tag=None, idempotency_key="k1")
            finally:
                await client.aclose()

        res = run(scenario())
        served = server.served
    assert res == Unavailable("connection trouble (ServerDisconnectedError)", maybe_applied=True), res
    assert served == asked
