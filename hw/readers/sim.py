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
- ``press-wait BUTTON``: the same, answered with its outcome (``ok: …`` or ``declined: why``, as a
  refused press shows it) within the tap budget and a margin (``taptill press``);
- ``stall SECONDS``: blocks the device loop, to prove the watchdog; only when the terminal was started
  with ``TAPTILL_TEST_STALL=1`` in its environment (a test switch: in production it would let any tapper
  stop the terminal).

A line may start with ``deadline=SECONDS``: when the client stops waiting for its answer, on the
monotonic clock (``time.monotonic()``, which every process of the machine shares); ``taptill tap`` and
``press`` send it. A command is acted on only while its client waits: one whose deadline has passed, or
whose client has hung up (closed its end; a client that only ended its sending still waits), is refused
with ``error: …`` and nothing done. A ``tap-wait`` or ``press-wait`` still queued in the terminal when its
client gives up is dropped when the terminal comes to it, never decided (see DeviceLoop.tap_decision).
A line without the word is served as before (no deadline, the hang-up still checked).

The answer is ``ok`` or ``error: …``. Only root, the terminal's own user and members of the socket's
group are served (the peer's credentials, SO_PEERCRED, are checked, not only the file's mode). Each
connection is served by a thread of its own from a pool (at most ``MAX_CLIENTS`` at once; a thread
serves the next connection when it is done, rather than one started per tap) and has
``COMMAND_DEADLINE_S`` for its line and as long again for taking its answer, so a slow client delays no
other. A ``tap``, ``present`` or ``remove`` whose whole line arrives within ``QUICK_WAIT_MS`` of its
connection being accepted is answered by the listening thread itself: it cannot block, and waking a
second thread for it was most of what a bench tap cost in the sim reader.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hw.gpio.base import ButtonListener
from hw.readers.base import CardListener, WaitingClient
from hw.readers.supervision import Backoff, run_supervised
from terminal.uid import InvalidUid, control_character, normalise_uid
from terminal.wallet.catalog import StartupError

log = logging.getLogger(__name__)

MAX_LINE = 256  # bytes, without the newline
COMMAND_DEADLINE_S = 2.0  # a client has this long for its whole line, however slowly it sends it
ANSWER_MAX = 4096  # bytes of an answer line the client reads
MAX_CLIENTS = 8  # connections served at once; one more is answered "busy" at once, never queued
STALL_SWITCH = "TAPTILL_TEST_STALL"  # "1" in the environment allows the stall verb (tests only)
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13; Python 3.11 lacks the name
SIM_ADVICE = "restart taptill if it keeps failing (run --verbose logs the traceback)"
QUICK_VERBS = frozenset({b"tap", b"present", b"remove"})  # answered at once, never waiting on the terminal
# A client's line usually follows its connect within microseconds, but accept() can wake before it is
# there: this long (ms) the listener waits for it rather than waking a pool thread for a quick command.
QUICK_WAIT_MS = 5
DEADLINE_WORD = "deadline="  # the optional first word: the client's deadline on the monotonic clock


class BadLine(ValueError):
    """A command line the sim reader refuses whole (the message says why, in one line)."""


class SaidNothing(BadLine):
    """The client closed the connection before sending a byte: a probe, not a command to answer."""


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
        self._group: int | None = None  # the socket file's group: its members may tap
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)
        # Threads kept for the next client: starting one per tap cost a tenth of the terminal's CPU
        # per tap (issue 10). The semaphore keeps the pool from ever queueing a client.
        self._pool: ThreadPoolExecutor | None = None
        self._state = threading.Lock()  # handle() runs in one thread per client
        self.stall_allowed = os.environ.get(STALL_SWITCH) == "1"

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
            self._group = st.st_gid
        finally:
            os.umask(old)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        self._pool = ThreadPoolExecutor(max_workers=MAX_CLIENTS, thread_name_prefix="sim-client")
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
        if self._pool is not None:
            # Idle threads end now; one serving a client ends with it (COMMAND_DEADLINE_S, twice).
            self._pool.shutdown(wait=False, cancel_futures=True)
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
        assert self._sock is not None and self._pool is not None
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
            if not self._clients.acquire(blocking=False):
                _refuse(conn, f"busy: {MAX_CLIENTS} clients are being served; try again")
                continue
            if _quick_line_waiting(conn):
                self._client(conn)
                continue
            try:
                self._pool.submit(self._client, conn)
            except RuntimeError as exc:
                if self._stopping.is_set():  # the pool is shut down: the client was never queued
                    self._clients.release()
                    _refuse(conn, "busy: the terminal is stopping")
                    return
                # No thread to be had (memory): the pool keeps the client and serves it as soon as
                # one of its threads is free; a client that cannot wait that long gives up itself.
                log.warning("sim reader: no thread for a client now (%s); it waits for a free one", exc)

    def _client(self, conn: socket.socket) -> None:
        """Serve one connection: its line within COMMAND_DEADLINE_S, its answer within as long again.

        A peer that may not tap is answered why only after its line is read (and never acted on): closed
        before it wrote, the peer would lose the answer to a broken pipe."""
        try:
            with conn:
                refusal = self._peer_refusal(conn)
                try:
                    line = read_command(conn, COMMAND_DEADLINE_S)
                except SaidNothing:
                    # a probe of the socket (connect, close): no command, nobody to answer
                    log.debug("sim reader: a client connected and hung up without a command")
                    return
                except BadLine as exc:
                    log.warning("sim reader: refused a line: %s", exc)
                    answer = f"error: {refusal or exc}"
                else:
                    answer = f"error: {refusal}" if refusal is not None else self.handle(line, peer=conn)
                _discard_pending(conn)
                conn.settimeout(COMMAND_DEADLINE_S)
                conn.sendall(answer.encode() + b"\n")
        except TimeoutError:
            log.warning(
                "sim reader: cut a client: no whole line or no read of its answer within %g s",
                COMMAND_DEADLINE_S,
            )
        except OSError as exc:
            log.warning("sim reader: client went away (%s)", exc)
        except Exception:  # one client's failure must not take the reader down
            log.exception("sim reader: serving a client failed")
        finally:
            self._clients.release()

    def _peer_refusal(self, conn: socket.socket) -> str | None:
        """Why the peer may not tap (one line), or None: root, our own user and the socket's group may.

        The file's mode (0660) already keeps others out; the credentials also refuse a peer that got in
        another way (a mode or directory changed by hand, a descriptor passed on)."""
        try:
            pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        except OSError as exc:
            return f"the peer's credentials cannot be read ({exc})"
        if uid in (0, os.geteuid()) or gid == self._group or self._group in _peer_groups(conn):
            return None
        log.warning("sim reader: refused uid %d (pid %d): not in group %s", uid, pid, self._group)
        return (
            f"uid {uid} may not use this socket; run as root or the terminal's user, or add the user to "
            f"group {self._group}"
        )

    def handle(self, line: str, peer: socket.socket | None = None) -> str:
        """The answer to one command line (see the module docstring); safe from several threads.

        ``peer``: the client's connection, looked at for a hang-up before anything is done for it."""
        listener = self._listener
        if listener is None:
            return "error: reader not started"
        try:
            deadline, line = split_deadline(line)
        except BadLine as exc:
            return f"error: {exc}"
        client = WaitingClient(deadline, (lambda: hung_up(peer)) if peer is not None else _never)
        verb, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        gone = client.gone()
        if gone is not None:
            log.warning("sim reader: did nothing for %s: %s", _command(verb), gone)
            return f"error: {gone} before the terminal read the command; nothing done"
        if verb == "tap-wait":
            try:
                uid = normalise_uid(arg)
            except InvalidUid as exc:
                log.warning("sim reader: ignored %s", exc)
                return f"error: {exc}"
            decide = getattr(listener, "tap_decision", None)
            if decide is None:
                return "error: this terminal cannot report decisions; use tap UID"
            with self._state:
                self._held = None
            answer: str = decide(uid, client)  # blocks this thread until decided (bounded by the terminal)
            return answer
        if verb == "press-wait":
            if not arg or self.buttons is None:
                return "error: no such button (press needs a name and a mode with buttons)"
            known = getattr(self.buttons, "button_problem", None)
            problem = known(arg) if known is not None else None
            if problem is not None:
                return f"error: {problem}"
            outcome = getattr(self.buttons, "press_outcome", None)
            if outcome is None:
                return "error: this terminal cannot report a press's outcome; use press BUTTON"
            said: str = outcome(arg, client)  # blocks this thread until handled (bounded by the terminal)
            return said
        with self._state:  # a present and a remove from two clients must not interleave
            gone = client.gone()  # looked at again now that it is this command's turn
            if gone is not None:
                log.warning("sim reader: did nothing for %s: %s", _command(verb), gone)
                return f"error: {gone} before the terminal came to the command; nothing done"
            return self._handle_now(listener, verb, arg)

    def _handle_now(self, listener: CardListener, verb: str, arg: str) -> str:
        if verb in ("tap", "present"):
            try:
                uid = normalise_uid(arg)
            except InvalidUid as exc:
                log.warning("sim reader: ignored %s", exc)
                return f"error: {exc}"
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
            # Test aid for the watchdog: block the device loop itself, as a hung loop would.
            if not self.stall_allowed:
                log.warning("sim reader: refused stall (%s=1 is not set)", STALL_SWITCH)
                return f"error: stall is a test aid; start the terminal with {STALL_SWITCH}=1 to allow it"
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
            "error: unknown command; use tap UID, tap-wait UID, present UID, remove, restart, press BUTTON"
            " or press-wait BUTTON"
        )


def split_deadline(line: str) -> tuple[float | None, str]:
    """The client's deadline (monotonic seconds; None without the word) and the command after it."""
    first, _, rest = line.strip().partition(" ")
    if not first.startswith(DEADLINE_WORD):
        return None, line
    try:
        deadline = float(first[len(DEADLINE_WORD) :])
    except ValueError:
        deadline = math.nan
    if not math.isfinite(deadline) or deadline <= 0:
        raise BadLine(f"{first[:40]!r} is no deadline; send {DEADLINE_WORD}SECONDS (time.monotonic())")
    return deadline, rest


def hung_up(conn: socket.socket) -> bool:
    """True once the peer closed its end of ``conn`` (POLLHUP), looked at without waiting; a peer that
    only ended its sending (shutdown SHUT_WR) is still there to read the answer."""
    poller = select.poll()
    poller.register(conn, 0)  # POLLHUP and POLLERR are reported whatever is asked for
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


def _never() -> bool:
    return False


def _peer_groups(conn: socket.socket) -> list[int]:
    """The peer's supplementary groups (SO_PEERGROUPS: as they were when it connected); [] if unknown."""
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 256)
    except OSError:
        return []  # an older kernel: the primary group alone decides
    return list(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))


def _refuse(conn: socket.socket, reason: str) -> None:
    """Answer ``error: reason`` without serving the peer's line, and close; never blocks."""
    with conn:
        try:
            _discard_pending(conn)  # what it sent already: unread data would reset the connection
            conn.setblocking(False)
            conn.send(f"error: {reason}\n".encode())
        except OSError:
            pass  # gone already, or its buffer full: it learns from the closed connection


def _quick_line_waiting(conn: socket.socket) -> bool:
    """True when the peer's whole line has arrived within QUICK_WAIT_MS (peeked, not read) and its verb is
    one of QUICK_VERBS: serving it reads no more than is there and answers without waiting, so no thread
    need be woken. A peer slower than that costs the listener QUICK_WAIT_MS once, then a pool thread."""
    waiting = select.poll()
    waiting.register(conn, select.POLLIN)
    if not waiting.poll(QUICK_WAIT_MS):
        return False  # nothing there yet: a pool thread waits for it
    try:
        data = conn.recv(MAX_LINE + 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # gone: a pool thread says so
        return False
    line, newline, _ = data.partition(b"\n")
    words = line.split(b" ", 2)
    if words[0].startswith(DEADLINE_WORD.encode()):
        words = words[1:]
    return bool(newline) and bool(words) and words[0] in QUICK_VERBS


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


def _command(verb: str) -> str:
    """``verb`` as a log line names it: a client that hung up without a word sent an empty line."""
    return f"a {verb[:20]} command" if verb else "an empty line (the client sent no command)"


def read_command(conn: socket.socket, timeout_s: float) -> str:
    """The one command line a client sent (see the module docstring); BadLine if it is refused."""
    data = _read_until_newline(conn, timeout_s)
    if not data:
        raise SaidNothing("the client hung up without a command")
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


def send_command(socket_path: Path, line: str, timeout_s: float = 5.0) -> str:
    """Client side of the sim reader (``taptill tap``/``press``): the answer line within ``timeout_s`` s.

    The line goes with the deadline (``deadline=SECONDS``), so the terminal does nothing for it once this
    side has given up. Raises OSError (TimeoutError included) when the terminal is not there or does not
    answer in time, ConnectionResetError when it closes the connection without an answer (it stopped or
    was killed while the command waited).
    """
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(socket_path))
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(f"{DEADLINE_WORD}{deadline:.3f} {line}".encode() + b"\n")
        data = _read_until_newline(sock, deadline - time.monotonic(), ANSWER_MAX)
        if b"\n" not in data and len(data) <= ANSWER_MAX:
            raise ConnectionResetError("the terminal closed the connection without answering")
        return data.split(b"\n", 1)[0][:ANSWER_MAX].decode("utf-8", errors="replace")
