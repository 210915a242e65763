"""Normalises card/token UIDs once, at the reader: uppercase hex, no separators."""

from __future__ import annotations

import re

# ISO 14443 UIDs are 4, 7 or 10 bytes; FeliCa IDm and some readers give 8.
VALID_UID_BYTES = frozenset({4, 7, 8, 10})
_SEPARATORS = re.compile(r"[\s:\-]")
_HEX = re.compile(r"[0-9A-F]+")


class InvalidUid(ValueError):
    """A reader delivered something that is not a card UID."""


def normalise_uid(raw: str | bytes) -> str:
    """Return the UID as uppercase hex without separators, or raise InvalidUid."""
    if isinstance(raw, bytes | bytearray):
        text = bytes(raw).hex().upper()
    else:
        text = _SEPARATORS.sub("", raw.strip())
        if not text.isascii():
            # upper() maps some non-ASCII letters to hex digits ("\ufb00" -> "FF"): not a reader's UID
            raise InvalidUid(f"card UID {text[:32]!r} is not hexadecimal")
        text = text.upper()
        if text.startswith("0X"):
            text = text[2:]
    if not text or not _HEX.fullmatch(text):
        raise InvalidUid(f"card UID {text[:32]!r} is not hexadecimal")
    if len(text) % 2 or len(text) // 2 not in VALID_UID_BYTES:
        raise InvalidUid(f"card UID {text[:32]!r} has {len(text) / 2:g} bytes, expected 4, 7, 8 or 10")
    return text
