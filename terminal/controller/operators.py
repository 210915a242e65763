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
KEY_ID_HEX = 8  # the key id in an entry: 32 bits of a keyed hash, which tell nothing about the key


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


def key_id(key: bytes) -> str:
    """Which operator key an entry was made under (8 hex digits): lets `taptill doctor` and the start
    tell an entry made under another key (a replaced key file, another terminal's config) from one
    whose card is simply not on the reader, without telling anything about the key."""
    return hmac.new(key, b"taptill operator key id", hashlib.sha256).hexdigest()[:KEY_ID_HEX]


def entry_key_id(entry: str) -> str | None:
    """The key id in a config entry (``hmac-sha256:KEYID:MAC``); None for an entry written before
    entries carried one (``hmac-sha256:MAC``), which still unlocks."""
    parts = entry.removeprefix(SCHEME).split(":")
    return parts[0] if len(parts) == 2 else None


def _entry(key: bytes, msg: bytes, like: str | None = None) -> str:
    """The entry for ``msg`` under ``key``: with the key id, or without one where ``like`` (the
    configured entry it is compared with) has none."""
    mac = hmac.new(key, msg, hashlib.sha256).hexdigest()
    if like is not None and entry_key_id(like) is None:
        return SCHEME + mac
    return f"{SCHEME}{key_id(key)}:{mac}"


def card_entry(key: bytes, uid: str) -> str:
    """The config entry for an operator card: the keyed hash of its normalised UID."""
    return _entry(key, _card_message(uid))


def pin_entry(key: bytes, name: str, presses: Sequence[str]) -> str:
    """The config entry for operator ``name``'s PIN, the button names pressed in order. The name is
    mixed in so two operators with the same PIN have different entries."""
    return _entry(key, _pin_message(name, presses))


def _card_message(uid: str) -> bytes:
    return b"taptill operator card\0" + uid.encode("ascii")


def _pin_message(name: str, presses: Sequence[str]) -> bytes:
    return b"taptill operator pin\0" + name.encode("utf-8") + b"\0" + " ".join(presses).encode("utf-8")


def key_mismatch(names: Sequence[str]) -> str:
    """One line for operators whose entries were made under another operator key, with the fix."""
    return (
        f"[topup.operators] {', '.join(names)}: made under another operator key than this terminal's "
        "(the key file was replaced, or the entries come from another terminal); put the key they were "
        f"made under back, or register them again: taptill operator add {names[0]}"
    )


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
        msg = _card_message(uid)
        found = None
        for e in self._entries:  # every entry compared in constant time: no early exit to time
            if hmac.compare_digest(e.card, _entry(self._key, msg, like=e.card)):
                found = e.name
        return found

    def has_pin(self, name: str) -> bool:
        return any(e.name == name and e.pin is not None for e in self._entries)

    def pin_matches(self, name: str, presses: Sequence[str]) -> bool:
        """Whether ``presses`` (button names in order) is operator ``name``'s PIN."""
        msg = _pin_message(name, presses)
        return any(
            e.name == name and e.pin is not None and hmac.compare_digest(e.pin, _entry(self._key, msg, e.pin))
            for e in self._entries
        )

    def made_elsewhere(self) -> list[str]:
        """The operators whose card or PIN entry was made under another key (their key id differs):
        they can never unlock with this key."""
        mine = key_id(self._key)
        return [
            e.name
            for e in self._entries
            if any(kid not in (None, mine) for kid in (entry_key_id(e.card), entry_key_id(e.pin or "")))
        ]

    def without_key_id(self) -> list[str]:
        """The operators with an entry written before entries carried a key id (unchecked)."""
        return [
            e.name
            for e in self._entries
            if entry_key_id(e.card) is None or (e.pin is not None and entry_key_id(e.pin) is None)
        ]
