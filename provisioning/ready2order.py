"""taptill-provision's ready2order part: the account token, then what the [ready2order] table says.

The account token comes from a grant the account owner approves on a phone: the approval link is printed
and shown as a QR code on the OLED, its state polled until the token arrives; a grant that expires (10
minutes) is replaced by a new one until ``--ready2order-wait`` is used up. A stored token that still
works needs no grant: the first listing call is its check. Then the account's payment methods, VAT
rates, users and products give the payment method for wallet sales (by name, never created), the user
and each wallet product's ready2order product (by externalReference, item number or name).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from hw.display.base import Display
from provisioning.detect import OledFound
from provisioning.exits import EXIT_NOT_APPROVED, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, Stop
from provisioning.render import READY2ORDER_TOKEN_PATH, ProductMapping
from provisioning.report import Report
from terminal.model import Product as WalletProduct
from terminal.ready2order.client import Ready2OrderClient
from terminal.ready2order.grant import GrantClient
from terminal.ready2order.outcomes import (
    Approved,
    Denied,
    Expired,
    Failure,
    Grant,
    Listed,
    ListOutcome,
    PaymentMethod,
    Pending,
    Product,
    RateLimited,
    Refused,
    Unauthorized,
    Unavailable,
    User,
    VatRate,
    describe,
)
from terminal.screens import ApproveAccessScreen
from terminal.service.secret import Secret

T = TypeVar("T")


@dataclass(frozen=True)
class Ready2OrderSettings:
    """What the ready2order part was asked for (from provisioning's answers)."""

    base_url: str
    developer_token: Secret | None
    wait_s: float
    poll_s: float
    timeout_s: float  # each request's overall deadline


@dataclass(frozen=True)
class AccountLists:
    """Everything the account offers to map against."""

    payment_methods: tuple[PaymentMethod, ...]
    vat_rates: tuple[VatRate, ...]
    users: tuple[User, ...] | None  # None: the token may not list users
    products: tuple[Product, ...]


# --- the account token -------------------------------------------------------------------------------


async def account_token(
    settings: Ready2OrderSettings,
    stored: Secret | None,
    show: Callable[[str], None],
    keep: Callable[[Secret], None],
    report: Report,
    *,
    dry_run: bool,
) -> tuple[Secret, AccountLists] | None:
    """A working account token with the account's lists, or None in a dry run that would need a grant.

    ``stored`` is the token on disk, tried first; a new one is passed to ``keep`` (store it, 0600) at
    once, before anything else can fail, so a later problem never costs the owner another approval.
    ``show`` puts an approval link on the display. Raises Stop with one line."""
    if stored is not None:
        lists = await list_account(settings, stored)
        if isinstance(lists, AccountLists):
            report.line(
                "ready2order", "stored", f"the account token in {READY2ORDER_TOKEN_PATH} works; no grant"
            )
            return stored, lists
        report.line("ready2order", "refused", f"{lists.explain()}; asking for a new grant")
    if dry_run:
        report.line(
            "ready2order",
            "grant needed",
            "no working account token, and a dry run asks for no grant: without --dry-run the owner "
            "approves one on a phone",
        )
        return None
    if settings.developer_token is None:
        raise Stop(
            EXIT_USAGE,
            f"ready2order access needs the owner's approval (no working account token in "
            f"{READY2ORDER_TOKEN_PATH}): give the developer token with --ready2order-developer-token-file "
            "FILE (mode 0600) or - for standard input",
        )
    token = await approved_token(settings, settings.developer_token, show, report)
    keep(token)
    lists = await list_account(settings, token)
    if isinstance(lists, Unauthorized):
        raise Stop(EXIT_REFUSED, lists.explain())
    return token, lists


async def approved_token(
    settings: Ready2OrderSettings,
    developer_token: Secret,
    show: Callable[[str], None],
    report: Report,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Secret:
    """Ask for grants until the owner approves one (or denies, or ``wait_s`` runs out: Stop)."""
    until = clock() + settings.wait_s
    trouble: str | None = None
    async with GrantClient(settings.base_url, developer_token, timeout_s=settings.timeout_s) as client:
        while True:
            grant = await client.request_grant()
            if not isinstance(grant, Grant):
                raise _stop(grant, "refused to start a grant")
            report.prompt(
                "approve",
                grant.approval_url,
                f"open {grant.approval_url} on a phone (or scan the code on the display), log in to "
                f"ready2order and approve taptill; waiting up to {_span(until - clock())}",
            )
            show(grant.approval_url)
            while True:
                left = until - clock()
                if left <= 0:
                    last = f" (last problem: {trouble})" if trouble else ""
                    raise Stop(
                        EXIT_NOT_APPROVED,
                        f"nobody approved ready2order access within {_span(settings.wait_s)}{last}; run "
                        "again (--ready2order-wait for longer) and approve at the link it shows",
                    )
                await asyncio.sleep(min(settings.poll_s, left))
                state = await client.poll(grant)
                if isinstance(state, Pending):
                    continue
                if isinstance(state, Approved):
                    report.line("approve", "approved", "approved: the account token arrived")
                    return state.account_token
                if isinstance(state, Denied):
                    raise Stop(
                        EXIT_REFUSED,
                        "the ready2order owner denied taptill access; run again to ask anew",
                    )
                if isinstance(state, Expired):
                    report.line(
                        "approve",
                        "expired",
                        f"the approval link expired ({state.reason}; ready2order keeps one 10 minutes); "
                        "a new one follows",
                    )
                    break
                if isinstance(state, Unavailable | RateLimited):  # may be gone at the next look
                    said = describe(state)
                    if said != trouble:  # once per kind of trouble, not once per poll
                        report.line("approve", "retrying", f"cannot see the grant ({said}); asking again")
                    trouble = said
                    if isinstance(state, RateLimited):  # the block lasts at least a minute, for the whole IP
                        await asyncio.sleep(max(0.0, min(state.wait_s, until - clock())))
                    continue
                raise _stop(state, "refused to show the grant")


async def list_account(settings: Ready2OrderSettings, token: Secret) -> AccountLists | Unauthorized:
    """The account's lists; Unauthorized when the first call refuses ``token`` (a token to replace).

    Raises Stop for anything else that keeps the lists from arriving."""
    async with Ready2OrderClient(settings.base_url, token, timeout_s=settings.timeout_s) as client:
        methods = await client.payment_methods()
        if isinstance(methods, Unauthorized):
            return methods
        methods = _listed(methods, "the payment methods")
        vat_rates = _listed(await client.vat_rates(), "the VAT rates")
        users_res = await client.users()
        users = users_res.items if isinstance(users_res, Listed) else None
        products = _listed(await client.products(), "the products")
    return AccountLists(methods.items, vat_rates.items, users, products.items)


def _listed(res: ListOutcome[T], what: str) -> Listed[T]:
    if isinstance(res, Listed):
        return res
    raise _stop(res, f"refused to list {what}")


def _stop(res: Failure, doing: str) -> Stop:
    if isinstance(res, Unauthorized):
        return Stop(EXIT_REFUSED, res.explain())
    if isinstance(res, Refused):
        return Stop(EXIT_REFUSED, f"ready2order {doing} ({describe(res)})")
    if isinstance(res, RateLimited):
        return Stop(
            EXIT_UNREACHABLE, f"ready2order blocks this address for now ({res.message}); run again later"
        )
    return Stop(
        EXIT_UNREACHABLE,
        f"ready2order is unreachable or not its API ({res.reason}); check --ready2order-url and the network",
    )


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


# --- the approval link on the display ----------------------------------------------------------------


def approval_display(oled: OledFound | None, report: Report) -> Display | None:
    """The OLED the approval link is shown on as a QR code, or None (one line says the console it is)."""
    if oled is None:
        report.line("qr", None, "no display here: approve with the link above")
        return None
    from hw.display.oled import DisplayNotFound, OledDisplay
    from terminal.config import DisplayConfig

    try:
        display = OledDisplay(DisplayConfig(kind="oled", i2c_port=oled.port, i2c_address=oled.address))
    except DisplayNotFound as exc:
        report.line("qr", None, f"cannot show the link's QR code ({exc}); approve with the link above")
        return None
    report.line("qr", str(oled), f"the approval link shows as a QR code on the OLED at {oled}")
    return display


def shower(display: Display | None) -> Callable[[str], None]:
    """What puts an approval link on ``display`` (nothing without one)."""

    def show(url: str) -> None:
        if display is not None:
            display.show(ApproveAccessScreen(url=url))

    return show


# --- what the table says ------------------------------------------------------------------------------


def payment_method(methods: Sequence[PaymentMethod], name: str) -> PaymentMethod:
    """The one payment method called ``name`` (case-blind); Stop naming which to create otherwise."""
    wanted = name.strip().casefold()
    hits = [m for m in methods if m.name.strip().casefold() == wanted]
    if len(hits) == 1:
        return hits[0]
    if hits:
        ids = ", ".join(str(m.id) for m in hits)
        raise Stop(
            EXIT_USAGE,
            f"ready2order has {len(hits)} payment methods named {name!r} (ids {ids}); rename all but one",
        )
    listed = ", ".join(repr(m.name) for m in methods) or "none"
    raise Stop(
        EXIT_USAGE,
        f"ready2order has no payment method named {name!r} (it has {listed}); taptill creates none: create "
        f"one named {name!r} in ready2order (marked as paid), or pass --ready2order-payment-method NAME",
    )


def user(users: Sequence[User] | None, wanted: int | None) -> tuple[int, str]:
    """(user id, one line saying who it is): ``wanted`` if given (checked when users are listed), else
    the account's first user."""
    if wanted is not None:
        if users is None:
            return wanted, f"{wanted} (as given; the account's users cannot be listed to check it)"
        for u in users:
            if u.id == wanted:
                return wanted, f"{u.id} {u.name}"
        listed = ", ".join(f"{u.id} {u.name}" for u in users) or "none"
        raise Stop(
            EXIT_USAGE, f"ready2order has no user {wanted} (it has {listed}); fix --ready2order-user-id"
        )
    if not users:
        why = "has no users" if users is not None else "cannot list its users with this token"
        raise Stop(EXIT_USAGE, f"the ready2order account {why}; pass --ready2order-user-id ID")
    first = users[0]
    more = f" (the first of {len(users)}; --ready2order-user-id ID for another)" if len(users) > 1 else ""
    return first.id, f"{first.id} {first.name}{more}"


def map_products(
    wallet: Sequence[WalletProduct], products: Sequence[Product], vat_rates: Sequence[VatRate]
) -> tuple[list[tuple[ProductMapping, str]], list[tuple[WalletProduct, str]]]:
    """Each wallet product's ready2order product, with how it was found; the unmapped ones with why.

    Tried in order: the wallet product id as ``product_externalReference``, as ``product_itemnumber``,
    then the same name; all case-blind. Two hits at one step map nothing (a person must choose). The
    VAT id is the product's ``product_vat_id``, else the VAT rate whose value is its ``product_vat``."""
    mapped: list[tuple[ProductMapping, str]] = []
    unmapped: list[tuple[WalletProduct, str]] = []
    for wp in wallet:
        key, name = str(wp.id).strip().casefold(), wp.name.strip().casefold()
        steps: list[tuple[str, list[Product]]] = [
            ("externalReference", [p for p in products if _folded(p.external_reference) == key]),
            ("item number", [p for p in products if _folded(p.item_number) == key]),
            ("name", [p for p in products if name and p.name.strip().casefold() == name]),
        ]
        found: tuple[Product, str] | None = None
        problem = "no ready2order product has its id as externalReference or item number, nor its name"
        for how, hits in steps:
            if len(hits) == 1:
                found = hits[0], how
                break
            if hits:
                ids = ", ".join(str(p.id) for p in hits)
                problem = f"{len(hits)} ready2order products share its {how} (ids {ids})"
                break
        if found is None:
            unmapped.append((wp, problem))
            continue
        product, how = found
        vat_id = _vat_id(product, vat_rates)
        if vat_id is None:
            unmapped.append(
                (wp, f"its ready2order product {product.name!r} ({product.id}) has no known VAT rate")
            )
            continue
        mapped.append((ProductMapping(wp.id, product.id, vat_id, product.name), how))
    return mapped, unmapped


def _folded(value: str | None) -> str | None:
    return None if value is None else value.strip().casefold()


def _vat_id(product: Product, vat_rates: Sequence[VatRate]) -> int | None:
    if product.vat_id is not None:
        return product.vat_id
    same = [v for v in vat_rates if product.vat_percent is not None and v.percent == product.vat_percent]
    return same[0].id if len(same) == 1 else None
