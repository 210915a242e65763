"""Normalises card/token UIDs once, at the reader: uppercase hex, no separators."""

from __future__ import annotations

import re

# ISO 14443 UIDs are 4, 7 or 10 bytes; FeliCa IDm and some readers give 8.
VALID_UID_BYTES = frozenset({4, 7, 8, 10})
_SEPARATORS = re.compile(r"[ :\-]")
_HEX = re.compile(r"[0-9A-F]+")


class InvalidUid(ValueError):
    """A reader delivered something that is not a card UID."""


def control_character(text: str) -> str | None:
    """The first character of ``text`` that is not printable (a newline, tab, NUL, DEL, U+2028, …).

    Such a character splits or hides part of a line: "tap DEADBEEF\\n0011" would otherwise be read as a
    tap of the card DEADBEEF. A plain space is printable.
    """
    return next((c for c in text if not c.isprintable()), None)


def normalise_uid(raw: str | bytes) -> str:
    """Return the UID as uppercase hex without separators, or raise InvalidUid.

    Text may be surrounded by whitespace and separated by spaces, colons or dashes; a control character
    inside it (a newline, a tab) is refused, never taken as a separator.
    """
    if isinstance(raw, bytes | bytearray):
        text = bytes(raw).hex().upper()
    else:
        stripped = raw.strip()
        bad = control_character(stripped)
        if bad is not None:
            raise InvalidUid(f"card UID contains the control character {bad!r}; give the UID on one line")
        text = _SEPARATORS.sub("", stripped)
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
