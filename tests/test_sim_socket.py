"""The sim reader's socket treats its input as hostile; ``taptill tap`` and ``press`` report the outcome."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw.readers.sim import SimReader, send_command
from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import (
    EMPTY,
    MAX,
    SMALL,
    STRANGER,
    TerminalProcess,
    journal_lines,
    taptill,
    wait_for,
    write_config,
)

# the demo's espresso is 2,50 €; MAX holds 20,00 €, SMALL 1,00 €, EMPTY nothing
HEX = "0123456789ABCDEF"


@pytest.fixture
def doc_server() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc", latency="fast") as emulator:
        yield emulator


@pytest.fixture
def term(tmp_path: Path, doc_server: WalletEmulator) -> Iterator[TerminalProcess]:
    terminal = TerminalProcess(write_config(tmp_path, doc_server))
    try:
        yield terminal
    finally:
        terminal.stop()


def _raw(sock_path: Path, data: bytes) -> str:
    """Send ``data`` as is, end the stream, and return the answer line ("" if the terminal sent none)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock_path))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # no newline at the end must not keep the reader waiting
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    return answer.decode("utf-8", errors="replace").strip()


@st.composite
def whole_uids(draw: st.DrawFn) -> str:
    return "".join(draw(st.sampled_from(HEX)) for _ in range(2 * draw(st.sampled_from([4, 7, 8, 10]))))


CONTROL = st.sampled_from(
    ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c"]
)


@st.composite
def hostile_lines(draw: st.DrawFn) -> bytes:
    """A command line that must not tap any card, built so by construction (never a valid tap)."""
    verb = draw(st.sampled_from(["tap", "present", "tap-wait"]))
    uid = draw(whole_uids())
    kind = draw(st.sampled_from(["control", "split", "length", "not-hex", "not-utf8", "long", "text"]))
    if kind == "control":  # a control character anywhere, the terminating newline aside
        line = f"{verb} {uid}"
        at = draw(st.integers(min_value=0, max_value=len(line)))
        return (line[:at] + draw(CONTROL) + line[at:]).encode() + b"\n"
    if kind == "split":  # a UID split over two lines: the first half alone is a whole UID here
        at = draw(st.sampled_from([8, 14, 16])) if len(uid) > 8 else 4
        return f"{verb} {uid[:at]}\n{uid[at:] or '00'}\n".encode()
    if kind == "length":  # hex, but not 4, 7, 8 or 10 bytes
        digits = draw(
            st.integers(min_value=1, max_value=24).filter(lambda n: n % 2 or n // 2 not in (4, 7, 8, 10))
        )
        return f"{verb} {uid[:digits] if digits <= len(uid) else uid + 'A' * (digits - len(uid))}\n".encode()
    if kind == "not-hex":
        at = draw(st.integers(min_value=0, max_value=len(uid) - 1))
        letter = draw(st.sampled_from("GZgz_.,;/+é０"))  # not x: "0x" starts a valid UID
        return f"{verb} {uid[:at]}{letter}{uid[at + 1 :]}\n".encode()
    if kind == "not-utf8":
        at = draw(st.integers(min_value=0, max_value=len(uid)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"]))
        return f"{verb} ".encode() + uid[:at].encode() + bad + uid[at:].encode() + b"\n"
    if kind == "long":  # over 256 bytes: spaces are separators, so only the length can refuse it
        return f"{verb} {uid}".encode() + b" " * draw(st.integers(min_value=260, max_value=600)) + b"\n"
    # any text with a control character in it
    return (draw(st.text(max_size=80)) + draw(CONTROL) + draw(st.text(max_size=80))).encode(
        "utf-8", "surrogatepass"
    )


@given(hostile_lines())
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def _fuzz(sock_path: Path, data: bytes) -> None:
    answer = _raw(sock_path, data)
    assert answer.startswith("error: "), (data, answer)


def test_no_hostile_line_ever_taps_a_card(term: TerminalProcess, doc_server: WalletEmulator) -> None:
    _fuzz(term.socket)
    assert journal_lines(term.config) == [], "a hostile line became a tap"
    assert doc_server.transactions() == []
    assert "Traceback" not in term.log()
    # still listening, and a proper line still taps
    assert _raw(term.socket, f"tap-wait {MAX}\n".encode()).startswith("approved")
    assert [s["token_id"] for s in journal_lines(term.config)] == [MAX]


def test_a_uid_split_by_a_newline_sells_nothing(term: TerminalProcess, doc_server: WalletEmulator) -> None:
    # SMALL is DEADBEEF, a card with a wallet: the first line alone would sell to it
    answer = _raw(term.socket, f"tap {SMALL}\n001122\n".encode())
    assert answer == "error: more than one line; send one command per connection, its UID on the same line"
    cli = taptill("tap", f"{SMALL}\n001122", "--config", str(term.config), check=False)
    assert cli.returncode == 2 and cli.stdout == ""
    assert cli.stderr == "taptill: card UID contains the control character '\\n'; give the UID on one line\n"
    cli = taptill("tap", f"{SMALL}\n", "--config", str(term.config), check=False)
    assert cli.returncode == 2, cli.stderr
    assert journal_lines(term.config) == [] and doc_server.transactions() == []


def test_tap_prints_the_decision_and_exits_by_it(tmp_path: Path, doc_server: WalletEmulator) -> None:
    term = TerminalProcess(write_config(tmp_path, doc_server, offline_mode="decline"))
    cfg = str(term.config)
    try:
        ok = taptill("tap", MAX, "--config", cfg, check=False)
        assert (ok.returncode, ok.stdout, ok.stderr) == (0, "approved 2,50 €, balance 17,50 €\n", "")
        poor = taptill("tap", SMALL, "--config", cfg, check=False)
        assert poor.returncode == 1
        assert poor.stdout == "declined: insufficient balance (needs 2,50 €, has 1,00 €)\n"
        stranger = taptill("tap", STRANGER, "--config", cfg, check=False)
        assert (stranger.returncode, stranger.stdout) == (1, "declined: card not registered\n")
        quiet = taptill("tap", "--no-wait", EMPTY, "--config", cfg, check=False)
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
        doc_server.faults.set_down(True)
        offline = taptill("tap", MAX, "--config", cfg, check=False)
        assert offline.returncode == 1
        assert offline.stdout == (
            'declined offline: the wallet server cannot be reached and [offline] mode = "decline"\n'
        )
    finally:
        term.stop()
    states = [(s["token_id"], s["state"]) for s in journal_lines(term.config)]
    assert states == [
        (MAX, "done"),
        (SMALL, "declined"),
        (STRANGER, "declined"),
        (EMPTY, "declined"),
        (MAX, "declined"),
    ]


def test_tap_says_busy_when_the_terminal_takes_no_tap(tmp_path: Path, doc_server: WalletEmulator) -> None:
    term = TerminalProcess(write_config(tmp_path, doc_server, retap_guard_s=60.0, screen_hold_s=0.05))
    cfg = str(term.config)
    try:
        assert taptill("tap", MAX, "--config", cfg, check=False).returncode == 0
        again = taptill("tap", MAX, "--config", cfg, check=False)
        assert again.returncode == 1
        assert again.stdout == (
            "busy: this card just paid: take it away for [terminal] rearm_absent_s and tap it again"
            " after retap_guard_s\n"
        )
        assert taptill("tap", "--hold", SMALL, "--config", cfg, check=False).returncode == 0
        held = taptill("tap", SMALL, "--config", cfg, check=False)
        assert held.returncode == 1 and held.stdout.startswith("busy: that card is held on the reader")
        removed = taptill("tap", "--remove", "--config", cfg, check=False)  # no UID, as its help says
        assert (removed.returncode, removed.stderr) == (0, "")
    finally:
        term.stop()
    assert len(doc_server.transactions()) == 1


def test_press_of_a_button_the_mode_lacks_is_an_error(tmp_path: Path, doc_server: WalletEmulator) -> None:
    tap_mode = TerminalProcess(write_config(tmp_path / "tap", doc_server))
    try:
        press = taptill("press", "espresso", "--config", str(tap_mode.config), check=False)
        assert (press.returncode, press.stdout) == (1, "")
        assert press.stderr == "taptill: this terminal is in tap mode: it has no buttons\n"
    finally:
        tap_mode.stop()
    extra = '[select]\nbuttons = { b1 = "espresso" }\ncancel_button = "cancel"\n'
    select = TerminalProcess(
        write_config(tmp_path / "select", doc_server, products=[], mode="select", extra=extra)
    )
    cfg = str(select.config)
    try:
        wrong = taptill("press", "b2", "--config", cfg, check=False)
        assert wrong.returncode == 1
        assert wrong.stderr == "taptill: no button 'b2' in select mode; it has: b1, cancel\n"
        assert taptill("press", "b1", "--config", cfg, check=False).returncode == 0
        paid = taptill("tap", MAX, "--config", cfg, check=False)
        assert (paid.returncode, paid.stdout) == (0, "approved 2,50 €, balance 17,50 €\n")
        assert taptill("press", "cancel", "--config", cfg, check=False).returncode == 0
        balance = taptill("tap", MAX, "--config", cfg, check=False)
        assert (balance.returncode, balance.stdout) == (
            0,
            "balance 17,50 €: nothing charged (the cart is empty)\n",
        )
    finally:
        select.stop()


def test_stall_is_refused_without_the_test_switch(term: TerminalProcess, doc_server: WalletEmulator) -> None:
    answer = term.send("stall 0.6")
    assert answer == "error: stall is a test aid; start the terminal with TAPTILL_TEST_STALL=1 to allow it"
    term.tap(MAX)
    wait_for(lambda: [s["state"] for s in journal_lines(term.config)] == ["done"], what="a tap after it")
    assert "event loop blocked" not in term.log(), term.log()  # the loop never slept


def test_a_slow_client_does_not_delay_another_clients_tap(
    term: TerminalProcess, doc_server: WalletEmulator
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.connect(str(term.socket))
        slow.sendall(b"tap 04A1")  # half a line, then nothing: held open until the terminal cuts it
        assert _raw(term.socket, f"tap-wait {SMALL}\n".encode()).startswith("declined: insufficient balance")
        # the other client was answered while the slow one is still connected and unanswered
        slow.setblocking(False)
        with pytest.raises(BlockingIOError):
            slow.recv(1)
        slow.setblocking(True)
        slow.settimeout(30)
        assert slow.recv(4096) == b""  # then cut by the deadline for its line, tapping nothing
    assert [s["token_id"] for s in journal_lines(term.config)] == [SMALL]
    assert "sim reader: cut a client: no whole line" in term.log()


def _client_as(uid: int, groups: str, sock_path: Path, line: str) -> str:
    """``line`` sent to the sim socket by a process running as ``uid`` with ``groups`` (setpriv), its answer.

    The system Python without site or the repository: it only needs the socket module."""
    script = (
        "import socket,sys\n"
        "s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(sys.argv[1])\n"
        "s.sendall(sys.argv[2].encode() + b'\\n'); print(s.recv(4096).decode().strip())\n"
    )
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", groups]
    proc = subprocess.run(
        [*setpriv, "/usr/bin/python3", "-I", "-c", script, str(sock_path), line],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_peer_outside_the_user_and_group_is_refused(tmp_path: Path, doc_server: WalletEmulator) -> None:
    """The socket's mode opened by hand (0666, in a folder anyone may enter): the peer's credentials still
    keep a stranger from tapping; a member of the socket's group (root's group here) may."""
    assert os.geteuid() == 0, "the test switches users with setpriv (make test runs as root)"
    folder = Path(tempfile.mkdtemp(prefix="taptill-sim-"))
    try:
        folder.chmod(0o755)
        sock_path = folder / "tap.sock"
        config = write_config(tmp_path, doc_server)
        config.write_text(config.read_text().replace('socket = "state/tap.sock"', f'socket = "{sock_path}"'))
        term = TerminalProcess(config, socket=sock_path)
        try:
            sock_path.chmod(0o666)
            group = sock_path.stat().st_gid
            refused = _client_as(65534, "--clear-groups", sock_path, f"tap {MAX}")
            assert refused == (
                "error: uid 65534 may not use this socket; run as root or the terminal's user, or add the "
                f"user to group {group}"
            )
            assert _client_as(65534, f"--groups={group}", sock_path, f"tap {SMALL}") == "ok"
            wait_for(lambda: len(journal_lines(config)) == 1, what="the group member's tap")
        finally:
            assert term.stop() == 0
        assert [s["token_id"] for s in journal_lines(config)] == [SMALL]
        assert "sim reader: refused uid 65534" in term.log()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- a command is acted on only while its client waits (deadline=, hang-up) -----------------------------


class _Recorder:
    """A CardListener that records the cards it was given; ``card_present`` of ``BLOCK_UID`` waits until
    ``release`` is set (so the test can hang up a second client while the reader is busy)."""

    BLOCK_UID = "04A1B2C3"

    def __init__(self) -> None:
        self.cards: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def card_present(self, uid: str, *, already_present: bool = False) -> None:
        if uid == self.BLOCK_UID:
            self.entered.set()
            assert self.release.wait(30)
        self.cards.append(uid)

    def card_removed(self) -> None:
        pass

    def reader_status(self, online: bool, detail: str) -> None:
        pass


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[SimReader, _Recorder]]:
    reader = SimReader(tmp_path / "tap.sock")
    listener = _Recorder()
    reader.start(listener)
    try:
        yield reader, listener
    finally:
        reader.stop()


def test_a_tap_whose_line_follows_its_connect_is_served_without_waking_a_pool_thread(
    sim: tuple[SimReader, _Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """accept() wakes as the client connects, often before its line is there: the listener waits for it
    (QUICK_WAIT_MS) instead of waking a pool thread, which cost about 0.3 ms of CPU per bench tap."""
    reader, listener = sim
    assert reader._pool is not None
    handed_over: list[object] = []
    submit = reader._pool.submit

    def counted(fn: Any, /, *args: Any) -> Any:
        handed_over.append(fn)
        return submit(fn, *args)

    monkeypatch.setattr(reader._pool, "submit", counted)
    for _ in range(20):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(str(reader.socket_path))
            time.sleep(0.001)  # the line comes a moment after the connect, as from a real client
            client.sendall(f"tap {SMALL}\n".encode())
            assert client.recv(64) == b"ok\n"
    assert listener.cards == [SMALL] * 20
    # A busy machine may now and then hold the client past the wait; before the wait, every tap went over.
    assert len(handed_over) <= 5, f"{len(handed_over)} of 20 quick taps were handed to a pool thread"
    before = len(handed_over)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:  # a line that does not come in time
        slow.settimeout(10)
        slow.connect(str(reader.socket_path))
        time.sleep(0.2)
        slow.sendall(f"tap {EMPTY}\n".encode())
        assert slow.recv(64) == b"ok\n"  # served all the same, by a pool thread
    assert listener.cards[-1] == EMPTY and len(handed_over) == before + 1


def test_a_command_past_its_deadline_is_refused_and_does_nothing(sim: tuple[SimReader, _Recorder]) -> None:
    reader, listener = sim
    past = time.monotonic() - 1.0
    answer = _raw(reader.socket_path, f"deadline={past:.3f} tap {MAX}\n".encode())
    assert answer == (
        "error: the client's deadline has passed before the terminal read the command; nothing done"
    )
    assert _raw(reader.socket_path, f"deadline=soon tap {MAX}\n".encode()).startswith(
        "error: 'deadline=soon' is no deadline"
    )
    assert send_command(reader.socket_path, f"tap {SMALL}") == "ok"  # a deadline to come: served
    assert _raw(reader.socket_path, f"tap {EMPTY}\n".encode()) == "ok"  # an old client, no deadline: too
    assert listener.cards == [SMALL, EMPTY]


def test_a_command_whose_client_hung_up_before_its_turn_does_nothing(
    sim: tuple[SimReader, _Recorder],
) -> None:
    reader, listener = sim
    busy: list[str] = []
    first = threading.Thread(
        target=lambda: busy.append(_raw(reader.socket_path, f"present {_Recorder.BLOCK_UID}\n".encode()))
    )
    first.start()
    try:
        assert listener.entered.wait(30), "the reader never came to the first command"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
            gone.connect(str(reader.socket_path))
            gone.sendall(f"tap {MAX}\n".encode())
        # closed (hung up) while the reader is busy with the first command: its turn comes after
    finally:
        listener.release.set()
        first.join(30)
    assert busy == ["ok"]
    assert send_command(reader.socket_path, f"tap {SMALL}") == "ok"
    assert listener.cards == [_Recorder.BLOCK_UID, SMALL]  # never MAX


def test_a_tap_whose_client_gave_up_before_the_terminal_took_it_is_never_booked(
    tmp_path: Path, doc_server: WalletEmulator
) -> None:
    """The field's fault: ``taptill tap`` gave up and said the tap failed, and the terminal booked it later.
    The device loop is held (stall) while two clients give up on a tap-wait: one by its deadline, one (an
    old client, no deadline) by hanging up. Neither tap is booked; the next tap is."""
    term = TerminalProcess(write_config(tmp_path, doc_server), env={"TAPTILL_TEST_STALL": "1"})
    try:
        assert term.send("stall 5") == "ok"  # the loop runs the stall before anything posted after it
        try:  # the terminal answers at the deadline, or the client gives up first: either way, no tap
            said = send_command(term.socket, f"tap-wait {MAX}", timeout_s=0.5)
        except TimeoutError:
            said = "gave up"
        assert said == "gave up" or said.startswith("error: no decision within"), said
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old_client:
            old_client.connect(str(term.socket))
            old_client.sendall(f"tap-wait {MAX}\n".encode())
            time.sleep(0.2)  # not a timing assert: the line is read whether the sleep is long or short
        # queued behind both, and waiting long enough: decided once they were dropped
        after = send_command(term.socket, f"tap-wait {MAX}", timeout_s=60)
        assert after == "approved 2,50 €, balance 17,50 €", after
    finally:
        assert term.stop() == 0
    assert len(doc_server.transactions()) == 1
    assert [s["token_id"] for s in journal_lines(term.config)] == [MAX]
    log = term.log()
    assert "a tap was not taken: its client stopped waiting before its turn" in log, log
    assert "a tap was not taken: the client hung up when its turn came" in log, log
