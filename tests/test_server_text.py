"""Server text never becomes control characters: a wallet server answering a refusal whose detail forges a
journald entry and clears the screen, and naming a product with escape sequences and a bidi override,
reaches the journald-formatted log, the journal, ``taptill queue`` and the console screen as one plain
line each (issue 17 item 1)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from terminal.emulator.wallet import WalletEmulator
from terminal.model import printable
from terminal.service.log_setup import JournaldFormatter, PrintableFormatter
from tests.terminal_lab import MAX, TerminalProcess, journal_lines, taptill, wait_for, write_config

FORGED = "\n<2>taptill: forged\x1b[2J"
HOSTILE_NAME = "Espresso\x1b[31m\u202e\r\n<3>taptill: fake price 0,00\x07"
# Everything not printable but the newline that ends a line: C0 (ESC, BEL, CR, …), DEL, C1, bidi controls.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]")


def test_a_forged_refusal_and_product_name_stay_one_plain_line_everywhere(tmp_path: Path) -> None:
    products = [("espresso", HOSTILE_NAME, 250)]
    with WalletEmulator.demo("doc", products=products) as server:
        server.refuse_transactions(FORGED)
        config = write_config(tmp_path, server, products=["espresso"], display="console")
        # JOURNAL_STREAM: the journald formatter, as under systemd
        term = TerminalProcess(config, env={"JOURNAL_STREAM": "8:1"})
        try:
            term.tap(MAX)
            wait_for(lambda: [s["state"] for s in journal_lines(config)] == ["rejected"], what="the refusal")
            wait_for(lambda: "taptill: forged" in term.log(), what="the refusal logged")
        finally:
            assert term.stop() == 0
        log = term.log()
    assert server.transactions() == []
    # the log: the forged text sits inside the entry that reports it; no entry of its own, no escape
    assert not CONTROL.search(log), repr(CONTROL.search(log))
    entries = log.splitlines()
    assert not any(line.startswith(("<2>", "<3>taptill: fake")) for line in entries), log
    forged = [line for line in entries if "taptill: forged" in line]
    assert forged and all(re.match(r"<[0-7]>terminal\.\S+: ", line) for line in forged), forged
    # the console screen (in the same output) shows the product's name, cleaned
    assert "│ Espresso  <3>taptill: fake price 0,00 2,50 €" in log, log
    # the journal keeps the reason as one line; queue and journal print it without control characters
    (sale,) = journal_lines(config)
    assert printable(FORGED) in sale["reason"] and not CONTROL.search(sale["reason"]), sale
    for command in (["queue"], ["queue", "--rejected"], ["journal"], ["status"]):
        out = taptill(*command, "--config", str(config)).stdout
        assert not CONTROL.search(out), (command, out)
        assert all(not line.startswith("<2>") for line in out.splitlines()), (command, out)
    assert "taptill: forged" in taptill("queue", "--rejected", "--config", str(config)).stdout


def test_the_journald_formatter_keeps_a_forged_message_and_exception_in_their_own_entry(
    tmp_path: Path,
) -> None:
    """The last line of defence: text that did not pass a parser (an exception's message) cannot start an
    entry either; a traceback keeps its own lines, each with the record's priority."""
    out = tmp_path / "stderr.log"
    with out.open("w") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JournaldFormatter("%(name)s: %(message)s"))
        log = logging.getLogger("taptill.test_server_text")
        log.addHandler(handler)
        log.propagate = False
        try:
            log.warning("sale rejected: %s", FORGED)
            try:
                raise ValueError(f"server said{FORGED}")
            except ValueError:
                log.exception("delivery failed")
        finally:
            log.removeHandler(handler)
    lines = out.read_text().splitlines()
    assert lines[0] == "<4>taptill.test_server_text: sale rejected:  <2>taptill: forged", lines
    assert lines[1] == "<3>taptill.test_server_text: delivery failed", lines
    assert lines[2] == "<3>Traceback (most recent call last):", lines
    assert lines[-1] == "<3>ValueError: server said <2>taptill: forged", lines
    assert all(re.match(r"<[34]>(?!<)", line) for line in lines), lines
    assert not CONTROL.search(out.read_text())


def _exception_group() -> ExceptionGroup[Exception]:
    """Server text in every place an ExceptionGroup can carry it: its own message, a nested exception
    with a cause, a nested group, a note (as asyncio.TaskGroup raises them: one per failed task)."""
    try:
        try:
            raise KeyError(f"context{FORGED}")
        except KeyError as cause:
            raise ValueError(f"server said{FORGED}") from cause
    except ValueError as failed:
        first = failed
    second = OSError(f"refused{FORGED}")
    second.add_note(f"note{FORGED}")
    return ExceptionGroup(f"delivery{FORGED}", [first, ExceptionGroup(f"inner{FORGED}", [second])])


@pytest.mark.parametrize("journald", [True, False], ids=["journald", "terminal"])
def test_server_text_nested_in_an_exception_group_stays_inside_its_own_line(
    tmp_path: Path, journald: bool
) -> None:
    """A TaskGroup's failure arrives as an ExceptionGroup: each nested exception's text is one printable
    line behind the group's margin, and no line starts an entry of its own, in journald's format and in
    the one `taptill run` writes on a terminal."""
    out = tmp_path / "stderr.log"
    fmt = "%(name)s: %(message)s"
    with out.open("w") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JournaldFormatter(fmt) if journald else PrintableFormatter(fmt))
        log = logging.getLogger("taptill.test_server_text.group")
        log.addHandler(handler)
        log.propagate = False
        try:
            try:
                raise _exception_group()
            except ExceptionGroup:
                log.exception("tasks failed")
        finally:
            log.removeHandler(handler)
    text = out.read_text()
    lines = [line.removeprefix("<3>") for line in text.splitlines()]
    assert not CONTROL.search(text), repr(CONTROL.search(text))
    assert all(re.match(r"<3>(?!<)", line) for line in text.splitlines()) if journald else True
    assert not any(line.lstrip(" |").startswith("<2>") for line in lines), text
    for said in (
        "  | ExceptionGroup: delivery <2>taptill: forged (2 sub-exceptions)",
        "    | KeyError: 'context\\n<2>taptill: forged\\x1b[2J'",
        "    | ValueError: server said <2>taptill: forged",
        "    | ExceptionGroup: inner <2>taptill: forged (1 sub-exception)",
        "      | OSError: refused <2>taptill: forged note <2>taptill: forged",
    ):
        assert said in lines, (said, lines)


def test_printable_strips_escape_sequences_and_invisible_controls_but_keeps_words() -> None:
    assert printable("Caf\u00e9 Latte 3,50\u00a0\u20ac") == "Caf\u00e9 Latte 3,50 \u20ac"
    assert printable("\x1b[2J\x1b]0;pwned\x07ok\x9b31m!") == "ok!"
    assert printable("abc\u202edef\u2066\u2069\u200f") == "abcdef"
    assert printable("a\nb\tc\u2028d\x85e\x00f\x7f") == "a b c d ef"
    assert printable("x" * 300, 200) == "x" * 200


def test_printable_reads_bytes_a_decoder_escaped_as_the_controls_they_are() -> None:
    """aiohttp reads a header value's undecodable bytes as lone surrogates (surrogateescape): the 8-bit CSI
    0x9B must still take its whole sequence with it, and NEL (0x85) still be a space."""
    raw = "https://elsewhere.example/pos\x9b2J\x9b31mred\x85x".encode("latin-1")
    said = raw.decode("utf-8", errors="surrogateescape")
    assert "\udc9b" in said
    assert printable(said) == "https://elsewhere.example/posred x"
    assert printable(b"caf\xe9".decode("utf-8", errors="surrogateescape")) == "café"  # a Latin-1 header
