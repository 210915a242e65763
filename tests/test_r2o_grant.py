"""The ready2order grant client and account lists against the ready2order emulator (its grant desk and
account) over real HTTP on loopback, and the approval link as a QR code on luma's emulator, decoded back
as a phone would."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import zxingcpp
from luma.emulator.device import capture
from PIL import Image

from hw.display.oled import OledDisplay
from provisioning import ready2order
from provisioning.exits import Stop
from provisioning.report import Report
from terminal.config import DisplayConfig
from terminal.emulator.faults import FaultKind
from terminal.emulator.ready2order import EmulatedProduct, Ready2OrderEmulator
from terminal.emulator.ready2order.grant import APPROVAL_BASE, GRANT_PATH
from terminal.emulator.ready2order.server import DEMO_ACCOUNT_TOKEN, DEMO_DEVELOPER_TOKEN
from terminal.emulator.wallet.routes import ApiRequest
from terminal.model import Product as WalletProduct
from terminal.ready2order.client import Ready2OrderClient
from terminal.ready2order.grant import GrantClient
from terminal.ready2order.outcomes import (
    Approved,
    Denied,
    Expired,
    Grant,
    Listed,
    Pending,
    Product,
    Unauthorized,
    Unavailable,
    VatRate,
)
from terminal.service.secret import Secret
from tests.r2o_lab import UNLIMITED, wait_for_pending

DEVELOPER_TOKEN = DEMO_DEVELOPER_TOKEN
SEEDED_ACCOUNT_TOKEN = DEMO_ACCOUNT_TOKEN

# luma.emulator still calls Image.getdata(), which Pillow deprecates; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")


@pytest.fixture
def lab() -> Iterator[Ready2OrderEmulator]:
    with Ready2OrderEmulator(rate_limit=UNLIMITED) as running:
        yield running


async def ask(lab: Ready2OrderEmulator, token: str = DEVELOPER_TOKEN) -> Grant:
    async with GrantClient(lab.base_url, Secret(token)) as client:
        grant = await client.request_grant()
    assert isinstance(grant, Grant), grant
    return grant


async def state(lab: Ready2OrderEmulator, grant: Grant | str) -> object:
    async with GrantClient(lab.base_url, Secret(DEVELOPER_TOKEN)) as client:
        return await client.poll(grant)


@pytest.mark.parametrize("word", ["approved", "granted"])
def test_a_grant_is_pending_until_the_owner_approves_it_in_either_spelling(word: str) -> None:
    with Ready2OrderEmulator(rate_limit=UNLIMITED, approved_word=word) as lab:
        grant = asyncio.run(ask(lab))
        assert grant.approval_url == f"{APPROVAL_BASE}?grantAccessToken={grant.token}"
        assert grant.expires_at is not None and abs(grant.expires_at - (lab.clock.now() + 600)) < 5
        assert isinstance(asyncio.run(state(lab, grant)), Pending)
        account_token = lab.grant_desk.approve(grant.token)
        approved = asyncio.run(state(lab, grant))
    assert isinstance(approved, Approved)
    assert approved.account_token.reveal() == account_token
    assert account_token not in repr(approved)


def test_a_denied_grant_stays_denied(lab: Ready2OrderEmulator) -> None:
    grant = asyncio.run(ask(lab))
    lab.grant_desk.deny(grant.token)
    assert isinstance(asyncio.run(state(lab, grant)), Denied)
    with pytest.raises(ValueError, match="already denied"):
        lab.grant_desk.approve(grant.token)


def test_a_grant_expires_after_ten_minutes_and_one_never_made_is_expired_too(
    lab: Ready2OrderEmulator,
) -> None:
    grant = asyncio.run(ask(lab))
    lab.clock.advance(599)
    assert isinstance(asyncio.run(state(lab, grant)), Pending)
    assert lab.grant_desk.pending() == [grant.token]
    lab.clock.advance(2)
    assert isinstance(asyncio.run(state(lab, grant)), Expired)
    assert lab.grant_desk.pending() == []
    with pytest.raises(ValueError, match="expired"):
        lab.grant_desk.approve(grant.token)
    unknown = asyncio.run(state(lab, "never-issued"))
    assert isinstance(unknown, Expired) and "404" in unknown.reason


def test_each_token_works_only_where_it_belongs_and_a_refusal_names_it(lab: Ready2OrderEmulator) -> None:
    async def go() -> list[object]:
        out: list[object] = []
        for token in (SEEDED_ACCOUNT_TOKEN, "garbled"):
            async with GrantClient(lab.base_url, Secret(token)) as client:
                out.append(await client.request_grant())
        for token in (DEVELOPER_TOKEN, "garbled"):
            async with Ready2OrderClient(lab.base_url, Secret(token)) as client:
                out.append(await client.payment_methods())
        return out

    account_as_developer, garbled_developer, developer_as_account, garbled_account = asyncio.run(go())
    assert isinstance(account_as_developer, Unauthorized)
    assert (account_as_developer.which, account_as_developer.status) == ("developer", 403)
    assert "that is an account token" in account_as_developer.explain()
    assert isinstance(garbled_developer, Unauthorized) and garbled_developer.status == 401
    assert "does not know the developer token" in garbled_developer.explain()
    assert isinstance(developer_as_account, Unauthorized)
    assert (developer_as_account.which, developer_as_account.status) == ("account", 403)
    assert "that is a developer token" in developer_as_account.explain()
    assert isinstance(garbled_account, Unauthorized) and garbled_account.status == 401
    assert lab.grant_desk.grants_made == 0


def test_the_desk_answers_only_its_paths_and_a_missing_token_is_401(lab: Ready2OrderEmulator) -> None:
    def request(method: str, path: str, headers: dict[str, str]) -> ApiRequest:
        return ApiRequest(method, path, "", headers, b"", "http://127.0.0.1")

    assert lab.grant_desk.handle(request("GET", "/v1/products", {})) is None
    missing = lab.grant_desk.handle(request("POST", GRANT_PATH, {}))
    basic = lab.grant_desk.handle(request("POST", GRANT_PATH, {"authorization": "Basic eDp5"}))
    wrong_method = lab.grant_desk.handle(
        request("DELETE", GRANT_PATH, {"authorization": f"Bearer {DEVELOPER_TOKEN}"})
    )
    assert missing is not None and basic is not None and wrong_method is not None
    assert (missing.status, basic.status, wrong_method.status) == (401, 401, 405)
    assert json.loads(missing.body) == {"error": True, "msg": "Missing or malformed Authorization header"}


def test_lists_are_read_page_by_page_to_a_short_or_empty_page_with_exact_prices() -> None:
    # prices go out "mixed": every other one as a string, the rest as JSON numbers
    five = [
        EmulatedProduct(1, "Espresso", Decimal("2.9"), 1),  # 2.9, a number: Decimal("2.9"), never float
        EmulatedProduct(2, "Tee", Decimal("124.25"), 1),  # "124.25", a string
        EmulatedProduct(3, "Wasser", Decimal(3), 1),  # a whole number
        EmulatedProduct(4, "Mate", Decimal("3.10"), None, vat_percent=Decimal("10.5")),
        EmulatedProduct(5, "Cola", Decimal(2), 1),
    ]

    def account(products: list[EmulatedProduct], *, ignore_paging: bool = False) -> Ready2OrderEmulator:
        return Ready2OrderEmulator(
            products=products, rate_limit=UNLIMITED, price_style="mixed", ignore_paging=ignore_paging
        )

    async def products(lab: Ready2OrderEmulator) -> object:
        async with Ready2OrderClient(lab.base_url, Secret(SEEDED_ACCOUNT_TOKEN), page_size=2) as client:
            return await client.products()

    with account(five) as lab:
        listed = asyncio.run(products(lab))
        assert lab.requests["GET /v1/products"] == 3  # 2 + 2 + a short page of 1
    assert isinstance(listed, Listed)
    by_id = {p.id: p for p in listed.items}
    assert [p.id for p in listed.items] == [1, 2, 3, 4, 5]
    assert (by_id[1].price, by_id[2].price, by_id[3].price) == (Decimal("2.9"), Decimal("124.25"), Decimal(3))
    assert str(by_id[4].price) == "3.10" and by_id[4].vat_percent == Decimal("10.5")
    with account(five[:4]) as lab:
        assert len(asyncio.run(products(lab)).items) == 4  # type: ignore[attr-defined]
        assert lab.requests["GET /v1/products"] == 3  # 2 + 2 + an empty page
    with account(five, ignore_paging=True) as lab:
        assert len(asyncio.run(products(lab)).items) == 5  # type: ignore[attr-defined]
        assert lab.requests["GET /v1/products"] == 2  # the second page brought nothing new


def test_a_dead_dripping_or_foreign_server_is_unreachable_within_the_deadline(
    lab: Ready2OrderEmulator,
) -> None:
    async def ask_once(timeout_s: float) -> object:
        async with GrantClient(lab.base_url, Secret(DEVELOPER_TOKEN), timeout_s=timeout_s) as client:
            return await client.request_grant()

    lab.faults.inject(FaultKind.DRIP_BEFORE, ms=100, cap_s=30, times=1)
    dripped = asyncio.run(ask_once(0.5))
    assert dripped == Unavailable("no complete answer within 0.5 s", maybe_applied=False)
    lab.faults.inject(FaultKind.GARBAGE_HTML, times=1)
    foreign = asyncio.run(ask_once(5))
    assert isinstance(foreign, Unavailable) and "not the ready2order API" in foreign.reason
    lab.faults.set_down(True)
    down = asyncio.run(ask_once(5))
    assert isinstance(down, Unavailable) and "connection trouble" in down.reason
    assert lab.grant_desk.grants_made == 0


def test_the_approval_link_is_a_qr_code_on_the_panel_and_a_new_link_replaces_an_expired_one(
    lab: Ready2OrderEmulator, tmp_path: Path
) -> None:
    device = capture(width=128, height=64, mode="1", file_template=str(tmp_path / "frame_{0:03}.png"))
    display = OledDisplay(DisplayConfig(kind="oled"), device=device)
    tokens: list[str] = []

    def owner() -> None:
        tokens.append(wait_for_pending(lab, 1))
        lab.clock.advance(601)  # the first link runs out on the phone
        tokens.append(wait_for_pending(lab, 2))
        lab.grant_desk.approve(tokens[1])

    phone = threading.Thread(target=owner, daemon=True)
    phone.start()
    settings = ready2order.Ready2OrderSettings(lab.base_url, Secret(DEVELOPER_TOKEN), 60.0, 0.05, 5.0)
    token = asyncio.run(
        ready2order.approved_token(
            settings, Secret(DEVELOPER_TOKEN), ready2order.shower(display), Report(False)
        )
    )
    phone.join(timeout=30)
    display.close()
    assert lab.accepts_account_token(token.reveal())
    frames = sorted(tmp_path.glob("frame_*.png"))
    read = [decode(frame) for frame in frames if decode(frame)]
    assert read == [[f"{APPROVAL_BASE}?grantAccessToken={t}"] for t in tokens]


def decode(path: Path) -> list[str]:
    """What a QR reader finds in one captured frame (scaled up as a phone camera would see it)."""
    img = Image.open(path).convert("L")
    return [r.text for r in zxingcpp.read_barcodes(img.resize((img.width * 4, img.height * 4)))]


@pytest.mark.parametrize(
    ("fault", "said"), [(FaultKind.ERROR500_BEFORE, "HTTP 500"), (FaultKind.RATE_LIMIT_429, "HTTP 429")]
)
def test_polls_ride_out_trouble_and_giving_up_names_the_last(
    lab: Ready2OrderEmulator, fault: FaultKind, said: str
) -> None:
    settings = ready2order.Ready2OrderSettings(lab.base_url, Secret(DEVELOPER_TOKEN), 1.0, 0.05, 5.0)
    asked = threading.Event()

    def break_polls() -> None:
        wait_for_pending(lab, 1)
        lab.faults.inject(fault)  # every poll now fails this way
        asked.set()

    threading.Thread(target=break_polls, daemon=True).start()
    with pytest.raises(Stop) as stopped:
        asyncio.run(
            ready2order.approved_token(settings, Secret(DEVELOPER_TOKEN), lambda url: None, Report(False))
        )
    assert asked.is_set()
    assert f"nobody approved ready2order access within 1 s (last problem: {said}" in str(stopped.value)
    assert lab.grant_desk.grants_made == 1


def test_products_map_by_reference_item_number_or_name_and_ambiguity_maps_nothing() -> None:
    wallet = [
        WalletProduct(7, "Bier", 350),  # a pretix item id
        WalletProduct(8, "Radler", 350),
        WalletProduct(9, "Limo", 300),
        WalletProduct(10, "Saft", 300),
    ]
    products = [
        Product(21, "Helles 0,5", item_number="7", vat_id=1),
        Product(22, "RADLER", vat_percent=Decimal("20")),
        Product(23, "Limo", vat_percent=Decimal("13")),  # no rate with 13 %
        Product(24, "Saft", external_reference="10", vat_id=2),
        Product(25, "Saft gespritzt", external_reference="10", vat_id=2),
    ]
    rates = [VatRate(1, Decimal("20")), VatRate(2, Decimal("10"))]
    mapped, unmapped = ready2order.map_products(wallet, products, rates)
    assert [(m.wallet_product, m.product_id, m.vat_id, how) for m, how in mapped] == [
        (7, 21, 1, "item number"),
        (8, 22, 1, "name"),
    ]
    assert [(p.id, why) for p, why in unmapped] == [
        (9, "its ready2order product 'Limo' (23) has no known VAT rate"),
        (10, "2 ready2order products share its externalReference (ids 24, 25)"),
    ]
