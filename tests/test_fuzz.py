"""Hypothesis fuzzing of every parser of outside data: wallet bodies, raw HTTP answers, UIDs and config."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.config import ConfigError, parse_config
from terminal.service.secret import Secret
from terminal.uid import InvalidUid, normalise_uid
from terminal.wallet.client import WalletClient
from terminal.wallet.outcomes import Applied, Found, InfoLoaded, NotFound, Refused, Unauthorized, Unavailable
from terminal.wallet.parse import BadBody, error_reason, parse_terminal, parse_wallet
from tests.raw_http import RawHttpServer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
WALLET_KEYS = st.sampled_from(["id", "token_id", "balance", "paired_user", "created_at", "data"])
TERMINAL_KEYS = st.sampled_from(
    ["id", "friendly_name", "permission", "products", "data", "links", "next", "price", "name"]
)
# bodies shaped like the API's, so the parsers get past their first checks
api_like = st.recursive(
    json_values,
    lambda inner: (
        st.dictionaries(WALLET_KEYS | TERMINAL_KEYS, inner, max_size=6) | st.lists(inner, max_size=4)
    ),
    max_leaves=40,
)


@given(api_like)
@settings(max_examples=400)
def test_body_parsers_raise_only_bad_body(body: object) -> None:
    for parse in (parse_wallet, parse_terminal):
        with contextlib.suppress(BadBody):
            parse(body)
    assert isinstance(error_reason(body, "fallback"), str)
    assert len(error_reason(body, "fallback")) <= 200


HEX = "0123456789abcdefABCDEF"
SEPARATORS = [":", "-", " "]


@st.composite
def valid_uid(draw: st.DrawFn) -> tuple[str, str]:
    size = draw(st.sampled_from([4, 7, 8, 10]))
    pairs = [draw(st.text(HEX, min_size=2, max_size=2)) for _ in range(size)]
    sep = draw(st.sampled_from(["", *SEPARATORS]))
    text = sep.join(pairs)
    if draw(st.booleans()):
        text = draw(st.sampled_from(["0x", "0X"])) + text
    text = draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", "\n", " "]))
    return text, "".join(pairs).upper()


@given(valid_uid())
def test_every_valid_uid_form_is_accepted(case: tuple[str, str]) -> None:
    raw, expected = case
    assert normalise_uid(raw) == expected


@given(st.binary(max_size=16))
def test_bytes_uids_are_accepted_exactly_at_the_valid_lengths(raw: bytes) -> None:
    try:
        result = normalise_uid(raw)
    except InvalidUid:
        assert len(raw) not in (4, 7, 8, 10)
    else:
        assert len(raw) in (4, 7, 8, 10) and result == raw.hex().upper()


_VALID = re.compile(r"(0[xX])?([0-9A-Fa-f]{2})+")


@given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(list(HEX + ":- x")), max_size=30))
@settings(max_examples=500)
def test_arbitrary_text_is_a_valid_uid_exactly_when_it_should_be(raw: str) -> None:
    stripped = raw.strip()
    # surrounding whitespace goes; inside, only spaces, colons and dashes separate (a newline never does)
    compact = re.sub(r"[ :\-]", "", stripped) if raw.isascii() and stripped.isprintable() else None
    should = (
        compact is not None
        and _VALID.fullmatch(compact) is not None
        and len(compact.removeprefix("0x").removeprefix("0X")) // 2 in (4, 7, 8, 10)
    )
    try:
        result = normalise_uid(raw)
    except InvalidUid:
        assert not should, raw
    else:
        assert should, raw
        assert re.fullmatch(r"[0-9A-F]+", result) and len(result) // 2 in (4, 7, 8, 10)


config_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["http://127.0.0.1/w", "sim", "console", "espresso", "decline", "/tmp/x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "state_dir",
        "products",
        "description",
        "tag",
        "mode",
        "base_url",
        "token_file",
        "permission",
        "dedupes",
        "timeout_s",
        "kind",
        "socket",
        "rotate",
        "height",
        "buttons",
        "relay_pin",
        "enabled",
        "max_per_card_cents",
        "tap_budget_ms",
        "screen_hold_s",
        "targets",
    ]
) | st.text(max_size=8)
TABLES = st.sampled_from(["terminal", "wallet", "offline", "reader", "display", "gpio"]) | st.text(max_size=6)
config_docs = st.dictionaries(
    TABLES, st.dictionaries(KEYS, config_values, max_size=8) | config_values, max_size=7
)


@given(config_docs)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_parse_config_raises_only_config_error_in_one_line(doc: dict[str, object]) -> None:
    base = {
        "terminal": {"products": ["espresso"], "description": "K"},
        "wallet": {"base_url": "http://127.0.0.1/w"},
    }
    for data in (doc, {**base, **doc}):
        try:
            parse_config(data)
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(exc)


# -- WalletClient against a raw socket answering arbitrary bytes -------------------------------------------

status_lines = st.sampled_from(
    [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 201 Created",
        b"HTTP/1.1 202 Accepted",
        b"HTTP/1.1 301 Moved",
        b"HTTP/1.1 400 Bad",
        b"HTTP/1.1 401 No",
        b"HTTP/1.1 403 No",
        b"HTTP/1.1 404 No",
        b"HTTP/1.1 429 Slow",
        b"HTTP/1.1 500 Err",
        b"HTTP/1.1 101 Switching",
        b"HTTP/1.1 100 Continue",
        b"HTTP/1.0 204 None",
        b"HTTP/1.1 999 What",
        b"HTTP/2 200",
        b"garbage",
    ]
)
header_lines = st.lists(
    st.sampled_from(
        [
            b"Content-Type: application/json",
            b"Content-Type: text/html",
            b"Content-Length: 5",
            b"Content-Length: 999999",
            b"Content-Length: -1",
            b"Transfer-Encoding: chunked",
            b"Content-Encoding: gzip",
            b"Retry-After: 3",
            b"Retry-After: nan",
            b"Retry-After: 1e400",
            b"Retry-After: Mon, 99 Foo 2024 99:99:99 GMT",
            b"Location: /x/",
            b"Location: http://[::1",
            b"Connection: close",
            b"X: \xff\xfe",
        ]
    )
    | st.binary(max_size=30),
    max_size=5,
)
json_bodies = json_values.map(lambda v: json.dumps(v).encode())
bodies = (
    st.binary(max_size=200)
    | json_bodies
    | st.sampled_from(
        [
            b'{"data": {"token_id": "04A1B2C3D4E5F6", "balance": 5}}',
            b'{"links": {"next": "http://[x"}, "data": {"products": []}}',
            b"0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            b"zz\r\n",
        ]
    )
)


@st.composite
def raw_answers(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    head = b"\r\n".join([draw(status_lines), *draw(header_lines)])
    return head + b"\r\n\r\n" + draw(bodies)


@given(st.lists(raw_answers(), min_size=1, max_size=3))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_wallet_client_never_raises_on_arbitrary_bytes(answers: list[bytes]) -> None:
    with RawHttpServer(answers) as server:

        async def scenario() -> list[object]:
            client = WalletClient(server.base_url, Secret("t"), timeout_s=1.0)
            try:
                return [
                    await client.wallet("04A1B2C3D4E5F6"),
                    await client.transact(
                        "04A1B2C3D4E5F6", [1], description="d", tag="t", idempotency_key="k" * 24
                    ),
                    await client.terminal_info(),
                ]
            finally:
                await client.aclose()

        results = asyncio.run(scenario())
    typed = (Applied, Found, InfoLoaded, NotFound, Refused, Unauthorized, Unavailable)
    assert all(isinstance(r, typed) for r in results), results
