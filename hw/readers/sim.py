"""The simulated reader: a Unix socket that takes taps (``taptill tap UID``) and button presses.

Also how a user feeds taps from hardware taptill has no adapter for. One text line per connection,
UTF-8, at most 256 bytes, ended by a newline (or the end of the connection), without control characters
and with nothing after it; anything else is refused whole, so a UID split by a newline taps no card:

- ``tap UID``: a card presented and taken away again (answered ``ok`` at once);
- ``tap-wait UID``: the same, answered with the terminal's decision (``approved …``, ``balance …``,
  ``operator: …``, ``declined: …``, ``declined offline: …``, ``busy: …``) within the tap budget and a
  margin (``taptill tap``);
- ``present UID``: a card put on the reader, held there until ``remove``;
- ``remove``: the held card taken away;
- ``restart``: the reader restarts with the held card lying on it, as a real reader does when pcscd
  restarts: offline, the card removed, online, and the card reported as already present (not a tap);
- ``press BUTTON``: a button pressed (an error if the terminal's mode has no such button);
- ``stall SECONDS``: blocks the device loop, to prove the watchdog.

The answer is ``ok`` or ``error: …``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

from hw.gpio.base import ButtonListener
from hw.readers.base import CardListener
from hw.readers.supervision import Backoff, run_supervised
from terminal.uid import InvalidUid, control_character, normalise_uid
from terminal.wallet.catalog import StartupError

log = logging.getLogger(__name__)

MAX_LINE = 256  # bytes, without the newline
COMMAND_DEADLINE_S = 2.0  # a client has this long for its whole line, however slowly it sends it
ANSWER_MAX = 4096  # bytes of an answer line the client reads
SIM_ADVICE = "restart taptill if it keeps failing (run --verbose logs the traceback)"


class BadLine(ValueError):
    """A command line the sim reader refuses whole (the message says why, in one line)."""


class SimReader:
    """Reader twin listening on a Unix socket; a real Reader to the rest of the terminal."""

    def __init__(self, socket_path: Path, buttons: ButtonListener | None = None) -> None:
        self.socket_path = socket_path
        self.buttons = buttons
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._listener: CardListener | None = None
        self._bound: tuple[int, int] | None = None  # device and inode of the socket file we bound
        self._held: str | None = None  # the card on the reader (present without remove)
        self._failed = False  # the serving loop failed; run_supervised starts it again

    def start(self, listener: CardListener) -> None:
        """Listen on the socket; raises StartupError if another terminal is listening there already."""
        self._listener = listener
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if _answers(self.socket_path):
            # Another terminal (with another state directory) owns it: taking it over would leave that
            # terminal deaf, and our stop would remove its socket.
            raise StartupError(
                f"another terminal listens on {self.socket_path}; give this one its own [reader] socket"
            )
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # left by a terminal that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)  # owner and group may tap; others may not
        try:
            sock.bind(str(self.socket_path))
            st = self.socket_path.stat()
            self._bound = (st.st_dev, st.st_ino)
        finally:
            os.umask(old)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(
            target=run_supervised,
            args=("sim", self._serve, self._stopping, self._report_failure, Backoff(), SIM_ADVICE),
            name="sim-reader",
            daemon=True,
        )
        self._thread.start()
        listener.reader_status(True, f"sim reader on {self.socket_path}")

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept() now, not at its timeout
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(OSError):  # gone already, or a read-only state directory
            st = self.socket_path.stat()
            if (st.st_dev, st.st_ino) == self._bound:  # only our own socket, never a successor's
                self.socket_path.unlink()

    def _report_failure(self, detail: str) -> None:
        self._failed = True
        listener = self._listener
        if listener is not None:
            with contextlib.suppress(Exception):  # a listener's bug is no reason to stop serving
                listener.reader_status(False, detail)

    def _serve(self) -> None:
        assert self._sock is not None
        if self._failed and self._listener is not None:  # restarted after a failure: back online
            self._failed = False
            self._listener.reader_status(True, f"sim reader on {self.socket_path}")
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    try:
                        line = read_command(conn, COMMAND_DEADLINE_S)
                    except BadLine as exc:
                        log.warning("sim reader: refused a line: %s", exc)
                        answer = f"error: {exc}"
                    else:
                        answer = self.handle(line)
                    _discard_pending(conn)
                    conn.settimeout(COMMAND_DEADLINE_S)
                    conn.sendall(answer.encode() + b"\n")
                except OSError as exc:
                    log.warning("sim reader: client went away (%s)", exc)

    def handle(self, line: str) -> str:
        listener = self._listener
        if listener is None:
            return "error: reader not started"
        verb, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if verb in ("tap", "present", "tap-wait"):
            try:
                uid = normalise_uid(arg)
            except InvalidUid as exc:
                log.warning("sim reader: ignored %s", exc)
                return f"error: {exc}"
            if verb == "tap-wait":
                decide = getattr(listener, "tap_decision", None)
                if decide is None:
                    return "error: this terminal cannot report decisions; use tap UID"
                self._held = None
                answer: str = decide(uid)  # blocks this thread until decided (bounded by the terminal)
                return answer
            listener.card_present(uid)
            if verb == "tap":
                listener.card_removed()
            self._held = uid if verb == "present" else None
            return "ok"
        if verb == "remove":
            self._held = None
            listener.card_removed()
            return "ok"
        if verb == "restart":
            listener.reader_status(False, "sim reader restarting")
            if self._held is not None:
                listener.card_removed()
            listener.reader_status(True, f"sim reader on {self.socket_path}")
            if self._held is not None:
                listener.card_present(self._held, already_present=True)
            return "ok"
        if verb == "stall":
            # Debug aid for the watchdog test: block the device loop itself, as a hung loop would.
            stall = getattr(listener, "stall", None)
            try:
                seconds = float(arg)
            except ValueError:
                return "error: stall needs seconds"
            if stall is None or not 0 < seconds <= 600:
                return "error: stall needs 0 < seconds <= 600 and a device loop"
            stall(seconds)
            return "ok"
        if verb == "press":
            if not arg or self.buttons is None:
                return "error: no such button (press needs a name and a mode with buttons)"
            known = getattr(self.buttons, "button_problem", None)
            problem = known(arg) if known is not None else None
            if problem is not None:
                return f"error: {problem}"
            self.buttons.button_pressed(arg)
            return "ok"
        return (
            "error: unknown command; use tap UID, tap-wait UID, present UID, remove, restart or press BUTTON"
        )


def _answers(path: Path) -> bool:
    """True if a process accepts connections on the Unix socket at ``path`` (a stale file refuses)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _read_until_newline(conn: socket.socket, timeout_s: float, limit: int = MAX_LINE) -> bytes:
    """What the peer sent up to its first newline (and whatever came with it), or the first ``limit`` + 1
    bytes without one, all within ``timeout_s`` seconds (TimeoutError after); ends early at end of stream.

    A per-read timeout alone would let a peer sending a byte now and then hold the reader for minutes.
    """
    deadline = time.monotonic() + timeout_s
    data = b""
    while b"\n" not in data and len(data) <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no whole line within {timeout_s:g} s")
        conn.settimeout(left)
        chunk = conn.recv(limit + 1)
        if not chunk:
            break
        data += chunk
    return data


def read_command(conn: socket.socket, timeout_s: float) -> str:
    """The one command line a client sent (see the module docstring); BadLine if it is refused."""
    data = _read_until_newline(conn, timeout_s)
    line, _, rest = data.partition(b"\n")
    if len(line) > MAX_LINE:
        raise BadLine(f"line longer than {MAX_LINE} bytes; send one short command per connection")
    if rest:
        raise BadLine("more than one line; send one command per connection, its UID on the same line")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise BadLine("line is not UTF-8 text") from None
    bad = control_character(text)
    if bad is not None:
        raise BadLine(f"line contains the control character {bad!r}; send one plain line")
    return text


def _discard_pending(conn: socket.socket, limit: int = 65536) -> None:
    """Read away what a refused client sent past its line (up to ``limit`` bytes), without waiting:
    a socket closed with unread data resets the connection, and the client would lose our answer."""
    conn.setblocking(False)
    try:
        for _ in range(limit // 4096):
            if not conn.recv(4096):
                return
    except (BlockingIOError, InterruptedError):
        return
    finally:
        conn.setblocking(True)


def _read_line(conn: socket.socket, timeout_s: float) -> str:
    """The answer line of the sim reader (client side), decoded leniently: it is only shown."""
    data = _read_until_newline(conn, timeout_s, ANSWER_MAX)
    return data.split(b"\n", 1)[0][:ANSWER_MAX].decode("utf-8", errors="replace")


def send_command(socket_path: Path, line: str, timeout_s: float = 5.0) -> str:
    """Client side of the sim reader (``taptill tap``/``press``): the answer line within ``timeout_s`` s.

    Raises OSError (TimeoutError included) when the terminal is not there or does not answer in time.
    """
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(socket_path))
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(line.encode() + b"\n")
        return _read_line(sock, deadline - time.monotonic())
