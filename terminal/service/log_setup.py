"""Logging to stderr in a form journald reads well: priority prefixes, no second timestamp."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

from terminal.model import printable

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournaldFormatter(logging.Formatter):
    """``<3>taptill.journal: message``: journald turns the prefix into the entry's priority.

    journald starts an entry at every newline, so the message is made one line (``printable``): a server's
    text with "\\n<2>…" in it cannot forge a second entry of its own priority, nor an escape sequence
    reach whoever reads the journal on a terminal. A traceback keeps its lines, each with the prefix
    and made printable the same way.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        # An exception's message (str(exc)) may carry a server's text with newlines: each message is
        # made one line; the frames' lines (file, line number, our source) keep their layout.
        exc: BaseException | None = ei[1]
        seen: set[int] = set()
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            only = "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n")
            text = text.replace(only, printable(only))
            exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        return "\n".join(printable(line) for line in text.splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(printable(line) for line in stack_info.splitlines())

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def setup_logging(verbose: bool = False) -> None:
    """journald format under systemd (JOURNAL_STREAM set), timestamps on a terminal otherwise."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournaldFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # No format here names a thread or a process: not gathering them spares every log line a getpid()
    # call and a thread lookup (the logging HOWTO's "Optimization" table names these switches); a tap
    # logs a line or more, and its CPU time counts (issue 10). The source line stays: the nfcpy reader's
    # log filter goes by funcName.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # httpx logs every request line at INFO, with URLs: keep those out of the journal.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
