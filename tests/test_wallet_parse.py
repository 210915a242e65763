"""The wallet parser on every answer shape the API document and the real server give, field by field.

The bodies are the document's examples (shared/seeds/001_…) and the real server's (WALLET-SERVER-NOTES.md),
decoded from JSON text as the client decodes them. Also: server text cut to 200 printable characters,
another card's answer, JSON that decodes but is not of the API's shape, and error bodies of each kind.
"""

from __future__ import annotations

import json

import pytest

from terminal.model import Product, Wallet
from terminal.wallet.parse import (
    BadBody,
    TerminalPage,
    error_reason,
    is_for_token,
    parse_terminal,
    parse_wallet,
)
from tests.terminal_lab import ERIKA, MAX

# -- wallets ------------------------------------------------------------------------------------------------

# The document: every entity wrapped in "data", string ids, paired_user a name or null.
DOC_WALLET = """{"data": {"id": "wal_K6lIeaZ9H3UZPqxm", "token_id": "04A1B2C3D4E5F6",
  "created_at": "2021-10-31T20:44:11.000000Z", "balance": 150, "paired_user": "max.mustermann"}}"""
DOC_DEBIT_ANSWER = """{"data": {"id": "wal_K6lIeaZ9H3UZPqxm", "token_id": "04A1B2C3D4E5F6",
  "created_at": "2021-10-31T20:44:11.000000Z", "balance": 150, "paired_user": null}}"""
# The real server: flat, integer id, paired_user "" when nobody is paired, balances one cent low.
REAL_WALLET = """{"id": 1, "token_id": "04A1B2C3D4E5F6", "created_at": "2026-11-22T05:59:20.343953+01:00",
  "balance": 500, "paired_user": "Max Mustermann"}"""
REAL_UNPAIRED = """{"id": 7, "token_id": "04A1B2C3D4E5F6", "created_at": "2026-11-22T05:59:20Z",
  "balance": 119, "paired_user": ""}"""


@pytest.mark.parametrize(
    ("text", "wallet"),
    [
        (DOC_WALLET, Wallet(MAX, 150, paired_user="max.mustermann", id="wal_K6lIeaZ9H3UZPqxm")),
        (DOC_DEBIT_ANSWER, Wallet(MAX, 150, paired_user=None, id="wal_K6lIeaZ9H3UZPqxm")),
        (REAL_WALLET, Wallet(MAX, 500, paired_user="Max Mustermann", id="1")),
        (REAL_UNPAIRED, Wallet(MAX, 119, paired_user=None, id="7")),
        # the fields the terminal needs, and nothing else: no id, no paired_user, a negative balance
        ('{"token_id": "04A1B2C3D4E5F6", "balance": -30}', Wallet(MAX, -30, paired_user=None, id=None)),
        ('{"token_id": "04A1B2C3D4E5F6", "balance": 0, "id": null}', Wallet(MAX, 0, None, None)),
    ],
    ids=["doc", "doc-debit-answer", "real", "real-unpaired", "bare", "null-id"],
)
def test_every_field_of_each_wallet_shape(text: str, wallet: Wallet) -> None:
    assert parse_wallet(json.loads(text)) == wallet


def test_the_data_wrapper_is_taken_off_only_when_it_is_the_whole_body() -> None:
    # A flat wallet that happens to carry a "data" field is still the flat wallet.
    body = {"data": {"token_id": ERIKA, "balance": 1}, "token_id": MAX, "balance": 2}
    assert parse_wallet(body) == Wallet(MAX, 2)


def test_server_text_in_a_wallet_is_one_printable_line_of_at_most_200_characters() -> None:
    name = "Max\nMustermann\x1b[2J" + "x" * 300
    wallet = parse_wallet({"token_id": MAX, "balance": 1, "paired_user": name, "id": "w" * 201})
    assert wallet.paired_user == ("Max Mustermann" + "x" * 300)[:200]
    assert wallet.id == "w" * 200
    exact = parse_wallet({"token_id": MAX, "balance": 1, "paired_user": "p" * 200, "id": "w" * 200})
    assert (exact.paired_user, exact.id) == ("p" * 200, "w" * 200)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ([], "wallet body is not an object"),
        (["data"], "wallet body is not an object"),
        ("04A1B2C3D4E5F6", "wallet body is not an object"),
        (None, "wallet body is not an object"),
        ({"data": []}, "wallet body is not an object"),
        ({}, "wallet has no token_id"),
        ({"balance": 150}, "wallet has no token_id"),
        ({"token_id": 4711, "balance": 150}, "wallet has no token_id"),
        ({"token_id": None, "balance": 150}, "wallet has no token_id"),
        ({"token_id": MAX}, "balance is not an integer number of cents: None"),
        ({"token_id": MAX, "balance": 1.5}, "balance is not an integer number of cents: 1.5"),
        ({"token_id": MAX, "balance": "150"}, "balance is not an integer number of cents: '150'"),
        ({"token_id": MAX, "balance": True}, "balance is not an integer number of cents: True"),
        ({"token_id": MAX, "balance": 1, "paired_user": ["Max"]}, "expected a string, got list"),
        ({"token_id": MAX, "balance": 1, "paired_user": False}, "expected a string, got bool"),
        ({"token_id": MAX, "balance": 1, "id": 1.0}, "expected a string, got float"),
        ({"token_id": MAX, "balance": 1, "id": True}, "expected a string, got bool"),
    ],
)
def test_a_body_not_of_the_wallet_shape_is_refused_saying_what_is_wrong(body: object, said: str) -> None:
    with pytest.raises(BadBody) as raised:
        parse_wallet(body)
    assert str(raised.value) == said


def test_a_refused_value_is_quoted_cut_to_40_characters() -> None:
    with pytest.raises(BadBody) as raised:
        parse_wallet({"token_id": MAX, "balance": "9" * 100})
    assert str(raised.value) == "balance is not an integer number of cents: '" + "9" * 39


# -- whose wallet an answer is ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer_token", "token", "same"),
    [
        (MAX, MAX, True),
        ("04:a1:b2:c3:d4:e5:f6", MAX, True),  # the server's spelling of this card's UID
        ("04 A1 B2 C3 D4 E5 F6", MAX, True),
        ("<TOKEN_HARDWARE_UUID>", "<TOKEN_HARDWARE_UUID>", True),  # not a UID, but exactly the one asked for
        (ERIKA, MAX, False),  # another card's wallet
        ("04:55:66:77:88:aa:bb", MAX, False),
        ("", MAX, False),
        ("<TOKEN_HARDWARE_UUID>", MAX, False),
        (MAX, "<TOKEN_HARDWARE_UUID>", False),
    ],
)
def test_an_answer_is_for_this_token_only_if_it_names_the_same_uid(
    answer_token: str, token: str, same: bool
) -> None:
    assert is_for_token(Wallet(answer_token, 100), token) is same


# -- the terminal and its products --------------------------------------------------------------------------

DOC_TERMINAL = """{"data": {"id": "coffee_machine", "friendly_name": "Kaffeemaschine", "permission": "debit",
  "products": [{"id": "espresso", "friendly_name": "Espresso", "price": 25},
               {"id": "cappuccino", "friendly_name": "Cappucino", "price": 50}]}}"""
# The document's terminal object as it shows it first: flat, with the api_token it carries after creation.
DOC_TERMINAL_FLAT = """{"id": "coffee_machine", "friendly_name": "Kaffeemaschine", "permission": "all",
  "products": [], "api_token": "<API KEY>"}"""
REAL_PAGE = """{"links": {"next": null, "previous": null}, "count": 3, "data": {"products": [
  {"id": 1, "friendly_name": "Espresso", "price": 25}, {"id": 2, "friendly_name": "Cappuccino", "price": 250},
  {"id": 3, "friendly_name": "Pfand", "price": -200}]}}"""
REAL_FIRST_OF_TWO = """{"links": {"next": "http://wallet.test/pos/terminal/?page=2", "previous": null},
  "count": 51, "data": {"products": [{"id": 1, "friendly_name": "Espresso", "price": 25}]}}"""


@pytest.mark.parametrize(
    ("text", "page"),
    [
        (
            DOC_TERMINAL,
            TerminalPage(
                "coffee_machine",
                "Kaffeemaschine",
                "debit",
                (Product("espresso", "Espresso", 25), Product("cappuccino", "Cappucino", 50)),
                None,
            ),
        ),
        (DOC_TERMINAL_FLAT, TerminalPage("coffee_machine", "Kaffeemaschine", "all", (), None)),
        (
            REAL_PAGE,
            TerminalPage(
                None,
                None,
                None,
                (Product(1, "Espresso", 25), Product(2, "Cappuccino", 250), Product(3, "Pfand", -200)),
                None,
            ),
        ),
        (
            REAL_FIRST_OF_TWO,
            TerminalPage(
                None, None, None, (Product(1, "Espresso", 25),), "http://wallet.test/pos/terminal/?page=2"
            ),
        ),
        (
            '{"links": null, "data": {"products": [], "permission": "credit"}}',
            TerminalPage(None, None, "credit", (), None),
        ),
        ('{"links": "page 2", "products": [], "id": 12}', TerminalPage("12", None, None, (), None)),
    ],
    ids=["doc", "doc-flat", "real", "real-first-of-two", "links-null", "links-not-an-object"],
)
def test_every_field_of_each_terminal_shape(text: str, page: TerminalPage) -> None:
    assert parse_terminal(json.loads(text)) == page


@pytest.mark.parametrize(
    ("raw", "product"),
    [
        (
            {"id": "espresso", "friendly_name": "Espresso", "name": "esp", "price": 25},
            Product("espresso", "Espresso", 25),
        ),
        ({"id": 5, "name": "Mate", "price": 300}, Product(5, "Mate", 300)),  # a "name" when no friendly_name
        ({"id": 6, "price": 100}, Product(6, "6", 100)),  # neither: the id names it
        ({"id": "tea", "price": 0}, Product("tea", "tea", 0)),
        (
            {"id": 7, "friendly_name": "Bier\n\x1b[31m" + "a" * 300, "price": 1},
            Product(7, ("Bier " + "a" * 300)[:200], 1),
        ),
        ({"id": 8, "friendly_name": "b" * 200, "price": 1}, Product(8, "b" * 200, 1)),
    ],
)
def test_every_field_of_a_product(raw: dict[str, object], product: Product) -> None:
    assert parse_terminal({"products": [raw]}).products == (product,)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ([], "terminal body is not an object"),
        (None, "terminal body is not an object"),
        ({"links": {"next": 2}, "data": {"products": []}}, "links.next is not a URL"),
        ({"links": {"next": ["/page2"]}, "data": {"products": []}}, "links.next is not a URL"),
        ({"data": [{"id": 1}]}, "terminal data is not an object"),
        ({"data": None}, "terminal data is not an object"),
        ({"data": {}}, "terminal has no products list"),
        ({"data": {"products": {"id": 1}}}, "terminal has no products list"),
        ({"id": "t", "friendly_name": "T"}, "terminal has no products list"),
        ({"products": [], "permission": "root"}, "unknown terminal permission 'root'"),
        ({"products": [], "permission": "x" * 50}, "unknown terminal permission '" + "x" * 19),
        ({"products": [], "permission": ""}, "unknown terminal permission ''"),
        ({"products": [], "id": ["t"]}, "expected a string, got list"),
        ({"products": [], "friendly_name": {"de": "T"}}, "expected a string, got dict"),
        ({"products": [["espresso", 25]]}, "product is not an object"),
        (
            {"products": [{"friendly_name": "Espresso", "price": 25}]},
            "product id None is neither a string nor an integer",
        ),
        ({"products": [{"id": True, "price": 25}]}, "product id True is neither a string nor an integer"),
        ({"products": [{"id": 1.9, "price": 25}]}, "product id 1.9 is neither a string nor an integer"),
        (
            {"products": [{"id": 1, "friendly_name": None, "price": 25}]},
            "product friendly_name is not a string",
        ),
        ({"products": [{"id": 1, "name": 12, "price": 25}]}, "product friendly_name is not a string"),
        ({"products": [{"id": 1, "price": "25"}]}, "product price is not an integer number of cents: '25'"),
        ({"products": [{"id": 1, "price": 2.5}]}, "product price is not an integer number of cents: 2.5"),
        ({"products": [{"id": 1}]}, "product price is not an integer number of cents: None"),
        # one bad product spoils the page: a partial list would sell at wrong prices or miss a product
        (
            {"products": [{"id": 1, "price": 25}, {"id": 2, "price": None}]},
            "product price is not an integer number of cents: None",
        ),
    ],
)
def test_a_body_not_of_the_terminal_shape_is_refused_saying_what_is_wrong(body: object, said: str) -> None:
    with pytest.raises(BadBody) as raised:
        parse_terminal(body)
    assert str(raised.value) == said


# -- error bodies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # the real server's error bodies (WALLET-SERVER-NOTES.md, "Status codes seen")
        ({"detail": "Invalid API key"}, "Invalid API key"),
        ({"detail": "Not found."}, "Not found."),
        (
            {"detail": "JSON parse error - Expecting value: line 1 column 1 (char 0)"},
            "JSON parse error - Expecting value: line 1 column 1 (char 0)",
        ),
        ({"products": ["Item with id 999 does not exist"]}, "products: Item with id 999 does not exist"),
        # the document's wrapper around an error
        ({"data": {"detail": "This terminal may not debit."}}, "This terminal may not debit."),
        # other APIs' and proxies' words for it, in this order of preference
        ({"message": "insufficient balance"}, "insufficient balance"),
        ({"error": "rate limited"}, "rate limited"),
        ({"detail": "d", "message": "m", "error": "e"}, "d"),
        ({"message": "m", "error": "e"}, "m"),
        ({"detail": "", "message": "m"}, "m"),
        ({"detail": None, "error": "e"}, "e"),
        ({"detail": "d", "tag": ["This field may not be null."]}, "d"),
        # field errors: the first field with a message, and its first message
        ({"tag": ["This field may not be blank.", "second"]}, "tag: This field may not be blank."),
        (
            {"tag": [], "description": ["This field may not be null."]},
            "description: This field may not be null.",
        ),
        ({"tag": [400], "description": ["bad"]}, "description: bad"),
        ({"tag": "blank", "description": ["bad"]}, "description: bad"),
        ({"a": ["first"], "b": ["second"]}, "a: first"),
        ({"detail": ["first", "second"]}, "detail: first"),  # a list under "detail" is a field's errors
        # one printable line of at most 200 characters
        ({"detail": "line one\nline two\x1b[2J\x07"}, "line one line two"),
        ({"detail": "d" * 250}, "d" * 200),
        ({"tag": ["t" * 250]}, ("tag: " + "t" * 250)[:200]),
        ({"tag": ["bad\r\nLine"]}, "tag: bad  Line"),
    ],
)
def test_an_error_body_gives_one_short_reason(body: object, reason: str) -> None:
    assert error_reason(body, "fallback") == reason


@pytest.mark.parametrize(
    "body",
    [
        None,  # an HTML page or no body: the client passes no JSON
        {},
        {"detail": 5},
        {"status": 500},
        {"tag": "blank"},
        {"tag": []},
        {"tag": [3]},
        ["data"],
        ["Item with id 999 does not exist"],
        "Not found.",
        42,
    ],
)
def test_an_error_body_without_a_reason_gives_the_fallback(body: object) -> None:
    assert error_reason(body, "check the wallet API token") == "check the wallet API token"
