"""Loads the terminal info and product list from the wallet server, or from the journal's cache offline."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from terminal.journal import Journal
from terminal.model import PERMISSIONS, Product, ProductId, TerminalInfo, printable
from terminal.service.credentials import WALLET_TOKEN
from terminal.wallet.client import WalletClient
from terminal.wallet.outcomes import InfoLoaded, NotFound, Refused, Unauthorized, Unavailable

log = logging.getLogger(__name__)

CACHE_KEY = "terminal_info"


class StartupError(Exception):
    """The terminal cannot start; the message says what to fix."""


class TokenRefused(StartupError):
    """The wallet server refuses the terminal's API token (401): revoked, or not this server's."""


def token_fix(token_file: Path | None) -> str:
    """What a person does about a refused API token: where the terminal reads it from."""
    credential = f"renew the {WALLET_TOKEN.credential} systemd credential"
    if token_file is None:
        return credential
    return f"put a valid token in {token_file} (or {credential}); a running terminal reads it again"


@dataclass(frozen=True)
class Catalog:
    info: TerminalInfo
    fresh: bool  # from the server just now, not from the cache
    problem: str = ""  # why not fresh: what the server answered, or why it could not be asked
    status: int | None = None  # the server's HTTP error status when it answered with one


@dataclass(frozen=True)
class NoCatalog:
    """Neither the server nor the journal's cache gave a product list: nothing can be priced or sold."""

    problem: str  # what the server answered (a 500 names the slugs to check), or why it was not reached
    status: int | None = None  # the server's HTTP error status when it answered with one

    def describe(self) -> str:
        said = "unreachable" if self.status is None else "answers with an error"
        return f"the wallet server {said} ({self.problem})"


def _to_json(info: TerminalInfo, trailing_slash: bool) -> dict[str, object]:
    return {
        "id": info.id,
        "friendly_name": info.friendly_name,
        "permission": info.permission,
        "products": [{"id": p.id, "name": p.name, "price": p.price_cents} for p in info.products],
        "trailing_slash": trailing_slash,
    }


def _from_json(data: object) -> tuple[TerminalInfo, bool] | None:
    if not isinstance(data, dict) or data.get("permission") not in PERMISSIONS:
        return None
    products = []
    for p in data.get("products") or []:
        if isinstance(p, dict) and isinstance(p.get("id"), str | int) and isinstance(p.get("price"), int):
            # printable: a cache written by an older version keeps a server's names as they came
            products.append(Product(p["id"], printable(str(p.get("name", p["id"])), 200), p["price"]))
    name = data.get("friendly_name")
    friendly = printable(name, 200) if isinstance(name, str) else None
    info = TerminalInfo(data.get("id"), friendly, data["permission"], tuple(products))
    return info, bool(data.get("trailing_slash"))


async def load_catalog(
    client: WalletClient, journal: Journal, timeout_s: float, *, at_start: bool = True
) -> Catalog | NoCatalog:
    """Fresh terminal info (cached for next time), else the cached copy (``fresh`` False: the server did
    not answer), else NoCatalog saying what the server answered. Raises TokenRefused on a 401 and
    StartupError (naming the fix) when base_url does not point at a wallet API."""
    res = await client.terminal_info(timeout=timeout_s)
    if isinstance(res, InfoLoaded):
        journal.cache_put(CACHE_KEY, _to_json(res.info, client.trailing_slash))
        return Catalog(res.info, fresh=True)
    if isinstance(res, Unauthorized):
        raise TokenRefused(res.detail or "401")
    if isinstance(res, Refused) and 300 <= res.status < 400:
        raise StartupError(f"the wallet server {res.reason}")  # names the URL to put in base_url
    if not isinstance(res, Unavailable):
        what = res.detail if isinstance(res, NotFound) else f"{res.status}: {res.reason}"
        raise StartupError(
            f"the wallet server at [wallet] base_url does not answer as a wallet API ({what}); fix base_url"
        )
    cached = journal.cache_get(CACHE_KEY)
    parsed = _from_json(cached[0]) if cached else None
    if parsed is None:
        # a server that answers with an error is not "unreachable": its reason says what to check
        return NoCatalog(res.reason, res.status)
    info, slash = parsed
    client.trailing_slash = slash
    if at_start:
        said = "answers with an error" if res.status is not None else "unreachable"
        log.warning("wallet server %s (%s): starting on the cached product list", said, res.reason)
    return Catalog(info, fresh=False, problem=res.reason, status=res.status)


def cached_products(journal: Journal) -> tuple[Product, ...]:
    """The product list the running terminal last cached (empty when none), for commands that need the
    prices without asking the server (``taptill settle`` making a booked sale's invoice record)."""
    cached = journal.cache_get(CACHE_KEY)
    parsed = _from_json(cached[0]) if cached else None
    return () if parsed is None else parsed[0].products


def _offered(info: TerminalInfo) -> str:
    return ", ".join(f"{p.id} ({p.name})" for p in info.products) or "none"


def check_products(info: TerminalInfo, wanted: tuple[str | int, ...]) -> list[str]:
    """Problems with [terminal] products against the server's list (empty when all is well)."""
    problems = []
    for pid in wanted:
        if info.product(pid) is None:
            problems.append(
                f"[terminal] products has {pid!r}, which the wallet server does not offer; "
                f"it offers: {_offered(info)}"
            )
    return problems


def check_buttons(
    info: TerminalInfo, mode: str, buttons: dict[str, ProductId]
) -> tuple[list[str], list[str]]:
    """Problems with the ``[select]`` or ``[topup]`` buttons (``mode``) against the server's list:
    (buttons naming a product the server does not offer, buttons whose product goes the wrong way).

    A top-up button must credit (a negative price) and a select button must debit: the controller ignores
    a press of any other, so such a button would do nothing (the terminal refuses to start with one).
    """
    section = f"[{mode}] buttons"
    unknown: list[str] = []
    wrong: list[str] = []
    for name, pid in buttons.items():
        product = info.product(pid)
        if product is None:
            unknown.append(
                f"{section} {name} = {pid!r} names a product the wallet server does not offer; "
                f"it offers: {_offered(info)}"
            )
        elif mode == "topup" and product.price_cents >= 0:
            wrong.append(
                f"{section} {name} = {pid!r} is {product.name!r}, a product sold (price "
                f"{product.price_cents} cents), not a top-up; map it to a credit product (negative price)"
            )
        elif mode == "select" and product.price_cents < 0:
            wrong.append(
                f"{section} {name} = {pid!r} is {product.name!r}, a top-up (price {product.price_cents} "
                "cents), not a product sold; map it to a product with a price"
            )
    return unknown, wrong


def check_permission(info: TerminalInfo, mode: str) -> str | None:
    """A terminal whose permission does not allow its mode must not start."""
    debit = ("debit", "all")
    needs = {"tap": debit, "select": debit, "topup": ("credit", "all"), "table": debit}[mode]
    if info.permission not in needs:
        return (
            f"this terminal's wallet permission is {info.permission!r} but [terminal] mode = {mode!r} "
            f"needs {' or '.join(repr(n) for n in needs)}; change the terminal's permission on the server "
            f"or set [wallet] permission"
        )
    return None
