"""The wallet API emulator: both flavours over loopback HTTP, every fault kind, the ledger and the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from terminal.emulator.faults import FaultConfigError, FaultKind, FaultRule
from terminal.emulator.wallet import WalletEmulator
from terminal.emulator.wallet.ledger import LedgerError

REPO = Path(__file__).resolve().parent.parent
MAX = "04A1B2C3D4E5F6"  # 2000 cents, "Max Mustermann"
POOR = "DEADBEEF"  # 100 cents, no paired user
UNKNOWN = "04FFFFFFFFFFFF"
SALE_URL = f"/pos/wallets/token/{MAX}/transactions"


def api_client(emu: WalletEmulator, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(
        base_url=emu.base_url, headers={"Authorization": f"Bearer {emu.api_token}"}, timeout=timeout
    )


def doc_sale(products: list[Any], key: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"products": products, "description": "Kaffee", "tag": "coffee", **extra}
    if key is not None:
        body["idempotency_key"] = key
    return body


@pytest.fixture
def doc() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc") as emu:
        yield emu


@pytest.fixture
def real() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("real") as emu:
        yield emu


# -- doc flavour -----------------------------------------------------------------------------------------


def test_doc_terminal_is_a_wrapped_terminal_object_with_string_product_ids(doc: WalletEmulator) -> None:
    with api_client(doc) as client:
        bare, slashed = client.get("/pos/terminal"), client.get("/pos/terminal/")
    assert bare.status_code == slashed.status_code == 200
    assert bare.json() == slashed.json()
    terminal = bare.json()["data"]
    assert set(terminal) == {"id", "friendly_name", "permission", "products"}
    assert terminal["permission"] == "all"
    prices = {p["id"]: p["price"] for p in terminal["products"]}
    assert prices["espresso"] == 250 and prices["cappuccino"] == 300 and prices["topup_10"] == -1000
    assert all(isinstance(p["id"], str) for p in terminal["products"])


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Authentication credentials were not provided."),
        ({"Authorization": "Bearer wrong"}, "Invalid token."),
    ],
)
def test_doc_refuses_missing_or_wrong_token_with_401(
    doc: WalletEmulator, headers: dict[str, str], detail: str
) -> None:
    with httpx.Client(base_url=doc.base_url, headers=headers) as client:
        answers = [
            client.get("/pos/terminal"),
            client.get(f"/pos/wallets/token/{MAX}"),
            client.post(f"/pos/wallets/token/{MAX}/transactions", json=doc_sale(["espresso"])),
        ]
    assert [(r.status_code, r.json()["detail"]) for r in answers] == [(401, detail)] * 3
    assert doc.balance(MAX) == 2000 and doc.transactions() == []


def test_doc_wallet_lookup_and_404_for_unknown_or_differently_written_tokens(doc: WalletEmulator) -> None:
    with api_client(doc) as client:
        wallet = client.get(f"/pos/wallets/token/{MAX}").json()["data"]
        unpaired = client.get(f"/pos/wallets/token/{POOR}/").json()["data"]
        missing = [client.get(f"/pos/wallets/token/{t}").status_code for t in (UNKNOWN, MAX.lower())]
    assert (
        wallet["token_id"] == MAX and wallet["balance"] == 2000 and wallet["paired_user"] == "Max Mustermann"
    )
    assert wallet["id"].startswith("wal_") and wallet["created_at"].endswith("Z")
    assert "transactions" not in wallet
    assert unpaired["paired_user"] is None
    assert missing == [404, 404]


def test_doc_debit_answers_201_with_new_balance_with_or_without_trailing_slash(doc: WalletEmulator) -> None:
    with api_client(doc) as client:
        first = client.post(f"/pos/wallets/token/{MAX}/transactions", json=doc_sale(["espresso"], "k" * 20))
        second = client.post(
            f"/pos/wallets/token/{MAX}/transactions/", json=doc_sale(["espresso", "cappuccino"])
        )
    assert (first.status_code, first.json()["data"]["balance"]) == (201, 1750)
    assert (second.status_code, second.json()["data"]["balance"]) == (201, 1200)
    assert doc.balance(MAX) == 1200
    booked = doc.transactions()
    assert [(t.amount, t.products) for t in booked] == [
        (-250, ["espresso"]),
        (-550, ["espresso", "cappuccino"]),
    ]
    assert (
        booked[0].idempotency_key == "k" * 20
        and booked[0].tag == "coffee"
        and booked[0].description == "Kaffee"
    )
    assert booked[0].terminal == "coffee_machine" and [t.seq for t in booked] == [1, 2]


def test_doc_post_for_unknown_token_is_404_and_books_nothing(doc: WalletEmulator) -> None:
    with api_client(doc) as client:
        answer = client.post(f"/pos/wallets/token/{UNKNOWN}/transactions", json=doc_sale(["espresso"]))
    assert answer.status_code == 404 and doc.transactions() == []


def test_doc_repeated_idempotency_key_answers_202_and_moves_no_money(doc: WalletEmulator) -> None:
    key = "0QwKc2c9jUIxPyaHEjYQ"
    with api_client(doc) as client:
        url = f"/pos/wallets/token/{MAX}/transactions"
        codes = [client.post(url, json=doc_sale(["espresso"], key)).status_code for _ in range(3)]
        repeat = client.post(url, json=doc_sale(["espresso"], key))
        other = client.post(url, json=doc_sale(["espresso"], key + "X"))
    assert codes == [201, 202, 202]
    assert repeat.json()["data"]["balance"] == 1750
    assert other.status_code == 201 and doc.balance(MAX) == 1500 and len(doc.transactions()) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (doc_sale(["latte", "nope"]), "products"),
        (doc_sale([]), "products"),
        (doc_sale([1]), "products"),
        (doc_sale("espresso"), "products"),  # type: ignore[arg-type]
        ({"products": ["espresso"]}, "description"),
        (doc_sale(["espresso"], description=5), "description"),
        (doc_sale(["espresso"], tag=3), "tag"),
        (doc_sale(["espresso"], idempotency_key=7), "idempotency_key"),
    ],
)
def test_doc_invalid_requests_are_400_with_details_and_book_nothing(
    doc: WalletEmulator, body: dict[str, Any], field: str
) -> None:
    with api_client(doc) as client:
        answer = client.post(f"/pos/wallets/token/{MAX}/transactions", json=body)
    assert answer.status_code == 400
    assert answer.json()[field]
    assert doc.balance(MAX) == 2000 and doc.transactions() == []


def test_doc_malformed_json_is_400(doc: WalletEmulator) -> None:
    with api_client(doc) as client:
        answer = client.post(f"/pos/wallets/token/{MAX}/transactions", content=b'{"products": [')
    assert answer.status_code == 400 and answer.json()["detail"].startswith("JSON parse error - ")


def test_doc_debit_beyond_the_balance_is_400_insufficient_balance(doc: WalletEmulator) -> None:
    with api_client(doc) as client:
        answer = client.post(f"/pos/wallets/token/{POOR}/transactions", json=doc_sale(["espresso"]))
    assert (answer.status_code, answer.json()) == (400, {"detail": "Insufficient balance"})
    assert doc.balance(POOR) == 100 and doc.transactions() == []


@pytest.mark.parametrize(
    ("permission", "products", "status", "balance"),
    [
        ("debit", ["espresso"], 201, 1750),
        ("debit", ["topup_10"], 403, 2000),
        ("debit", ["espresso", "topup_10"], 403, 2000),
        ("credit", ["topup_10"], 201, 3000),
        ("credit", ["espresso"], 403, 2000),
        ("all", ["topup_20", "espresso"], 201, 3750),
    ],
)
def test_doc_terminal_permission_gates_debits_and_top_ups(
    permission: str, products: list[str], status: int, balance: int
) -> None:
    with WalletEmulator.demo("doc", permission=permission) as emu, api_client(emu) as client:
        answer = client.post(f"/pos/wallets/token/{MAX}/transactions", json=doc_sale(products))
        assert answer.status_code == status
        assert emu.balance(MAX) == balance
        assert len(emu.transactions()) == (1 if status == 201 else 0)


def test_pooled_connection_is_reused(doc: WalletEmulator) -> None:
    with api_client(doc) as client:
        for _ in range(5):
            assert client.get(f"/pos/wallets/token/{MAX}").status_code == 200
    assert doc.connections_accepted == 1


def test_doc_concurrent_sales_book_exactly_once_per_key(doc: WalletEmulator) -> None:
    def sell(i: int) -> int:
        with api_client(doc) as client:
            key = f"shared-key-{i % 5:02d}-0123456789"  # 40 sales, 5 distinct keys
            return client.post(SALE_URL, json=doc_sale(["water"], key)).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(sell, range(40)))
    assert sorted(codes) == [201] * 5 + [202] * 35
    assert doc.balance(MAX) == 2000 - 5 * 150 and len(doc.transactions()) == 5


# -- real flavour ----------------------------------------------------------------------------------------


def test_real_get_without_slash_redirects_301_to_the_slash_url(real: WalletEmulator) -> None:
    with api_client(real) as client:
        terminal = client.get("/pos/terminal")
        wallet = client.get(f"/pos/wallets/token/{MAX}")
        followed = client.get(f"/pos/wallets/token/{MAX}", follow_redirects=True)
    assert terminal.status_code == wallet.status_code == 301
    assert terminal.headers["Location"].endswith("/wallet/pos/terminal/")
    assert wallet.headers["Location"].endswith(f"/token/{MAX}/")
    assert followed.status_code == 200 and followed.json()["balance"] == 2000


def test_real_product_list_is_paginated_by_50_with_absolute_next_links() -> None:
    products = [(i, f"Item {i}", 100 + i) for i in range(1, 121)]
    with WalletEmulator("real", products=products) as emu, api_client(emu) as client:
        url: str | None = emu.base_url + "/pos/terminal/"
        pages = []
        while url is not None:
            assert url.startswith(emu.origin)
            page = client.get(url).json()
            pages.append(page)
            url = page["links"]["next"]
    assert [len(p["data"]["products"]) for p in pages] == [50, 50, 20]
    assert {p["count"] for p in pages} == {120}
    assert pages[0]["links"]["previous"] is None and pages[1]["links"]["previous"] is not None
    assert "permission" not in pages[0] and "id" not in pages[0]["data"]
    seen = [p["id"] for page in pages for p in page["data"]["products"]]
    assert seen == list(range(1, 121))


def test_real_wallet_is_flat_with_int_id_empty_paired_user_and_offset(real: WalletEmulator) -> None:
    with api_client(real) as client:
        wallet = client.get(f"/pos/wallets/token/{MAX}/").json()
        unpaired = client.get(f"/pos/wallets/token/{POOR}/").json()
    assert set(wallet) == {"id", "token_id", "created_at", "balance", "paired_user"}
    assert (
        isinstance(wallet["id"], int)
        and wallet["balance"] == 2000
        and wallet["paired_user"] == "Max Mustermann"
    )
    assert wallet["created_at"].endswith("+01:00")
    assert unpaired["paired_user"] == ""


def test_real_post_without_slash_is_html_404_and_charges_nothing(real: WalletEmulator) -> None:
    with api_client(real) as client:
        answer = client.post(
            f"/pos/wallets/token/{MAX}/transactions", json={"products": [1], "description": "x"}
        )
    assert answer.status_code == 404 and answer.headers["Content-Type"].startswith("text/html")
    assert "Please append a /" in answer.text
    assert real.balance(MAX) == 2000 and real.transactions() == []


def test_real_ignores_idempotency_keys_and_charges_twice(real: WalletEmulator) -> None:
    sale = {"products": [1], "description": "Kaffee", "idempotency_key": "0QwKc2c9jUIxPyaHEjYQ"}
    with api_client(real) as client:
        answers = [client.post(f"/pos/wallets/token/{MAX}/transactions/", json=sale) for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201]
    assert [a.json()["balance"] for a in answers] == [1750, 1500]
    assert real.balance(MAX) == 1500 and len(real.transactions()) == 2


def test_real_has_no_balance_check(real: WalletEmulator) -> None:
    with api_client(real) as client:
        url = f"/pos/wallets/token/{POOR}/transactions/"
        first = client.post(url, json={"products": [1, 1], "description": "x"})
        second = client.post(url, json={"products": [4], "description": "x"})
    assert (first.status_code, first.json()["balance"]) == (201, -400)
    assert (second.status_code, second.json()["balance"]) == (201, -550)


def test_real_has_no_permission_levels() -> None:
    with WalletEmulator.demo("real", permission="credit") as emu, api_client(emu) as client:
        answer = client.post(
            f"/pos/wallets/token/{MAX}/transactions/", json={"products": [2], "description": "x"}
        )
    assert answer.status_code == 201 and emu.balance(MAX) == 1700


def test_real_coerces_true_and_floats_to_item_1(real: WalletEmulator) -> None:
    with api_client(real) as client:
        answer = client.post(
            f"/pos/wallets/token/{MAX}/transactions/", json={"products": [True, 1.9], "description": "x"}
        )
    assert answer.status_code == 201 and answer.json()["balance"] == 1500
    assert real.transactions()[0].products == [1, 1]


def test_real_books_an_empty_product_list_as_zero(real: WalletEmulator) -> None:
    with api_client(real) as client:
        answer = client.post(
            f"/pos/wallets/token/{MAX}/transactions/", json={"products": [], "description": "x"}
        )
    assert answer.status_code == 201 and real.balance(MAX) == 2000
    assert [(t.amount, t.products) for t in real.transactions()] == [(0, [])]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"products": ["espresso"], "description": "x"}, None),
        ({"products": [999], "description": "x"}, {"products": ["Item with id 999 does not exist"]}),
        ({"products": [1], "description": None}, {"description": ["This field may not be null."]}),
        ({"products": [1], "description": "x", "tag": None}, {"tag": ["This field may not be null."]}),
        ({"products": [1], "description": "x", "tag": ""}, {"tag": ["This field may not be blank."]}),
    ],
)
def test_real_refuses_bad_fields_with_400_and_charges_nothing(
    real: WalletEmulator, body: dict[str, Any], expected: dict[str, list[str]] | None
) -> None:
    with api_client(real) as client:
        answer = client.post(f"/pos/wallets/token/{MAX}/transactions/", json=body)
    assert answer.status_code == 400
    if expected is None:
        assert "products" in answer.json()
    else:
        assert answer.json() == expected
    assert real.balance(MAX) == 2000 and real.transactions() == []


def test_real_token_matching_is_exact_and_unknown_post_is_500_html(real: WalletEmulator) -> None:
    colons = ":".join(MAX[i : i + 2] for i in range(0, len(MAX), 2))
    with api_client(real) as client:
        lookups = [client.get(f"/pos/wallets/token/{t}/") for t in (MAX.lower(), colons, UNKNOWN)]
        post = client.post(
            f"/pos/wallets/token/{UNKNOWN}/transactions/", json={"products": [1], "description": "x"}
        )
    assert [(r.status_code, r.json()) for r in lookups] == [(404, {"detail": "Not found."})] * 3
    assert post.status_code == 500 and post.headers["Content-Type"].startswith("text/html")
    assert real.transactions() == []


def test_real_body_and_content_negotiation_errors(real: WalletEmulator) -> None:
    url = f"/pos/wallets/token/{MAX}/transactions/"
    raw = b'{"products": [1], "description": "x"}'
    with api_client(real) as client:
        malformed = client.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
        plain = client.post(url, content=raw, headers={"Content-Type": "text/plain"})
        untyped = client.post(url, content=raw)
        html = client.get(f"/pos/wallets/token/{MAX}/", headers={"Accept": "text/html"})
    assert malformed.status_code == 400 and malformed.json()["detail"].startswith("JSON parse error - ")
    assert plain.status_code == untyped.status_code == 415 and "detail" in plain.json()
    assert html.status_code == 406
    assert real.transactions() == []


def test_real_401_bodies(real: WalletEmulator) -> None:
    with httpx.Client(base_url=real.base_url) as client:
        missing = client.get("/pos/terminal/")
        wrong = client.get("/pos/terminal/", headers={"Authorization": "Bearer nope"})
    assert (missing.status_code, missing.json()) == (
        401,
        {"detail": "Authentication credentials were not provided."},
    )
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid API key"})


def test_real_unknown_organizer_is_500_html(real: WalletEmulator) -> None:
    with api_client(real) as client:
        answer = client.get(real.origin + "/api/v1/organizers/elsewhere/events/demo/wallet/pos/terminal/")
    assert answer.status_code == 500 and answer.headers["Content-Type"].startswith("text/html")


MATE_PRODUCTS = ((1, "Club-Mate", 120), (2, "Espresso", 250), (3, "Bier", 350))


def test_real_reports_balances_truncated_from_a_float_sum_of_euros_while_the_ledger_stays_exact(
    tmp_path: Path,
) -> None:
    exact, five = "04000000000120", "04000000000500"
    wallets = {exact: 120, five: 500}
    ledger = tmp_path / "ledger.json"
    with (
        WalletEmulator("real", products=MATE_PRODUCTS, wallets=wallets, ledger_path=ledger) as emu,
        api_client(emu) as client,
    ):
        held = client.get(f"/pos/wallets/token/{exact}/").json()["balance"]
        sold = client.post(
            f"/pos/wallets/token/{five}/transactions/", json={"products": [1], "description": "x"}
        )
        after = client.get(f"/pos/wallets/token/{five}/").json()["balance"]
        snapshot = httpx.get(emu.control_url + "/ledger").json()
        assert (emu.balance(exact), emu.reported_balance(exact)) == (120, 119)
        assert (emu.balance(five), emu.reported_balance(five)) == (380, 379)
    assert held == 119  # 1.20 as a float is 1.19999…: the plugin truncates it to 119
    assert (sold.status_code, sold.json()["balance"], after) == (201, 379, 379)  # moved by 121
    assert snapshot["wallets"][five]["balance"] == 380 and snapshot["wallets"][exact]["balance"] == 120
    assert [t["amount"] for t in snapshot["transactions"]] == [-120]
    with WalletEmulator("real", products=MATE_PRODUCTS, ledger_path=ledger) as emu, api_client(emu) as client:
        assert client.get(f"/pos/wallets/token/{five}/").json()["balance"] == 379  # the float sum persists
    with WalletEmulator("doc", wallets=wallets) as emu, api_client(emu) as client:
        assert client.get(f"/pos/wallets/token/{exact}").json()["data"]["balance"] == 120  # doc is exact
        assert emu.reported_balance(exact) == 120


def test_real_unsellable_items_are_listed_but_every_post_with_one_is_500_html_and_charges_nothing() -> None:
    sale_url = f"/pos/wallets/token/{MAX}/transactions/"
    with (
        WalletEmulator.demo("real", unsellable=[3]) as emu,
        api_client(emu) as client,
        httpx.Client(base_url=emu.control_url) as control,
    ):
        listed = [p["id"] for p in client.get("/pos/terminal/").json()["data"]["products"]]
        refused = [client.post(sale_url, json={"products": p, "description": "x"}) for p in ([3], [1, 3])]
        wallet = client.get(f"/pos/wallets/token/{MAX}/")
        assert emu.transactions() == [] and emu.balance(MAX) == 2000
        sold = client.post(sale_url, json={"products": [1], "description": "x"})
        assert sold.status_code == 201 and emu.balance(MAX) == 1750

        switched = control.post("/products", json={"unsellable": [1]})  # at run time, by a test or a bench
        now_refused = client.post(sale_url, json={"products": [1], "description": "x"})
        now_sold = client.post(sale_url, json={"products": [3], "description": "x"})
        cleared = control.post("/products", json={"unsellable": []})
        sold_again = client.post(sale_url, json={"products": [1], "description": "x"})
        not_listed = control.post("/products", json={"unsellable": [999]})
        shapeless = control.post("/products", json=[3])
        state = control.get("/products").json()
    assert listed == [1, 2, 3, 4]
    assert [(r.status_code, r.headers["Content-Type"].split(";")[0]) for r in refused] == [
        (500, "text/html")
    ] * 2
    assert wallet.status_code == 200 and wallet.json()["balance"] == 2000
    assert switched.status_code == 200 and switched.json()["unsellable"] == [1]
    assert (now_refused.status_code, now_sold.status_code) == (500, 201)
    assert cleared.json()["unsellable"] == [] and sold_again.status_code == 201
    assert not_listed.status_code == 400 and "999" in not_listed.json()["detail"]
    assert shapeless.status_code == 400 and state["unsellable"] == []
    assert [t.products for t in emu.transactions()] == [[1], [3], [1]]
    assert emu.balance(MAX) == 2000 - 250 - 350 - 250


def test_only_the_real_flavour_has_unsellable_items() -> None:
    with pytest.raises(ValueError, match="real flavour"):
        WalletEmulator("doc", unsellable=[1])
    with WalletEmulator.demo("doc") as emu:
        answer = httpx.post(emu.control_url + "/products", json={"unsellable": ["espresso"]})
    assert answer.status_code == 400 and "real flavour" in answer.json()["detail"]


# -- faults ----------------------------------------------------------------------------------------------


def _html_200(answer: httpx.Response | Exception) -> None:
    assert isinstance(answer, httpx.Response) and answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        answer.json()


def _truncated(answer: httpx.Response | Exception) -> None:
    assert isinstance(answer, httpx.Response) and answer.status_code == 201
    with pytest.raises(json.JSONDecodeError):
        answer.json()


def _wrong_type(answer: httpx.Response | Exception) -> None:
    assert isinstance(answer, httpx.Response) and answer.status_code == 201
    assert answer.headers["Content-Type"].startswith("text/html")


def _oversized(answer: httpx.Response | Exception) -> None:
    assert isinstance(answer, httpx.Response) and len(answer.content) >= 200_000


def _status(code: int) -> Callable[[httpx.Response | Exception], None]:
    def check(answer: httpx.Response | Exception) -> None:
        assert isinstance(answer, httpx.Response) and answer.status_code == code

    return check


def _no_response(answer: httpx.Response | Exception) -> None:
    assert isinstance(answer, httpx.TransportError)


@pytest.mark.parametrize(
    ("kind", "fields", "applied", "check"),
    [
        ("drop_before", {}, False, _no_response),
        ("drop_after", {}, True, _no_response),
        ("error500_before", {}, False, _status(500)),
        ("error500_after", {}, True, _status(500)),
        ("rate_limit_429", {"retry_after": 7}, False, _status(429)),
        ("garbage_html", {}, False, _html_200),
        ("garbage_truncated", {}, True, _truncated),
        ("garbage_content_type", {}, True, _wrong_type),
        ("garbage_oversized", {"size": 200_000}, True, _oversized),
    ],
)
def test_each_fault_kind_is_seen_by_the_client_and_applies_only_when_it_should(
    doc: WalletEmulator,
    kind: str,
    fields: dict[str, Any],
    applied: bool,
    check: Callable[[httpx.Response | Exception], None],
) -> None:
    doc.faults.inject(kind, times=1, method="POST", route="transaction", **fields)
    with api_client(doc) as client:
        answer: httpx.Response | Exception
        try:
            answer = client.post(SALE_URL, json=doc_sale(["espresso"], "retry-key-0123456789"))
        except httpx.TransportError as exc:
            answer = exc
        check(answer)
        if isinstance(answer, httpx.Response) and kind == "rate_limit_429":
            assert answer.headers["Retry-After"] == "7"
        assert doc.balance(MAX) == (1750 if applied else 2000)
        assert len(doc.transactions()) == int(applied)
        retry = client.post(SALE_URL, json=doc_sale(["espresso"], "retry-key-0123456789"))
    # the fault fired once; the retry with the same key is clean and the doc server deduplicates it
    assert retry.status_code == (202 if applied else 201)
    assert doc.balance(MAX) == 1750
    assert doc.faults.applied() == {kind: 1}


def test_fixed_latency_delays_the_answer(doc: WalletEmulator) -> None:
    doc.faults.inject("latency", ms=300, times=1)
    with api_client(doc) as client:
        started = time.monotonic()
        assert client.get(f"/pos/wallets/token/{MAX}").status_code == 200
        elapsed = time.monotonic() - started
    assert elapsed >= 0.3
    assert doc.faults.applied() == {"latency": 1}


def _spike_count(seed: int) -> int:
    with WalletEmulator.demo("doc", seed=seed) as emu, api_client(emu) as client:
        emu.faults.inject(FaultKind.LATENCY_SPIKE, probability=0.5, ms=1)
        for _ in range(30):
            assert client.get(f"/pos/wallets/token/{MAX}").status_code == 200
        return emu.faults.applied().get("latency_spike", 0)


def test_latency_spikes_are_random_but_reproducible_per_seed() -> None:
    first, again = _spike_count(seed=7), _spike_count(seed=7)
    assert 0 < first < 30
    assert first == again


def test_hang_never_answers_until_cleared_and_applies_nothing(doc: WalletEmulator) -> None:
    doc.faults.inject("hang", cap_s=30)
    with api_client(doc, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(SALE_URL, json=doc_sale(["espresso"]))
        with httpx.Client() as control:
            cleared = control.delete(doc.control_url + "/faults").json()
            assert cleared == {"rules": [], "down": False, "profile": "fast"}
        assert client.post(SALE_URL, json=doc_sale(["espresso"])).status_code == 201
    assert doc.balance(MAX) == 1750 and len(doc.transactions()) == 1


def test_next_n_faults_only_hit_their_method_and_route(doc: WalletEmulator) -> None:
    doc.faults.inject("error500_before", times=2, method="POST", route="transaction")
    with api_client(doc) as client:
        lookups = [client.get(f"/pos/wallets/token/{MAX}").status_code for _ in range(3)]
        sales = [client.post(SALE_URL, json=doc_sale(["espresso"])).status_code for _ in range(3)]
    assert lookups == [200, 200, 200]
    assert sales == [500, 500, 201]
    stats = doc.stats()
    assert stats["faults"] == {"error500_before": 2}
    assert stats["requests"] == 6 and stats["requests_by_route"] == {"wallet": 3, "transaction": 3}


def test_down_switch_closes_every_api_connection_but_control_still_answers(doc: WalletEmulator) -> None:
    with api_client(doc) as client, httpx.Client(base_url=doc.control_url) as control:
        assert control.post("/faults", json={"down": True}).json()["down"] is True
        for _ in range(2):
            with pytest.raises(httpx.TransportError):
                client.get(f"/pos/wallets/token/{MAX}")
        assert control.get("/stats").json()["faults"] == {"down": 2}
        control.post("/faults", json={"down": False})
        assert client.get(f"/pos/wallets/token/{MAX}").status_code == 200


def test_control_endpoints_configure_faults_wallets_and_show_the_ledger(doc: WalletEmulator) -> None:
    with api_client(doc) as client, httpx.Client(base_url=doc.control_url) as control:
        bad = control.post("/faults", json={"rules": [{"kind": "explode"}]})
        added = control.post(
            "/wallets", json={"token_id": "04AABBCCDDEEFF", "balance": 900, "paired_user": "Jo"}
        )
        control.post(
            "/faults", json={"seed": 3, "add": [{"kind": "drop_after", "times": 1, "route": "transaction"}]}
        )
        with pytest.raises(httpx.TransportError):
            client.post("/pos/wallets/token/04AABBCCDDEEFF/transactions", json=doc_sale(["water"]))
        ledger = control.get("/ledger").json()
        stats = control.get("/stats").json()
    assert bad.status_code == 400 and "unknown fault kind" in bad.json()["detail"]
    assert added.status_code == 201
    assert ledger["wallets"]["04AABBCCDDEEFF"]["balance"] == 750
    assert [t["amount"] for t in ledger["transactions"]] == [-150]
    assert stats["faults"] == {"drop_after": 1} and stats["transactions"] == 1


def test_fault_rules_refuse_nonsense() -> None:
    with pytest.raises(FaultConfigError):
        FaultRule(FaultKind.DROP_AFTER, probability=1.5)
    with pytest.raises(FaultConfigError):
        FaultRule.from_json({"kind": "latency"})  # a latency without ms does nothing
    with pytest.raises(FaultConfigError):
        FaultRule.from_json({"kind": "hang", "colour": "red"})
    with pytest.raises(FaultConfigError, match="ms > 0"):
        FaultRule.from_json({"kind": "drip_after"})  # a drip without a pace is no drip


# -- drip: the whole answer a byte at a time --------------------------------------------------------------


def _raw_request(emu: WalletEmulator, method: str, path: str, body: bytes = b"") -> socket.socket:
    """A connection that has sent one request (Connection: close) and read nothing yet."""
    url = urlsplit(emu.base_url)
    head = (
        f"{method} {url.path}{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {emu.api_token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80))
    sock.settimeout(15.0)  # far beyond every drip below, far below the 60 s caps
    sock.sendall(head.encode() + body)
    return sock


def _read(sock: socket.socket, at_least: int | None = None) -> list[bytes]:
    """The chunks as they arrive, until ``at_least`` bytes or (None) the server closes."""
    chunks: list[bytes] = []
    while at_least is None or sum(map(len, chunks)) < at_least:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    return chunks


def test_drip_after_applies_then_sends_status_headers_and_body_a_byte_at_a_time(doc: WalletEmulator) -> None:
    with httpx.Client(base_url=doc.control_url) as control:
        rule = {"kind": "drip_after", "ms": 5, "times": 1, "method": "POST", "route": "transaction"}
        state = control.post("/faults", json={"add": [rule]}).json()
    assert state["rules"][0]["kind"] == "drip_after" and state["rules"][0]["ms"] == 5
    sale = json.dumps(doc_sale(["espresso"], "drip-key-0123456789abcd")).encode()
    started = time.monotonic()
    with _raw_request(doc, "POST", SALE_URL, sale) as sock:
        chunks = _read(sock)
    elapsed = time.monotonic() - started
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 ") and b"Content-Length: " in head
    assert json.loads(body)["data"]["balance"] == 1750  # the real answer, complete
    assert elapsed >= (len(answer) - 1) * 0.005  # a pause between every two bytes, status line included
    assert len(chunks[0]) < len(head)  # the head itself did not arrive in one piece
    assert [t.amount for t in doc.transactions()] == [-250]
    assert doc.faults.applied() == {"drip_after": 1}


def test_drip_before_applies_nothing_and_hangs_up_at_its_cap(doc: WalletEmulator) -> None:
    doc.faults.inject(FaultKind.DRIP_BEFORE, ms=100, cap_s=0.5, times=1, method="POST", route="transaction")
    sale = json.dumps(doc_sale(["espresso"], "drip-key-0123456789abcd")).encode()
    started = time.monotonic()
    with _raw_request(doc, "POST", SALE_URL, sale) as sock:
        answer = b"".join(_read(sock))
    elapsed = time.monotonic() - started
    # A proxy's 504 trickling in, cut off at 0.5 s: one byte at once and at most one per 0.1 s pause.
    assert 1 <= len(answer) <= 6 and b"HTTP/1.1 504 Gateway Timeout".startswith(answer)
    assert elapsed >= 0.5
    assert doc.transactions() == [] and doc.balance(MAX) == 2000


def test_clear_ends_a_drip_under_way_and_replacing_the_rules_does_not(doc: WalletEmulator) -> None:
    doc.faults.inject(FaultKind.DRIP_AFTER, ms=50, cap_s=60, times=1, method="GET", route="wallet")
    with _raw_request(doc, "GET", f"/pos/wallets/token/{MAX}") as sock:
        got = b"".join(_read(sock, at_least=3))
        doc.faults.set_rules([])  # the server recovered; this connection is still dripped on
        got += b"".join(_read(sock, at_least=len(got) + 3))
        doc.faults.clear()
        got += b"".join(_read(sock))  # the server hangs up, long before the 60 s cap
    assert got[:6] == b"HTTP/1" and b"\r\n\r\n" not in got  # cut short in the head, never completed


# -- ledger persistence and the command line ------------------------------------------------------------


def test_ledger_survives_a_restart(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    with WalletEmulator.demo("doc", ledger_path=ledger) as emu, api_client(emu) as client:
        assert client.post(SALE_URL, json=doc_sale(["latte"], "persisted-key-01234567")).status_code == 201
    assert json.loads(ledger.read_text())["wallets"][MAX]["balance"] == 1650
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.json"]  # no temp file left behind
    with WalletEmulator.demo("doc", ledger_path=ledger) as emu, api_client(emu) as client:
        assert emu.balance(MAX) == 1650  # the demo seed does not overwrite the stored balance
        assert [t.amount for t in emu.transactions()] == [-350]
        again = client.post(SALE_URL, json=doc_sale(["latte"], "persisted-key-01234567"))
    assert again.status_code == 202


def test_unreadable_ledger_says_which_file(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    ledger.write_text("{not json")
    with pytest.raises(LedgerError, match=r"ledger\.json"):
        WalletEmulator("doc", ledger_path=ledger)


def test_cli_runs_until_sigterm_and_is_driven_through_the_control_endpoints(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    command = [sys.executable, "-m", "terminal.emulator.wallet", "--flavour", "real", "--port", "0"]
    command += ["--ledger", str(ledger), "--demo"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        headers = {"Authorization": f"Bearer {ready['api_token']}"}
        with httpx.Client(base_url=ready["base_url"], headers=headers, timeout=5) as client:
            assert client.get(f"/pos/wallets/token/{MAX}/").json()["balance"] == 2000
            faults = httpx.post(ready["control_url"] + "/faults", json={"rules": [{"kind": "drop_after"}]})
            assert faults.status_code == 200
            with pytest.raises(httpx.TransportError):
                client.post(
                    f"/pos/wallets/token/{MAX}/transactions/", json={"products": [2], "description": "x"}
                )
        ledger_view = httpx.get(ready["control_url"] + "/ledger").json()
        assert ledger_view["wallets"][MAX]["balance"] == 1700
        assert httpx.get(ready["control_url"] + "/stats").json()["faults"] == {"drop_after": 1}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(ledger.read_text())["wallets"][MAX]["balance"] == 1700
