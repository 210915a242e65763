"""The ready2order emulator: products in bare-array pages, tokens, invoices on PUT and POST, the daily
report, search by query, dates (the account's time zone) and training mode, cancellation, the 60-a-minute
limit with the real 429 body and block, the grant desk's hook, control endpoints and its command line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from terminal.emulator.ready2order import Ready2OrderEmulator
from terminal.emulator.ready2order.rate_limit import rate_limit_body
from terminal.emulator.wallet.routes import ApiRequest
from tests.terminal_lab import REPO

pytestmark = pytest.mark.ready2order

ITEM = {
    "item_name": "Espresso",
    "item_quantity": 1,
    "item_price": "2.50",
    "item_vatId": 2,
    "item_priceBase": "brutto",
}


def invoice_body(
    ref: str = "tREF", *, training: bool = False, items: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "paymentMethod_id": 3,
        "user_id": 5678,
        "invoice_externalReferenceNumber": ref,
        "invoice_testMode": training,
        "invoice_priceBase": "gross",
        "items": items if items is not None else [ITEM],
    }


class Api:
    """Calls the emulator's ``handle`` as its HTTP handler would (no faults), with a token."""

    def __init__(self, emu: Ready2OrderEmulator, token: str | None = None) -> None:
        self.emu = emu
        self.token = emu.account_token if token is None else token

    def __call__(self, method: str, path: str, body: object = None, query: str = "") -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        raw = b"" if body is None else json.dumps(body).encode()
        resp = self.emu.handle(ApiRequest(method, "/v1" + path, query, headers, raw, "http://127.0.0.1"))
        return resp.status, json.loads(resp.body)


@pytest.fixture
def emu() -> Ready2OrderEmulator:
    return Ready2OrderEmulator(rate_limit=10_000)  # handle() needs no running server


def test_products_come_in_bare_array_pages_with_prices_as_numbers_or_strings(
    emu: Ready2OrderEmulator,
) -> None:
    api = Api(emu)
    pages = [api("GET", "/products", query=f"page={n}&limit=3") for n in (1, 2, 3)]
    assert [s for s, _ in pages] == [200, 200, 200]
    assert [len(p) for _, p in pages] == [3, 1, 0]  # the list ends on a short (or empty) page
    assert all(isinstance(p, list) for _, p in pages)
    prices = [p["product_price"] for p in pages[0][1]]
    assert any(isinstance(x, str) for x in prices) and any(isinstance(x, float) for x in prices)
    assert api("GET", "/products", query="page=0")[0] == 400


def test_payment_methods_vat_rates_and_the_daily_report(emu: Ready2OrderEmulator) -> None:
    api = Api(emu)
    status, methods = api("GET", "/paymentMethods")
    assert status == 200 and {"payment_id": 3, "payment_name": "Wallet"}.items() <= methods[2].items()
    assert [r["id"] for r in api("GET", "/vat-rates")[1]] == [1, 2, 3, 4]
    users = api("GET", "/users")[1]
    assert [(u["user_id"], u["user_firstName"]) for u in users] == [(1, "Chef"), (5678, "taptill")]
    assert api("GET", "/dailyReport/status")[1]["status"] == "open"
    assert api("PUT", "/dailyReport/open")[0] == 400  # only one can be open
    emu.close_day()
    assert api("GET", "/dailyReport/status")[1] == {"status": "closed"}
    status, refused = api("PUT", "/document/invoice", invoice_body())
    assert status == 400 and "daily report" in refused["msg"]
    assert api("PUT", "/dailyReport/open")[0] == 200 and emu.account.day_is_open()


@pytest.mark.parametrize(
    ("token", "status"), [("", 401), ("garbled", 401), ("r2o-demo-developer-token", 403)]
)
def test_account_endpoints_want_an_account_token(emu: Ready2OrderEmulator, token: str, status: int) -> None:
    for path in ("/products", "/paymentMethods", "/document/invoice", "/dailyReport/status"):
        code, body = Api(emu, token)("GET", path)
        assert code == status and body["error"] is True


def test_tokens_the_grant_flow_hands_out_and_revocation(emu: Ready2OrderEmulator) -> None:
    emu.add_account_token("granted-later")
    assert Api(emu, "granted-later")("GET", "/vat-rates")[0] == 200
    emu.revoke_account_token("granted-later")
    assert Api(emu, "granted-later")("GET", "/vat-rates")[0] == 401


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_an_invoice_is_created_on_put_and_post(emu: Ready2OrderEmulator, method: str) -> None:
    items = [ITEM, {**ITEM, "item_name": "Bier", "item_quantity": 2, "item_price": 4.5, "item_vatId": 1}]
    status, inv = Api(emu)(method, "/document/invoice", invoice_body("tA", items=items))
    assert status == 200
    assert inv["invoice_total"] == 11.5 and inv["invoice_externalReferenceNumber"] == "tA"
    assert inv["invoice_numberFull"].startswith("RG") and inv["invoice_testMode"] is False
    assert [i["item_total"] for i in inv["items"]] == ["2.50", "9.00"]
    status, training = Api(emu)(method, "/document/invoice", invoice_body("tB", training=True))
    assert training["invoice_numberFull"].startswith("TR") and training["invoice_testMode"] is True


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"paymentMethod_id": 99}, "paymentMethod_id 99"),
        ({"user_id": None}, "user_id"),
        ({"items": []}, "items must be a non-empty list"),
        ({"items": [{**ITEM, "item_vatId": 9}]}, "item_vatId 9"),
        ({"items": [{**ITEM, "item_price": "abc"}]}, "must be numbers"),
        ({"items": [{**ITEM, "product_id": 999}]}, "product_id 999"),
        ({"invoice_testMode": "yes"}, "invoice_testMode"),
    ],
)
def test_a_bad_invoice_is_refused_in_the_servers_words(
    emu: Ready2OrderEmulator, change: dict[str, Any], words: str
) -> None:
    status, body = Api(emu)("PUT", "/document/invoice", {**invoice_body(), **change})
    assert status == 400 and words in body["msg"] and emu.invoices() == []


def _search(emu: Ready2OrderEmulator, **params: str) -> tuple[int, Any]:
    return Api(emu)("GET", "/document/invoice", query=str(httpx.QueryParams(params)))


def test_search_by_query_training_mode_offset_and_limit(emu: Ready2OrderEmulator) -> None:
    api = Api(emu)
    for n in range(5):
        api("PUT", "/document/invoice", invoice_body(f"tKEY{n}"))
    api("PUT", "/document/invoice", invoice_body("tKEY9", training=True))
    status, found = _search(emu, query="tkey")
    assert status == 200 and found["count"] == 5  # training invoices are invisible by default
    assert found["invoices"][0]["invoice_externalReferenceNumber"] == "tKEY4"  # newest first
    assert _search(emu, query="tKEY9")[1]["count"] == 0
    assert _search(emu, query="tKEY9", testMode="true")[1]["count"] == 1
    page = _search(emu, query="tKEY", offset="3", limit="2")[1]
    assert page["count"] == 5 and len(page["invoices"]) == 2
    assert _search(emu, query="RG")[1]["count"] == 5  # the invoice number matches too
    assert _search(emu, limit="0")[0] == 400 and _search(emu, dateFrom="yesterday")[0] == 400


def test_whole_dates_are_the_accounts_days(emu: Ready2OrderEmulator) -> None:
    """23:30 UTC on 1 June is 01:30 on 2 June in Vienna: a search for 1 June (the terminal's UTC date)
    does not find it; one over the day before to the day after does."""
    emu.clock.set(datetime(2024, 6, 1, 23, 30, tzinfo=UTC).timestamp())
    emu.open_day(emu.clock.now())
    Api(emu)("PUT", "/document/invoice", invoice_body("tLATE"))
    by = {"query": "tLATE", "dateField": "b_dateTime"}
    assert _search(emu, **by, dateFrom="2024-06-01", dateTo="2024-06-01")[1]["count"] == 0
    assert _search(emu, **by, dateFrom="2024-06-02", dateTo="2024-06-02")[1]["count"] == 1
    assert _search(emu, **by, dateFrom="2024-05-31", dateTo="2024-06-02")[1]["count"] == 1
    assert _search(emu, **by, dateFrom="2024-06-01T23:00:00Z", dateTo="2024-06-02T00:00:00Z")[1]["count"] == 1


def test_the_default_date_field_is_the_daily_reports_day(emu: Ready2OrderEmulator) -> None:
    """A day left open since three days ago: filtered by daily report (the default) the invoice of today
    lies three days back; by the bill's own time it is today."""
    now = datetime(2024, 6, 10, 12, 0, tzinfo=UTC).timestamp()
    emu.clock.set(now)
    emu.open_day(now - 3 * 86400)
    Api(emu)("PUT", "/document/invoice", invoice_body("tOLDDAY"))
    window = {"query": "tOLDDAY", "dateFrom": "2024-06-09", "dateTo": "2024-06-11"}
    assert _search(emu, **window)[1]["count"] == 0
    assert _search(emu, **window, dateField="b_dateTime")[1]["count"] == 1


def test_cancellation_leaves_a_storno(emu: Ready2OrderEmulator) -> None:
    api = Api(emu)
    inv = api("PUT", "/document/invoice", invoice_body("tX"))[1]
    status, storno = api("POST", f"/document/invoice/{inv['invoice_id']}/delete", {})
    assert (
        status == 200
        and storno["invoice_total"] == -2.5
        and storno["invoice_reference_id"] == inv["invoice_id"]
    )
    original = api("GET", f"/document/invoice/{inv['invoice_id']}")[1]
    assert original["invoice_deleted_at"] is not None
    assert api("POST", f"/document/invoice/{inv['invoice_id']}/delete", {})[0] == 400
    assert api("POST", "/document/invoice/999999/delete", {})[0] == 404
    assert len(emu.invoices()) == 2 and emu.invoices(include_cancelled=False) == []  # both stay, both void


def test_sixty_a_minute_then_the_real_429_and_a_one_minute_block() -> None:
    emu = Ready2OrderEmulator()
    api = Api(emu)
    assert all(api("GET", "/vat-rates")[0] == 200 for _ in range(60))
    status, body = api("GET", "/vat-rates")
    assert status == 429 and body == rate_limit_body(60, 1)
    assert body["code"] == "rateLimitExceeded" and "blocked for at least 1 minutes" in body["msg"]
    emu.clock.advance(59)
    assert api("GET", "/vat-rates")[0] == 429  # blocked, though the window has moved on
    emu.clock.advance(2)
    assert api("GET", "/vat-rates")[0] == 200
    assert emu.stats()["rate_limited"] == 2
    assert Api(emu, "garbled")("GET", "/vat-rates")[0] == 401  # every request counts, refused ones too


def test_the_grant_desk_answers_its_paths_before_the_account_routes(emu: Ready2OrderEmulator) -> None:
    dev = Api(emu, emu.developer_token)
    status, grant = dev("POST", "/developerToken/grantAccessToken", {})
    assert status == 200 and grant["status"] == "pending" and emu.grant_desk.grants_made == 1
    assert dev("GET", "/products")[0] == 403  # not a grant path: the account routes answer
    issued = Api(emu, emu.grant_desk.approve(grant["grantAccessToken"]))
    assert issued("GET", "/products")[0] == 200  # the account token the desk issued opens the account
    assert issued("POST", "/developerToken/grantAccessToken", {})[0] == 403  # and only the account
    assert Api(emu)("POST", "/developerToken/grantAccessToken", {})[0] == 403  # as the seeded one


@pytest.fixture
def served() -> Iterator[Ready2OrderEmulator]:
    with Ready2OrderEmulator() as emu:
        yield emu


def test_over_http_with_control_endpoints(served: Ready2OrderEmulator) -> None:
    headers = {"Authorization": f"Bearer {served.account_token}"}
    with httpx.Client(base_url=served.base_url, headers=headers) as http:
        assert http.put("/document/invoice", json=invoice_body("tH")).status_code == 200
        control = f"http://127.0.0.1:{served.port}/_emulator"
        assert http.post(f"{control}/day", json={"open": False}).json() == {"open": False}
        assert http.get("/dailyReport/status").json()["status"] == "closed"
        before = served.clock.now()
        http.post(f"{control}/clock", json={"advance": 120})
        assert served.clock.now() - before >= 120
        assert [i["invoice_externalReferenceNumber"] for i in http.get(f"{control}/invoices").json()] == [
            "tH"
        ]
        http.post(f"{control}/faults", json={"rules": [{"kind": "error500_before", "route": "products"}]})
        assert http.get("/products").status_code == 500
        stats = http.get(f"{control}/stats").json()
        assert stats["requests_by_route"]["invoice_create"] == 1 and stats["faults"] == {"error500_before": 1}


def test_the_owner_answers_grants_through_the_control_endpoint(served: Ready2OrderEmulator) -> None:
    control = f"http://127.0.0.1:{served.port}/_emulator/grants"
    dev = {"Authorization": f"Bearer {served.developer_token}"}
    with httpx.Client(base_url=served.base_url) as http:
        first, second = (
            http.post("/developerToken/grantAccessToken", headers=dev, json={}).json()["grantAccessToken"]
            for _ in range(2)
        )
        assert http.get(control).json() == {"pending": [first, second]}
        assert http.post(control, json={"approve": first}).json() == {"pending": [second]}
        assert http.post(control, json={"deny": second}).json() == {"pending": []}
        assert http.post(control, json={"approve": second}).status_code == 409  # answered already
        assert http.post(control, json={"approve": "never-issued"}).status_code == 404
        assert http.post(control, json={"approve": first, "deny": second}).status_code == 400
        state = http.get(f"/developerToken/grantAccessToken/{first}", headers=dev).json()
        account = {"Authorization": f"Bearer {state['accountToken']}"}
        assert state["status"] == "approved" and http.get("/vat-rates", headers=account).status_code == 200
    assert served.requests["POST /v1/developerToken/grantAccessToken"] == 2


def test_the_command_line_prints_where_it_listens_and_its_stats() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "terminal.emulator.ready2order", "--port", "0", "--day-closed"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        status = httpx.get(
            f"{line['base_url']}/dailyReport/status",
            headers={"Authorization": "Bearer r2o-demo-account-token"},
        )
        assert status.json() == {"status": "closed"} and line["rate_limit"] == 60
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert json.loads(err.strip().splitlines()[-1])["stopped"] is True


def test_the_real_latency_profile_answers_writes_as_slowly_as_a_server_under_load() -> None:
    import time

    with Ready2OrderEmulator(latency="real") as slow:
        headers = {"Authorization": f"Bearer {slow.account_token}"}
        with httpx.Client(base_url=slow.base_url, headers=headers) as http:
            start = time.monotonic()
            assert http.put("/document/invoice", json=invoice_body("tSLOW")).status_code == 200
            assert time.monotonic() - start >= 0.15  # writes take 150-400 ms
    assert slow.faults.profile == "real"
