"""The ready2order client's answer table: every raw answer → its typed outcome and whether the request may
have been applied; then the same over real HTTP against the emulator with its faults, where an answer said
not applied must never have left an invoice behind."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.ready2order import Ready2OrderEmulator
from terminal.emulator.ready2order.rate_limit import rate_limit_body
from terminal.ready2order import outcomes as out
from terminal.ready2order.client import Ready2OrderClient
from terminal.ready2order.parse import Body, interpret, parse_invoice, read
from terminal.service.secret import Secret

pytestmark = pytest.mark.ready2order

JSON = "application/json"
HTML = "text/html; charset=utf-8"
INVOICE = json.dumps(
    {"invoice_id": 7, "invoice_numberFull": "RG2024/7", "invoice_total": 2.5, "invoice_testMode": False}
).encode()
R429 = json.dumps(rate_limit_body(60, 1)).encode()


def _create(status: int, ctype: str, body: bytes, problem: str | None = None) -> object:
    answer = interpret(status, ctype, body, write=True, problem=problem)
    return read(answer, lambda v: out.Created(parse_invoice(v)), write=True)


def _search(status: int, ctype: str, body: bytes) -> object:
    return read(interpret(status, ctype, body, write=False), lambda v: v, write=False)


# (status, content type, body, problem) → (outcome type of a create, may it have been applied)
CREATE_TABLE: list[tuple[int, str, bytes, str | None, type, bool]] = [
    (200, JSON, INVOICE, None, out.Created, True),
    (201, "application/json; charset=utf-8", INVOICE, None, out.Created, True),
    (200, HTML, b"<html>Wi-Fi login</html>", None, out.Unavailable, True),  # a portal, or the API behind one
    (200, JSON, INVOICE[:20], None, out.Unavailable, True),  # cut off: created, answer lost
    (200, JSON, b'{"ok": true}', None, out.Unavailable, True),  # 2xx JSON but no invoice: created
    (200, JSON, INVOICE, "body over 524288 bytes", out.Unavailable, True),
    (200, "", b"", None, out.Unavailable, True),
    (400, JSON, b'{"error": true, "msg": "item_vatId 9 unknown"}', None, out.Refused, False),
    (422, JSON, b'{"error": true, "msg": "invalid"}', None, out.Refused, False),
    (409, JSON, b'{"error": true, "msg": "conflict"}', None, out.Refused, False),
    (
        400,
        HTML,
        b"<html>400 Bad Request nginx</html>",
        None,
        out.Unavailable,
        False,
    ),  # a proxy's, not a refusal
    (400, JSON, b'{"error": tr', "the answer broke off", out.Unavailable, False),
    (401, JSON, b'{"error": true, "msg": "Token is invalid"}', None, out.Unauthorized, False),
    (403, JSON, b'{"error": true, "msg": "needs an account token"}', None, out.Unauthorized, False),
    (404, JSON, b'{"error": true, "msg": "No route"}', None, out.Unavailable, False),  # wrong base_url
    (405, HTML, b"", None, out.Unavailable, False),
    (429, JSON, R429, None, out.RateLimited, False),
    (408, HTML, b"", None, out.Unavailable, True),
    (500, HTML, b"<h1>Server Error (500)</h1>", None, out.Unavailable, True),
    (502, HTML, b"<h1>Bad Gateway</h1>", None, out.Unavailable, True),
    (503, JSON, b'{"error": true, "msg": "maintenance"}', None, out.Unavailable, True),
    (504, HTML, b"<h1>Gateway Time-out</h1>", None, out.Unavailable, True),
    (301, HTML, b"", None, out.Unavailable, False),  # no redirect is followed: it went nowhere
    (302, HTML, b"", None, out.Unavailable, False),
]


@pytest.mark.parametrize(("status", "ctype", "body", "problem", "kind", "applied"), CREATE_TABLE)
def test_create_answer_table(
    status: int, ctype: str, body: bytes, problem: str | None, kind: type, applied: bool
) -> None:
    outcome = _create(status, ctype, body, problem)
    assert type(outcome) is kind, outcome
    assert outcome.maybe_applied is applied  # type: ignore[attr-defined]


@pytest.mark.parametrize(("status", "ctype", "body", "problem", "kind", "applied"), CREATE_TABLE)
def test_a_search_never_applies_anything(
    status: int, ctype: str, body: bytes, problem: str | None, kind: type, applied: bool
) -> None:
    outcome = read(interpret(status, ctype, body, write=False, problem=problem), lambda v: v, write=False)
    assert getattr(outcome, "maybe_applied", False) is False, outcome


def test_details_of_the_table() -> None:
    refused = _create(400, JSON, b'{"error": true, "msg": "Bad\\nthing", "code": "invalidItem"}')
    assert refused == out.Refused(400, "Bad thing", "invalidItem")
    limited = _create(429, JSON, R429)
    assert isinstance(limited, out.RateLimited) and limited.wait_s >= 60
    assert "blocked for at least 1 minutes" in limited.message
    error = _create(503, JSON, b'{"error": true, "msg": "maintenance"}')
    assert isinstance(error, out.Unavailable) and error.status == 503 and "maintenance" in error.reason
    assert "base_url" in _create(404, JSON, b"{}").reason  # type: ignore[attr-defined]
    assert isinstance(interpret(200, JSON, b"[1, 2.5]", write=False), Body)
    fix401 = out.Unauthorized(401, "x").fix()
    fix403 = out.Unauthorized(403, "x").fix()
    assert "refuses the account token" in fix401 and "not an account token" in fix403


# --- over HTTP ------------------------------------------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[Ready2OrderEmulator]:
    with Ready2OrderEmulator() as emu:
        yield emu


BODY: dict[str, Any] = {
    "paymentMethod_id": 3,
    "user_id": 5678,
    "invoice_priceBase": "gross",
    "invoice_externalReferenceNumber": "tREF1",
    "invoice_testMode": False,
    "items": [
        {
            "item_name": "Espresso",
            "item_quantity": 1,
            "item_price": "2.50",
            "item_vatId": 2,
            "item_priceBase": "brutto",
        }
    ],
}


def _run(emu_url: str, token: str, coro_name: str, *args: Any, timeout_s: float = 1.0, **kw: Any) -> Any:
    async def go() -> Any:
        async with Ready2OrderClient(emu_url, Secret(token), timeout_s=timeout_s) as client:
            return await getattr(client, coro_name)(*args, **kw)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("kind", "fields", "outcome", "applied"),
    [
        (None, {}, out.Created, True),
        (FaultKind.DROP_AFTER, {}, out.Unavailable, True),
        (FaultKind.ERROR500_AFTER, {}, out.Unavailable, True),
        (FaultKind.GARBAGE_TRUNCATED, {}, out.Unavailable, True),
        (FaultKind.GARBAGE_CONTENT_TYPE, {}, out.Unavailable, True),
        (FaultKind.GARBAGE_OVERSIZED, {"size": 600_000}, out.Unavailable, True),
        (FaultKind.DRIP_AFTER, {"ms": 50, "cap_s": 5}, out.Unavailable, True),
        (FaultKind.DROP_BEFORE, {}, out.Unavailable, True),  # the client cannot tell it from a drop after
        (FaultKind.ERROR500_BEFORE, {}, out.Unavailable, True),
        (FaultKind.HANG, {"cap_s": 5}, out.Unavailable, True),
        (FaultKind.GARBAGE_HTML, {}, out.Unavailable, True),
        (FaultKind.RATE_LIMIT_429, {}, out.RateLimited, False),
    ],
)
def test_create_over_http_with_faults(
    emulator: Ready2OrderEmulator,
    kind: FaultKind | None,
    fields: dict[str, Any],
    outcome: type,
    applied: bool,
) -> None:
    if kind is not None:
        emulator.faults.inject(kind, route="invoice_create", times=1, **fields)
    result: out.CreateOutcome = _run(emulator.base_url, emulator.account_token, "create_invoice", BODY)
    assert type(result) is outcome, result
    assert result.maybe_applied is applied
    if not result.maybe_applied:
        assert emulator.invoices() == [], "said not applied, yet an invoice was created"
    if kind in (FaultKind.DROP_AFTER, FaultKind.ERROR500_AFTER, FaultKind.DRIP_AFTER, None):
        assert len(emulator.invoices()) == 1


def test_a_call_is_over_by_its_deadline_whatever_the_drip(emulator: Ready2OrderEmulator) -> None:
    emulator.faults.inject(FaultKind.DRIP_AFTER, route="invoice_search", ms=100, cap_s=20)
    result = _run(
        emulator.base_url,
        emulator.account_token,
        "search_invoices",
        "x",
        date_from="2020-01-01",
        date_to="2030-01-01",
        test_mode=False,
        timeout_s=0.5,
    )
    assert isinstance(result, out.Unavailable) and result.maybe_applied is False
    emulator.faults.clear()


def test_nothing_listens_means_never_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _run(f"http://127.0.0.1:{port}/v1", "t", "create_invoice", BODY)
    assert isinstance(result, out.Unavailable) and result.maybe_applied is False


def test_tokens_developer_and_garbled(emulator: Ready2OrderEmulator) -> None:
    dev = _run(emulator.base_url, emulator.developer_token, "day_status")
    assert isinstance(dev, out.Unauthorized) and dev.status == 403
    wrong = _run(emulator.base_url, "garbled", "day_status")
    assert isinstance(wrong, out.Unauthorized) and wrong.status == 401
    emulator.add_account_token("fresh-account-token")
    assert isinstance(_run(emulator.base_url, "fresh-account-token", "day_status"), out.DayStatus)


def test_the_token_never_shows(emulator: Ready2OrderEmulator) -> None:
    client = Ready2OrderClient(emulator.base_url, Secret("very-secret-token"))
    assert "very-secret-token" not in repr(client) + str(client.__dict__.get("_token"))
    asyncio.run(client.aclose())


def test_the_server_clock_comes_from_its_date_header(emulator: Ready2OrderEmulator) -> None:
    async def go() -> tuple[float | None, float | None]:
        async with Ready2OrderClient(emulator.base_url, Secret(emulator.account_token)) as client:
            before = client.server_time()
            await client.day_status()
            return before, client.server_time()

    before, after = asyncio.run(go())
    import time

    assert before is None and after is not None and abs(after - time.time()) < 5
