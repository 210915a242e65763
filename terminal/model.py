"""Domain types of the money path: products, terminal info, wallets and sales; outside text made printable."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

ProductId = str | int
Permission = Literal["debit", "credit", "all"]
PERMISSIONS: tuple[Permission, ...] = ("debit", "credit", "all")


@dataclass(frozen=True)
class Product:
    """A wallet product; a negative price is a credit (top-up)."""

    id: ProductId
    name: str
    price_cents: int


@dataclass(frozen=True)
class TerminalInfo:
    """What the wallet server says about this terminal (cached for offline boots)."""

    id: str | None
    friendly_name: str | None
    permission: Permission
    products: tuple[Product, ...]

    def product(self, product_id: ProductId) -> Product | None:
        for p in self.products:
            if str(p.id) == str(product_id):
                return p
        return None


@dataclass(frozen=True)
class Wallet:
    """A wallet as seen through one token (card) UID."""

    token_id: str
    balance_cents: int
    paired_user: str | None = None
    id: str | None = None


class SaleState(StrEnum):
    """Where a sale stands in the journal."""

    DECLINED = "declined"  # never sent; no money moved
    PENDING = "pending"  # journaled, not yet confirmed by the server
    DONE = "done"  # the server confirmed it (2xx or 202 already processed)
    REJECTED = "rejected"  # the server refused it definitively (400/403/404)


class DeclineReason(StrEnum):
    """Why a tap did not turn into a sale; shown to the guest."""

    UNKNOWN_CARD = "unknown_card"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    PERMISSION = "permission"
    SERVER_TROUBLE = "server_trouble"
    OFFLINE = "offline"
    OFFLINE_LIMIT = "offline_limit"
    DENIED_CARD = "denied_card"
    BAD_PRODUCT = "bad_product"
    STORAGE = "storage"
    NOTHING_SELECTED = "nothing_selected"
    KIOSK_LOCKED = "kiosk_locked"
    WRONG_PIN = "wrong_pin"  # an operator card's PIN was entered wrong
    PIN_LOCKED_OUT = "pin_locked_out"  # too many wrong PINs: that operator card waits pin_lockout_s
    CREDIT_LIMIT = "credit_limit"  # a top-up over the operator's cap per unlock or per shift
    OUT_OF_SERVICE = "out_of_service"  # the wallet server refuses the terminal's API token
    SOLD_OUT = "sold_out"  # the stock ledger (yourbarmate) has fewer servings left than the tap pours
    # a sale that needs the wallet's word (a table bill) while the card has a sale still on its way
    EARLIER_PENDING = "earlier_pending"


# Server text (an error detail, a product name, a Partybroker title) reaches log lines, the journal, the CLI
# and the screen: a newline in it would forge a second journald entry ("\n<2>taptill: …"), an ANSI escape
# would clear an operator's terminal, a bidi override would show a reason backwards. ``printable`` is the one
# place that makes such text inert; the parsers apply it where server text enters, and the journald formatter
# and the CLI printers again as a last line of defence.

# ESC followed by a CSI (ESC [ … final byte), an OSC/DCS/PM/APC string up to BEL or ST, or one more byte:
# the whole sequence goes, not only the ESC, so "\x1b[2J" leaves no "[2J" behind.
_ESCAPE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|.?)"  # ESC: CSI, strings, one byte
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # the 8-bit CSI
)

_SURROGATE_BYTE = re.compile("[\udc80-\udcff]")


def printable(text: str, limit: int | None = None) -> str:
    """``text`` on one line: escape sequences removed, every whitespace control character (newline, tab,
    U+2028, …) made a plain space, every other character that is not printable (C0, C1, DEL, bidi
    overrides and isolates, other format characters) dropped; cut to ``limit`` characters if given."""
    # Bytes a decoder could not read come as lone surrogates (Python's surrogateescape, as aiohttp reads
    # header values): as their Latin-1 characters, a C1 CSI (0x9B) starts the sequence it is, not a "2J".
    text = _ESCAPE.sub("", _SURROGATE_BYTE.sub(lambda m: chr(ord(m[0]) - 0xDC00), text))
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " if c.isspace() else "" for c in text)
    return text if limit is None else text[:limit]
