"""Loads the terminal info and product list from the wallet server, or from the journal's cache offline."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from terminal.journal import Journal
from terminal.model import PERMISSIONS, Product, TerminalInfo
from terminal.wallet.client import WalletClient
from terminal.wallet.outcomes import InfoLoaded, NotFound, Unauthorized, Unavailable

log = logging.getLogger(__name__)

CACHE_KEY = "terminal_info"


class StartupError(Exception):
    """The terminal cannot start; the message says what to fix."""


class TokenRefused(StartupError):
    """The wallet server refuses the terminal's API token (401): revoked, or not this server's."""


def token_fix(token_file: Path | None) -> str:
    """What a person does about a refused API token: where the terminal reads it from."""
    credential = "renew the wallet.token systemd credential"
    if token_file is None:
        return credential
    return f"put a valid token in {token_file} (or {credential}); a running terminal reads it again"


@dataclass(frozen=True)
class Catalog:
    info: TerminalInfo
    fresh: bool  # from the server just now, not from the cache


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
            products.append(Product(p["id"], str(p.get("name", p["id"])), p["price"]))
    info = TerminalInfo(data.get("id"), data.get("friendly_name"), data["permission"], tuple(products))
    return info, bool(data.get("trailing_slash"))


async def load_catalog(
    client: WalletClient, journal: Journal, timeout_s: float, *, at_start: bool = True
) -> Catalog | None:
    """Fresh terminal info (cached for next time), else the cached copy (``fresh`` False: the server did
    not answer), else None."""
    res = await client.terminal_info(timeout=timeout_s)
    if isinstance(res, InfoLoaded):
        journal.cache_put(CACHE_KEY, _to_json(res.info, client.trailing_slash))
        return Catalog(res.info, fresh=True)
    if isinstance(res, Unauthorized):
        raise TokenRefused(res.detail or "401")
    if not isinstance(res, Unavailable):
        what = res.detail if isinstance(res, NotFound) else f"{res.status}: {res.reason}"
        raise StartupError(
            f"the wallet server at [wallet] base_url does not answer as a wallet API ({what}); fix base_url"
        )
    cached = journal.cache_get(CACHE_KEY)
    parsed = _from_json(cached[0]) if cached else None
    if parsed is None:
        log.warning("wallet server unreachable (%s) and no cached product list yet", res.reason)
        return None
    info, slash = parsed
    client.trailing_slash = slash
    if at_start:
        log.warning("wallet server unreachable (%s): starting on the cached product list", res.reason)
    return Catalog(info, fresh=False)


def check_products(info: TerminalInfo, wanted: tuple[str | int, ...]) -> list[str]:
    """Problems with [terminal] products against the server's list (empty when all is well)."""
    problems = []
    offered = ", ".join(f"{p.id} ({p.name})" for p in info.products) or "none"
    for pid in wanted:
        if info.product(pid) is None:
            problems.append(
                f"[terminal] products has {pid!r}, which the wallet server does not offer; "
                f"it offers: {offered}"
            )
    return problems


def check_permission(info: TerminalInfo, mode: str) -> str | None:
    """A terminal whose permission does not allow its mode must not start."""
    needs = {"tap": ("debit", "all"), "select": ("debit", "all"), "topup": ("credit", "all")}[mode]
    if info.permission not in needs:
        return (
            f"this terminal's wallet permission is {info.permission!r} but [terminal] mode = {mode!r} "
            f"needs {' or '.join(repr(n) for n in needs)}; change the terminal's permission on the server "
            f"or set [wallet] permission"
        )
    return None
