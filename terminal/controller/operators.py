"""Operator cards and PINs as keyed hashes (HMAC-SHA256 under the terminal's operator key): a leaked
config gives away neither the card UIDs nor the PINs without the key, which is kept 0600 apart from it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence

from terminal.config import OperatorEntry

SCHEME = "hmac-sha256:"
KEY_BYTES = 32  # 256 bits: guessing the key is out of reach, so the entries cannot be brute-forced offline
KEY_CREDENTIAL = "topup.operator_key"  # the systemd credential name (LoadCredential=topup.operator_key:PATH)


class OperatorKeyError(ValueError):
    """The operator key file does not hold a key; the message says how to make one."""


def new_operator_key() -> str:
    """A fresh operator key as the key file holds it: 64 hex digits (32 random bytes)."""
    return secrets.token_hex(KEY_BYTES)


def parse_operator_key(text: str) -> bytes:
    """The key bytes from the key file's text (64 hex digits); OperatorKeyError if it is not one."""
    value = text.strip()
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise OperatorKeyError(
            f"the operator key is not {KEY_BYTES * 2} hex digits; let `taptill operator add` create it"
        )
    return key


def card_entry(key: bytes, uid: str) -> str:
    """The config entry for an operator card: the keyed hash of its normalised UID."""
    return (
        SCHEME + hmac.new(key, b"taptill operator card\0" + uid.encode("ascii"), hashlib.sha256).hexdigest()
    )


def pin_entry(key: bytes, name: str, presses: Sequence[str]) -> str:
    """The config entry for operator ``name``'s PIN, the button names pressed in order. The name is
    mixed in so two operators with the same PIN have different entries."""
    msg = b"taptill operator pin\0" + name.encode("utf-8") + b"\0" + " ".join(presses).encode("utf-8")
    return SCHEME + hmac.new(key, msg, hashlib.sha256).hexdigest()


class OperatorBook:
    """Who may unlock the kiosk: matches a tapped UID and a PIN against the configured entries.
    Holds the key, so its repr says only how many operators there are."""

    __slots__ = ("_entries", "_key")

    def __init__(self, key: bytes, entries: Iterable[OperatorEntry]) -> None:
        self._key = key
        self._entries = tuple(entries)

    def __repr__(self) -> str:
        return f"OperatorBook({len(self._entries)} operators)"

    def __bool__(self) -> bool:
        return bool(self._entries)

    def operator_for(self, uid: str) -> str | None:
        """The name of the operator whose card has UID ``uid`` (normalised), or None."""
        entry = card_entry(self._key, uid)
        found = None
        for e in self._entries:  # every entry compared in constant time: no early exit to time
            if hmac.compare_digest(e.card, entry):
                found = e.name
        return found

    def has_pin(self, name: str) -> bool:
        return any(e.name == name and e.pin is not None for e in self._entries)

    def pin_matches(self, name: str, presses: Sequence[str]) -> bool:
        """Whether ``presses`` (button names in order) is operator ``name``'s PIN."""
        entry = pin_entry(self._key, name, presses)
        return any(
            e.name == name and e.pin is not None and hmac.compare_digest(e.pin, entry) for e in self._entries
        )
