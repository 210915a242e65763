"""Logging to stderr in a form journald reads well: priority prefixes, no second timestamp."""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator
from typing import Any

from terminal.model import printable

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
# What a traceback puts before an exception's lines: nothing, or an ExceptionGroup's "  | " margins.
_MARGIN = re.compile(r"[ |]*")


class PrintableFormatter(logging.Formatter):
    """Every line it writes is printable (``terminal.model.printable``): a server's text in a message or in
    an exception cannot start a line of its own, nor an escape sequence reach whoever reads the log on a
    terminal. A message is made one line; a traceback keeps its lines, but each exception's own text
    (its message and notes, a server's words among them) is made one line, in an ExceptionGroup's
    nested exceptions as much as in the chain of causes.
    """

    def format(self, record: logging.LogRecord) -> str:
        # logging caches a record's traceback text on the record: one that another handler's formatter
        # made (raw) must not be reused here, nor ours left for it.
        cached, record.exc_text = record.exc_text, None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        lines = super().formatException(ei).splitlines()
        for exc in _every_exception(ei[1]):
            said = "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n").splitlines()
            if len(said) > 1:
                lines = _joined(lines, said)
        return "\n".join(printable(line) for line in lines)

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(printable(line) for line in stack_info.splitlines())


class JournaldFormatter(PrintableFormatter):
    """``<3>taptill.journal: message``: journald turns the prefix into the entry's priority, and starts
    an entry at every newline, so every line (of a traceback too) carries the record's priority and no
    text inside it can forge an entry of another priority (``PrintableFormatter``)."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def _every_exception(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, the causes and contexts a traceback shows, and every exception an ExceptionGroup holds
    (and theirs), each once."""
    stack, seen = [exc], set()
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.append(e.__cause__)
        if not e.__suppress_context__:
            stack.append(e.__context__)
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)


def _joined(lines: list[str], said: list[str]) -> list[str]:
    """``lines`` of a traceback with each run of ``said`` (an exception's text over several lines, as
    the traceback shows it: behind the same margin, such as an ExceptionGroup's "    | ") made one line."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        margin = line[: len(line) - len(said[0])] if line.endswith(said[0]) else None
        if (
            margin is not None
            and _MARGIN.fullmatch(margin)
            and lines[i + 1 : i + len(said)] == [margin + rest for rest in said[1:]]
        ):
            out.append(margin + " ".join(said))
            i += len(said)
        else:
            out.append(line)
            i += 1
    return out


def setup_logging(verbose: bool = False) -> None:
    """journald format under systemd (JOURNAL_STREAM set), timestamps on a terminal otherwise; printable
    lines either way."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournaldFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
    # aiohttp's client logs nothing per request (no URLs, which name cards); its logger's few debug lines
    # (a connector's close error, a netrc it did not read) stay out of a -v journal too.
    logging.getLogger("aiohttp.client").setLevel(logging.WARNING)
