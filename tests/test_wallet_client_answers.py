"""WalletClient's outcomes compared whole, against canned answers on 127.0.0.1.

test_wallet_client.py shows every fault and status reaching the right outcome *type*; here each outcome is
compared field by field, because each field is acted on: ``maybe_applied`` decides whether a debit is sent
again or reconciled by balance, ``retry_after_s`` how long the outbox waits, ``status`` whether the server
counts as up, and the reason is what the operator reads in the log, ``taptill queue`` and ``doctor``. Also:
what a request carries (path, body, headers), which redirects teach the slash style, how far a product list
is followed, and that a call ends at its own deadline.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from terminal.model import Product, TerminalInfo, Wallet
from terminal.service.secret import Secret
from terminal.wallet.client import WalletClient
from terminal.wallet.outcomes import (
    Applied,
    Found,
    InfoLoaded,
    NotFound,
    Refused,
    Unauthorized,
    Unavailable,
)
from tests.raw_http import RawHttpServer, connect_never_completes, http_response
from tests.terminal_lab import ERIKA, MAX

T = TypeVar("T")
Call = Callable[[WalletClient], Awaitable[Any]]

WALLET = {"id": 1, "token_id": MAX, "balance": 1750, "paired_user": ""}
MAX_WALLET = Wallet(token_id=MAX, balance_cents=1750, paired_user=None, id="1")
PRETIX = "/api/v1/organizers/o/events/e/wallet"  # a real pretix prefix: the slash is guessed from it


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def raw(status: int, headers: str, content: bytes = b"") -> bytes:
    """An answer with exactly ``headers`` (CRLF-separated lines, no Content-Length) and ``content``."""
    head = f"HTTP/1.1 {status} X\r\n{headers}Content-Length: {len(content)}\r\n\r\n"
    return head.encode("latin-1") + content


def ask(
    answers: list[bytes],
    call: Call,
    *,
    prefix: str = "/wallet",
    server_class: type[RawHttpServer] = RawHttpServer,
    **options: Any,
) -> tuple[Any, RawHttpServer, WalletClient]:
    """``call`` on a client of a server answering ``answers`` in turn (the last one repeats)."""
    options.setdefault("timeout_s", 2.0)
    with server_class(answers) as server:
        server.answers = answers  # the same list: a call may fill it in once it knows the server's URL
        base = server.base_url.removesuffix("/wallet") + prefix
        client = WalletClient(base, Secret("t"), **options)

        async def scenario() -> object:
            try:
                return await call(client)
            finally:
                await client.aclose()

        res = asyncio.run(scenario())
    return res, server, client


def lookup(client: WalletClient) -> Awaitable[Any]:
    return client.wallet(MAX)


def debit(client: WalletClient) -> Awaitable[Any]:
    return client.transact(MAX, ["espresso"], description="Kaffee", tag="coffee", idempotency_key="k" * 24)


def info(client: WalletClient) -> Awaitable[Any]:
    return client.terminal_info()


def request_line(request: bytes) -> str:
    return request.split(b"\r\n", 1)[0].decode("latin-1")


def request_headers(request: bytes) -> dict[str, str]:
    head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head)}


def request_body(request: bytes) -> object:
    return json.loads(request.split(b"\r\n\r\n", 1)[1])


# -- Retry-After: how long the outbox waits before the next attempt --------------------------------------


def http_date(offset_s: float) -> str:
    return email.utils.formatdate(time.time() + offset_s, usegmt=True)


@pytest.mark.parametrize(
    ("value", "wait"),
    [
        ("7", 7.0),
        ("0", 0.0),  # at once, not a second later
        ("-5", 0.0),  # never a negative wait
        ("3600", 3600.0),
        ("99999", 3600.0),  # at most an hour
        ("soon", None),
        (None, None),
        (-600.0, 0.0),  # an HTTP date that long from now (made when the test runs: a date made at
        (86400.0, 3600.0),  # collection would name the case differently in each xdist worker)
    ],
)
def test_retry_after_of_a_429_is_the_servers_wait_within_an_hour(
    value: str | float | None, wait: float | None
) -> None:
    said = http_date(value) if isinstance(value, float) else value
    headers = {} if said is None else {"Retry_After": said}
    res, _, _ = ask([http_response(429, b"{}", **headers)], debit)
    # never arrived: the debit may be sent again as it is, after the server's wait
    assert res == Unavailable("rate limited (429)", maybe_applied=False, retry_after_s=wait)


def test_retry_after_as_a_date_ahead_is_the_seconds_until_then() -> None:
    res, _, _ = ask([http_response(503, b"{}", Retry_After=http_date(120))], lookup)
    assert isinstance(res, Unavailable) and res.retry_after_s is not None
    assert 100.0 <= res.retry_after_s <= 120.0, res
    assert res == Unavailable("server error 503", retry_after_s=res.retry_after_s, status=503)


# -- statuses every call treats alike ---------------------------------------------------------------------


@pytest.mark.parametrize("call", [lookup, debit, info])
def test_server_errors_keep_their_status_and_may_have_been_applied(call: Call) -> None:
    res, _, _ = ask([http_response(502, b"<h1>Bad Gateway</h1>", "text/html", Retry_After="3")], call)
    assert res == Unavailable("server error 502", maybe_applied=True, retry_after_s=3.0, status=502)


def test_a_500_is_a_server_error_like_any_5xx() -> None:
    lookup_500, _, _ = ask([http_response(500, b"{}")], lookup)
    assert lookup_500 == Unavailable("server error 500", status=500)
    debit_500, _, _ = ask([http_response(500, b"{}")], debit)
    assert debit_500 == Unavailable("server error 500", maybe_applied=True, status=500)


@pytest.mark.parametrize("call", [lookup, debit, info])
def test_a_401_says_why_or_to_check_the_token(call: Call) -> None:
    said, _, _ = ask([http_response(401, b'{"detail": "Invalid token."}')], call)
    assert said == Unauthorized("Invalid token.")
    silent, _, _ = ask([http_response(401, b"<h1>login</h1>", "text/html")], call)
    assert silent == Unauthorized("check the wallet API token")


# -- the balance lookup ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"],
)
def test_a_wallet_in_any_json_content_type_is_found(content_type: str) -> None:
    res, server, _ = ask([http_response(200, body(WALLET), content_type)], lookup)
    assert res == Found(MAX_WALLET)
    assert request_line(server.requests[0]) == f"GET /wallet/pos/wallets/token/{MAX} HTTP/1.1"
    # a lookup carries no body (a proxy may refuse a GET with one)
    assert server.requests[0].endswith(b"\r\n\r\n") and "content-type" not in request_headers(
        server.requests[0]
    )


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (http_response(200, body(WALLET), "text/html"), "wallet: not JSON (text/html)"),
        (raw(200, "", body(WALLET)), "wallet: not JSON (no content type)"),
        (http_response(200, body(WALLET), "text/" + "x" * 100), "wallet: not JSON (text/" + "x" * 55 + ")"),
        (http_response(200, body(WALLET), "text/\x1b[31mred"), "wallet: not JSON (text/red)"),
        (http_response(200, b'{"token_id": "\xff"}'), "wallet: malformed JSON"),
        (http_response(200, b'{"token_id": '), "wallet: malformed JSON"),
        (http_response(200, b"[]"), "wallet: wallet body is not an object"),
        (http_response(200, b'{"balance": 5}'), "wallet: wallet has no token_id"),
        (http_response(200, b"{}" + b" " * 300_000), "wallet: body over 262144 bytes"),
        (http_response(418, b"<h1>teapot</h1>", "text/html"), "unexpected status 418"),
        (http_response(400, b"<h1>Bad Request</h1>", "text/html"), "unexpected status 400"),
        (http_response(300, b'{"detail": "choose"}'), "unexpected status 300"),
    ],
)
def test_a_lookup_answer_that_is_not_the_apis_is_unavailable_with_why(answer: bytes, reason: str) -> None:
    res, _, _ = ask([answer], lookup)
    assert res == Unavailable(reason)


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (http_response(404, b'{"detail": "Not found."}'), NotFound("Not found.")),
        (http_response(404, b"{}"), NotFound("token not paired to a wallet")),
        (http_response(403, b'{"detail": "no"}'), Refused(403, "no")),
        (http_response(403, b"<h1>Forbidden</h1>", "text/html"), Refused(403, "permission")),
        (http_response(400, b'{"detail": "bad token"}'), Refused(400, "bad token")),
        (http_response(400, b"{}"), Refused(400, "status 400")),
        (http_response(499, b"{}"), Refused(499, "status 499")),
        # An HTML 404 is a proxy or a wrong URL, not the API's "unknown card"; it reached no wallet.
        (
            http_response(404, b"<h1>nope</h1>", "text/html"),
            Unavailable("404 that is not the API's (not JSON (text/html))", maybe_applied=False),
        ),
        # Another card's balance is never this card's (shown to the guest, reconciled against its sales).
        (
            http_response(200, body({**WALLET, "token_id": ERIKA})),
            Unavailable("wallet: the answer is for another token", maybe_applied=False),
        ),
    ],
)
def test_a_lookup_answer_maps_to_its_outcome(answer: bytes, outcome: object) -> None:
    res, _, _ = ask([answer], lookup)
    assert res == outcome


def test_a_token_is_one_path_segment_however_it_is_spelt() -> None:
    _, server, _ = ask([http_response(404, b"{}")], lambda c: c.wallet("04/A?B"))
    assert request_line(server.requests[0]) == "GET /wallet/pos/wallets/token/04%2FA%3FB HTTP/1.1"


def test_the_base_url_may_end_with_a_slash() -> None:
    _, server, _ = ask([http_response(200, body(WALLET))], lookup, prefix="/wallet/")
    assert request_line(server.requests[0]) == f"GET /wallet/pos/wallets/token/{MAX} HTTP/1.1"


# -- the trailing slash: guessed from a pretix prefix, learnt from a redirect to the same URL --------------


def test_a_pretix_prefix_is_asked_with_a_trailing_slash_at_once() -> None:
    res, server, client = ask([http_response(200, body(WALLET))], lookup, prefix=PRETIX)
    assert res == Found(MAX_WALLET) and client.trailing_slash is True
    assert request_line(server.requests[0]) == f"GET {PRETIX}/pos/wallets/token/{MAX}/ HTTP/1.1"


@pytest.mark.parametrize("status", [301, 308])
@pytest.mark.parametrize("absolute", [True, False])
def test_a_redirect_to_the_slash_url_teaches_the_slash(
    status: int, absolute: bool, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/wallet/pos/wallets/token/{MAX}/"
    answers = [b"", http_response(200, body(WALLET))]

    def call(client: WalletClient) -> Awaitable[Any]:
        origin = client.base_url.removesuffix("/wallet")
        answers[0] = http_response(status, b"", "text/html", Location=(origin if absolute else "") + path)
        return client.wallet(MAX)

    with caplog.at_level(logging.INFO, logger="terminal.wallet.client"):
        res, server, client = ask(answers, call, trailing_slash=False)
    assert res == Found(MAX_WALLET) and client.trailing_slash is True
    assert [request_line(r) for r in server.requests] == [
        f"GET /wallet/pos/wallets/token/{MAX} HTTP/1.1",
        f"GET {path} HTTP/1.1",
    ]
    assert caplog.messages == ["wallet server wants a trailing slash"]


def test_a_redirect_to_another_tokens_url_is_not_followed() -> None:
    answer = http_response(301, b"", "text/html", Location="/wallet/pos/wallets/token/04A1/")
    res, server, _ = ask([answer, http_response(200, body(WALLET))], lambda c: c.wallet("04A1X"))
    assert res == Unavailable("unexpected status 301") and server.served == 1


def test_a_redirect_to_the_url_without_a_slash_unlearns_it(caplog: pytest.LogCaptureFixture) -> None:
    answers = [
        http_response(308, b"", "text/html", Location=f"{PRETIX}/pos/wallets/token/{MAX}"),
        http_response(200, body(WALLET)),
    ]
    with caplog.at_level(logging.INFO, logger="terminal.wallet.client"):
        res, server, client = ask(answers, lookup, prefix=PRETIX)
    assert res == Found(MAX_WALLET) and client.trailing_slash is False
    assert request_line(server.requests[1]) == f"GET {PRETIX}/pos/wallets/token/{MAX} HTTP/1.1"
    assert caplog.messages == ["wallet server wants no trailing slash"]


@pytest.mark.parametrize(
    ("status", "location"),
    [
        (302, f"/wallet/pos/wallets/token/{MAX}/"),  # only a permanent redirect says the URL's style
        (307, f"/wallet/pos/wallets/token/{MAX}/"),
        (301, f"https://127.0.0.1/wallet/pos/wallets/token/{MAX}/"),  # another origin
        (301, f"/elsewhere/pos/wallets/token/{MAX}/"),  # another path
        (301, f"/wallet/pos/wallets/token/{MAX}X/"),  # another token's
        (301, "http://["),  # not a URL
    ],
)
def test_any_other_redirect_of_a_lookup_is_not_followed(status: int, location: str) -> None:
    answer = http_response(status, b"", "text/html", Location=location)
    res, server, client = ask([answer, http_response(200, body(WALLET))], lookup, trailing_slash=False)
    assert res == Unavailable(f"unexpected status {status}")
    assert server.served == 1 and client.trailing_slash is False


# -- the debit: what it sends, and whether an answer may mean it was booked ---------------------------------


def test_a_debit_sends_its_products_description_tag_and_key_as_json() -> None:
    res, server, _ = ask([http_response(201, body(WALLET))], debit)
    assert res == Applied(MAX_WALLET, already=False)
    (request,) = server.requests
    assert request_line(request) == f"POST /wallet/pos/wallets/token/{MAX}/transactions HTTP/1.1"
    assert request_headers(request)["content-type"] == "application/json"
    assert request_body(request) == {
        "products": ["espresso"],
        "description": "Kaffee",
        "idempotency_key": "k" * 24,
        "tag": "coffee",
    }


@pytest.mark.parametrize("tag", [None, ""])
def test_a_debit_without_a_tag_sends_none(tag: str | None) -> None:
    def call(client: WalletClient) -> Awaitable[Any]:
        return client.transact("04/A", [1, 2], description="d", tag=tag, idempotency_key="k" * 24)

    _, server, _ = ask([http_response(404, b"{}")], call, prefix=PRETIX)
    (request,) = server.requests
    assert request_line(request) == f"POST {PRETIX}/pos/wallets/token/04%2FA/transactions/ HTTP/1.1"
    assert request_body(request) == {"products": [1, 2], "description": "d", "idempotency_key": "k" * 24}


def test_an_empty_debit_is_refused_without_a_request() -> None:
    def call(client: WalletClient) -> Awaitable[Any]:
        return client.transact(MAX, [], description="d", tag=None, idempotency_key="k" * 24)

    res, server, _ = ask([http_response(201, body(WALLET))], call)
    assert res == Refused(400, "no products") and server.served == 0


OTHER_CARD = body({**WALLET, "token_id": ERIKA})


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (http_response(200, body(WALLET)), Applied(MAX_WALLET, already=False)),
        (http_response(201, body({"data": WALLET})), Applied(MAX_WALLET, already=False)),
        (http_response(202, body(WALLET)), Applied(MAX_WALLET, already=True)),
        (http_response(202, b"{}"), Applied(None, already=True)),
        (http_response(202, b"<p>already</p>", "text/html"), Applied(None, already=True)),
        # booked, maybe: reconciled, never sent again as new
        (http_response(201, b"{}"), Unavailable("transaction answer is not a wallet", maybe_applied=True)),
        (
            http_response(201, b"<p>ok</p>", "text/html"),
            Unavailable("transaction answer 201: not JSON (text/html)", maybe_applied=True),
        ),
        (
            http_response(200, b"[" * 100_000),
            Unavailable("transaction answer 200: malformed JSON", maybe_applied=True),
        ),
        (
            http_response(201, OTHER_CARD),
            Unavailable("transaction answer is for another token", maybe_applied=True),
        ),
        (
            http_response(202, OTHER_CARD),
            Unavailable("transaction answer is for another token", maybe_applied=True),
        ),
        (
            http_response(203, body(WALLET)),
            Unavailable("unexpected status 203: no detail", maybe_applied=True),
        ),
        (http_response(418, b"{}"), Unavailable("unexpected status 418: no detail", maybe_applied=True)),
        (
            http_response(400, b"<h1>Bad Request</h1>", "text/html"),
            Unavailable("unexpected status 400: not JSON (text/html)", maybe_applied=True),
        ),
        # definitive: nothing was booked
        (http_response(404, b'{"detail": "Not found."}'), NotFound("Not found.")),
        (http_response(404, b"{}"), NotFound("token not paired to a wallet")),
        (
            http_response(404, b"<h1>append a /</h1>", "text/html"),
            Unavailable("HTML 404 (URL style?)", maybe_applied=False),
        ),
    ],
)
def test_a_debit_answer_maps_to_its_outcome(answer: bytes, outcome: object) -> None:
    res, _, _ = ask([answer], debit)
    assert res == outcome


@pytest.mark.parametrize("status", [400, 403, 409, 415, 422])
def test_a_definitive_refusal_keeps_its_status_and_reason(status: int) -> None:
    said, _, _ = ask([http_response(status, b'{"detail": "Insufficient balance"}')], debit)
    assert said == Refused(status, "Insufficient balance")
    silent, _, _ = ask([http_response(status, b"{}")], debit)
    assert silent == Refused(status, f"status {status}")


# -- connections: refused, dropped, never connected, a URL that is not one ----------------------------------


def test_a_dropped_debit_is_never_sent_again_and_may_have_arrived() -> None:
    res, server, _ = ask([b""], debit)
    assert res == Unavailable("connection trouble (ServerDisconnectedError)", maybe_applied=True)
    assert server.served == 1


def test_a_lookup_dropped_twice_is_asked_twice_only() -> None:
    res, server, _ = ask([b""], lookup)
    assert res == Unavailable("connection trouble (ServerDisconnectedError)", maybe_applied=True)
    assert server.served == 2


def test_a_dropped_lookup_is_asked_again_within_its_last_second() -> None:
    res, server, _ = ask([b"", http_response(200, body(WALLET))], lookup, timeout_s=0.8)
    assert res == Found(MAX_WALLET) and server.served == 2


def test_a_refused_connection_was_provably_never_sent() -> None:
    with RawHttpServer([b""]) as server:
        base = server.base_url  # nobody listens there once the server is gone
    for call in (debit, lookup, info):

        async def scenario(call: Call = call) -> object:
            client = WalletClient(base, Secret("t"), timeout_s=2.0)
            try:
                return await call(client)
            finally:
                await client.aclose()

        assert asyncio.run(scenario()) == Unavailable(
            "cannot connect (ClientConnectorError)", maybe_applied=False
        )


def test_a_connect_that_never_completes_is_given_up_as_never_sent() -> None:
    with connect_never_completes() as port:

        async def scenario() -> object:
            client = WalletClient(f"http://127.0.0.1:{port}/wallet", Secret("t"), timeout_s=0.4)
            try:
                return await debit(client)
            finally:
                await client.aclose()

        started = time.monotonic()
        res = asyncio.run(scenario())
        elapsed = time.monotonic() - started
    assert isinstance(res, Unavailable) and res.maybe_applied is False, res
    assert res.reason in ("no complete answer within 0.4 s", "cannot connect (ConnectTimeout)"), res
    assert 0.4 <= elapsed <= 3.0


def test_a_scheme_the_client_cannot_speak_may_have_been_sent() -> None:
    async def scenario() -> object:
        client = WalletClient("ftp://127.0.0.1:9/wallet", Secret("t"), timeout_s=1.0)
        try:
            return await debit(client)
        finally:
            await client.aclose()

    # nothing says the request never left: the safe side, reconcile
    assert asyncio.run(scenario()) == Unavailable(
        "connection trouble (NonHttpUrlClientError)", maybe_applied=True
    )


# -- the overall deadline: a per-call timeout, and the transaction's cap ------------------------------------


class SlowServer(RawHttpServer):
    """Answers each request two seconds late: past any deadline these tests set."""

    def next_answer(self, request: bytes) -> bytes:
        answer = super().next_answer(request)
        time.sleep(2.0)
        return answer


def test_a_debit_with_a_shorter_timeout_ends_at_it() -> None:
    def call(client: WalletClient) -> Awaitable[Any]:
        return client.transact(MAX, ["e"], description="d", tag=None, idempotency_key="k" * 24, timeout=0.3)

    started = time.monotonic()
    res, _, _ = ask([http_response(201, body(WALLET))], call, timeout_s=5.0, server_class=SlowServer)
    assert res == Unavailable("no complete answer within 0.3 s", maybe_applied=True)
    assert time.monotonic() - started < 1.9


# -- the product list ------------------------------------------------------------------------------------


def page(products: list[dict[str, object]], nxt: str | None, **terminal: object) -> bytes:
    # RawHttpServer closes each connection after its answer: say so, as a real server does, or the next
    # page may go out on the closing connection and spend its one second try there.
    data = body({"links": {"next": nxt}, "data": {**terminal, "products": products}})
    return http_response(200, data, Connection="close")


def test_the_product_list_is_followed_page_by_page_and_the_first_page_names_the_terminal() -> None:
    answers: list[bytes] = []

    def call(client: WalletClient) -> Awaitable[Any]:
        nxt = client.base_url + "/pos/terminal?page="
        answers[:] = [
            page([{"id": 1, "price": 100}], nxt + "2", id="bar", friendly_name="Bar", permission="credit"),
            page([{"id": 2, "price": 200}], nxt + "3", id="other", friendly_name="Other", permission="all"),
            page([{"id": 3, "price": 300}], None),
        ]
        return client.terminal_info()

    res, server, _ = ask(answers, call)
    products = tuple(Product(id=i, name=str(i), price_cents=100 * i) for i in (1, 2, 3))
    assert res == InfoLoaded(
        TerminalInfo(id="bar", friendly_name="Bar", permission="credit", products=products)
    )
    assert [request_line(r) for r in server.requests] == [
        "GET /wallet/pos/terminal HTTP/1.1",
        "GET /wallet/pos/terminal?page=2 HTTP/1.1",
        "GET /wallet/pos/terminal?page=3 HTTP/1.1",
    ]


def test_a_product_list_that_never_ends_is_read_to_forty_pages() -> None:
    answers: list[bytes] = []

    def call(client: WalletClient) -> Awaitable[Any]:
        answers[:] = [page([{"id": 7, "price": 1}], client.base_url + "/pos/terminal?page=n")]
        return client.terminal_info()

    res, server, _ = ask(answers, call, timeout_s=5.0)
    assert isinstance(res, InfoLoaded) and len(res.info.products) == 40 and server.served == 40
    assert res.info.permission == "debit"  # no page named one: the configured default


@pytest.mark.parametrize(
    "next_url",
    ["http://[broken", "http://127.0.0.2:{port}/wallet/pos/terminal?page=2", "https://127.0.0.1:{port}/p"],
)
def test_a_product_page_on_another_origin_is_not_asked_for(next_url: str) -> None:
    answers: list[bytes] = []

    def call(client: WalletClient) -> Awaitable[Any]:
        port = client.base_url.split(":")[2].split("/")[0]
        answers[:] = [page([{"id": 1, "price": 1}], next_url.format(port=port))]
        return client.terminal_info()

    res, server, _ = ask(answers, call)
    assert res == Unavailable("product list points at another host") and server.served == 1


def test_a_product_page_with_an_invalid_url_on_this_origin_is_unavailable() -> None:
    answers: list[bytes] = []

    def call(client: WalletClient) -> Awaitable[Any]:
        answers[:] = [page([], client.base_url + "/pos/terminal/\x01\u2028?page=2")]
        return client.terminal_info()

    res, _, _ = ask(answers, call)
    assert res == Unavailable("the server named a URL that is not valid", maybe_applied=False)


@pytest.mark.parametrize(
    ("prefix", "where"),
    [(PRETIX, "organizer and event slugs in"), ("/wallet", "[wallet]")],
)
def test_a_500_for_the_terminal_says_to_check_the_base_url(prefix: str, where: str) -> None:
    res, _, client = ask([http_response(500, b"<h1>Server Error</h1>", "text/html")], info, prefix=prefix)
    reason = f"server error 500: check {where} base_url ({client.base_url})"
    assert res == Unavailable(reason, status=500)


def test_a_500_on_a_later_product_page_is_a_plain_server_error() -> None:
    answers: list[bytes] = []

    def call(client: WalletClient) -> Awaitable[Any]:
        answers[:] = [page([], client.base_url + "/pos/terminal?page=2"), http_response(500, b"{}")]
        return client.terminal_info()

    res, _, _ = ask(answers, call)
    assert res == Unavailable("server error 500", status=500)


def test_a_product_page_whose_connection_dropped_is_asked_again() -> None:
    answers: list[bytes] = []

    def call(client: WalletClient) -> Awaitable[Any]:
        answers[:] = [
            page([{"id": 1, "price": 1}], client.base_url + "/pos/terminal?page=2"),
            b"",
            page([{"id": 2, "price": 2}], None),
        ]
        return client.terminal_info()

    res, server, _ = ask(answers, call)
    assert isinstance(res, InfoLoaded) and [p.id for p in res.info.products] == [1, 2], res
    assert server.served == 3


def test_a_redirect_of_a_later_product_page_is_refused_as_unexpected() -> None:
    answers: list[bytes] = []

    def call(client: WalletClient) -> Awaitable[Any]:
        answers[:] = [
            page([], client.base_url + "/pos/terminal?page=2"),
            http_response(301, b"", "text/html", Location="/elsewhere"),
        ]
        return client.terminal_info()

    res, _, _ = ask(answers, call)
    assert res == Refused(301, "unexpected status 301")


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (http_response(404, b"{}"), NotFound("the wallet base_url does not point at a wallet API")),
        (http_response(403, b'{"detail": "no terminal"}'), Refused(403, "no terminal")),
        (http_response(418, b"{}"), Refused(418, "unexpected status 418")),
        (
            http_response(200, b"<h1>portal</h1>", "text/html"),
            Unavailable("terminal info: not JSON (text/html)"),
        ),
        (http_response(200, b"[]"), Unavailable("terminal info: terminal body is not an object")),
    ],
)
def test_a_terminal_answer_maps_to_its_outcome(answer: bytes, outcome: object) -> None:
    res, _, _ = ask([answer], info)
    assert res == outcome


# -- a redirect of the terminal says what to configure -------------------------------------------------


@pytest.mark.parametrize(
    ("location", "said"),
    [
        (None, "{base} keeps redirecting to itself; check [wallet] base_url"),
        (
            "https://pretix.example/api/wallet/pos/terminal/",
            "{base} redirects to https://pretix.example/api/wallet;"
            ' put base_url = "https://pretix.example/api/wallet" in [wallet]',
        ),
        (
            "https://pretix.example/api/wallet/pos/terminalX",
            "{base} redirects to https://pretix.example/api/wallet/pos/terminalX;"
            " put the wallet API's URL in [wallet] base_url",
        ),
        (
            "http://[" + "x" * 300,
            "{base} redirects to 'http://[" + "x" * 192 + "', not a URL; check [wallet] base_url",
        ),
        ("http://[\x1b[2J", "{base} redirects to 'http://[', not a URL; check [wallet] base_url"),
    ],
)
def test_a_redirect_of_the_terminal_names_what_to_configure(location: str | None, said: str) -> None:
    headers = {} if location is None else {"Location": location}
    res, _, client = ask([http_response(301, b"", "text/html", **headers)], info)
    assert res == Refused(301, said.format(base=client.base_url))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_kind_of_redirect_of_the_terminal_names_what_to_configure(status: int) -> None:
    location = "https://pretix.example/api/wallet/pos/terminal"
    res, _, client = ask([http_response(status, b"", "text/html", Location=location)], info)
    suggested = "https://pretix.example/api/wallet"
    said = f'{client.base_url} redirects to {suggested}; put base_url = "{suggested}" in [wallet]'
    assert res == Refused(status, said)


# -- a new API token -----------------------------------------------------------------------------------


def test_a_new_token_is_sent_from_the_next_request_on() -> None:
    async def call(client: WalletClient) -> list[object]:
        first = await client.wallet(MAX)
        same = client.use_token(Secret("t"))
        new = client.use_token(Secret("new-token-0123456789"))
        again = client.use_token(Secret("new-token-0123456789"))
        return [first, same, new, again, await client.wallet(MAX)]

    res, server, _ = ask([http_response(200, body(WALLET))], call)
    assert res == [Found(MAX_WALLET), False, True, False, Found(MAX_WALLET)]
    sent = [request_headers(r)["authorization"] for r in server.requests]
    assert sent == ["Bearer t", "Bearer new-token-0123456789"]
