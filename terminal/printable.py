"""Makes text from outside (a server, a card, a journal row) safe to print on one line: no control characters.

A server's error detail, a product name or a Partybroker title reaches log lines, the journal, the CLI and
the screen. A newline in it would forge a second journald entry ("\\n<2>taptill: …"), an ANSI escape would
clear or recolour an operator's terminal, a bidi override would show a reason backwards. ``printable`` is
the one place that makes such text inert; the parsers apply it where server text enters, and the journald
formatter and the CLI printers apply it again as a last line of defence.
"""

from __future__ import annotations

import re

# ESC followed by a CSI (ESC [ … final byte), an OSC/DCS/PM/APC string up to BEL or ST, or one more byte:
# the whole sequence goes, not only the ESC, so "\x1b[2J" leaves no "[2J" behind.
_ESCAPE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|.?)"  # ESC: CSI, strings, one byte
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # the 8-bit CSI
)


def printable(text: str, limit: int | None = None) -> str:
    """``text`` on one line: escape sequences removed, every whitespace control character (newline, tab,
    U+2028, …) made a plain space, every other character that is not printable (C0, C1, DEL, bidi
    overrides and isolates, other format characters) dropped; cut to ``limit`` characters if given."""
    text = _ESCAPE.sub("", text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " if c.isspace() else "" for c in text)
    return text if limit is None else text[:limit]
