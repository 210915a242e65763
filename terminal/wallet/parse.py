"""Parses wallet server bodies of either shape (the document's ``data`` wrapper, or the real server's)."""

from __future__ import annotations

from dataclasses import dataclass

from terminal.model import PERMISSIONS, Permission, Product, Wallet, printable
from terminal.uid import InvalidUid, normalise_uid


class BadBody(ValueError):
    """The body is JSON but not of a shape the wallet API produces."""


def _unwrap(body: object) -> object:
    # The document wraps every entity in {"data": ...}; the real server does not (except the list).
    if isinstance(body, dict) and set(body) == {"data"}:
        return body["data"]
    return body


def _cents(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadBody(f"{what} is not an integer number of cents: {value!r:.40}")
    return value


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return printable(str(value), 200)  # names and ids reach logs and screens
    raise BadBody(f"expected a string, got {type(value).__name__}")


def parse_wallet(body: object) -> Wallet:
    """A wallet object, wrapped (document) or flat (real server)."""
    obj = _unwrap(body)
    if not isinstance(obj, dict):
        raise BadBody("wallet body is not an object")
    token = obj.get("token_id")
    if not isinstance(token, str):
        raise BadBody("wallet has no token_id")
    paired = _opt_str(obj.get("paired_user"))
    return Wallet(
        token_id=token,
        balance_cents=_cents(obj.get("balance"), "balance"),
        paired_user=paired or None,
        id=_opt_str(obj.get("id")),
    )


def is_for_token(wallet: Wallet, token_id: str) -> bool:
    """Whether an answer's wallet is the one behind ``token_id`` (a normalised UID): the server may spell
    the UID with separators or in lower case, but an answer naming another card is not this card's."""
    if wallet.token_id == token_id:
        return True
    try:
        return normalise_uid(wallet.token_id) == normalise_uid(token_id)
    except InvalidUid:
        return False


def _product(raw: object) -> Product:
    if not isinstance(raw, dict):
        raise BadBody("product is not an object")
    pid = raw.get("id")
    if isinstance(pid, bool) or not isinstance(pid, str | int):
        raise BadBody(f"product id {pid!r:.40} is neither a string nor an integer")
    name = raw.get("friendly_name", raw.get("name", str(pid)))
    if not isinstance(name, str):
        raise BadBody("product friendly_name is not a string")
    return Product(id=pid, name=printable(name, 200), price_cents=_cents(raw.get("price"), "product price"))


@dataclass(frozen=True)
class TerminalPage:
    """One response of GET /pos/terminal: the whole terminal, or one page of the product list."""

    terminal_id: str | None
    friendly_name: str | None
    permission: Permission | None
    products: tuple[Product, ...]
    next_url: str | None


def parse_terminal(body: object) -> TerminalPage:
    """The document's terminal object, or the real server's paginated ``{"links", "data": {"products"}}``."""
    if not isinstance(body, dict):
        raise BadBody("terminal body is not an object")
    next_url: str | None = None
    links = body.get("links")
    if isinstance(links, dict):
        nxt = links.get("next")
        if nxt is not None and not isinstance(nxt, str):
            raise BadBody("links.next is not a URL")
        next_url = nxt
    obj = body.get("data", body)
    if not isinstance(obj, dict):
        raise BadBody("terminal data is not an object")
    raw_products = obj.get("products")
    if not isinstance(raw_products, list):
        raise BadBody("terminal has no products list")
    permission = obj.get("permission")
    if permission is not None and permission not in PERMISSIONS:
        raise BadBody(f"unknown terminal permission {permission!r:.20}")
    perm: Permission | None = permission
    return TerminalPage(
        terminal_id=_opt_str(obj.get("id")),
        friendly_name=_opt_str(obj.get("friendly_name")),
        permission=perm,
        products=tuple(_product(p) for p in raw_products),
        next_url=next_url,
    )


def error_reason(body: object, fallback: str) -> str:
    """A short human reason from an error body ({"detail": ...} or {"field": [...]}): one line without
    control characters (it is logged, journaled as a rejection reason and printed by ``taptill queue``)."""
    obj = _unwrap(body)
    if isinstance(obj, dict):
        detail = obj.get("detail") or obj.get("message") or obj.get("error")
        if isinstance(detail, str):
            return printable(detail, 200)
        for key, value in obj.items():
            if isinstance(value, list) and value and isinstance(value[0], str):
                return printable(f"{key}: {value[0]}", 200)
    return fallback
