"""A private pcscd with the vpcd virtual reader, and virtual cards that tests and benchmarks put on it.

pcscd 1.9.9 always puts its socket at ``/run/pcscd/pcscd.comm``. To keep the lab away from a system pcscd
(and from other test processes), each daemon runs in its own mount namespace (``unshare -m``) with a
private directory bind-mounted on ``/run/pcscd``; the client finds it through ``PCSCLITE_CSOCK_NAME``.
libpcsclite reads that variable once, at the first PC/SC call of the process, so all daemons a process
starts share one socket path (``process_socket_dir``) and only one of them runs at a time.
vpcd listens on all interfaces, so each daemon gets its own pair of free ports.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

SOCKET_ENV = "PCSCLITE_CSOCK_NAME"
SYSTEM_SOCKET_DIR = Path("/run/pcscd")
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_SLOTS = 2
# PC/SC part 3 pseudo-ATR of a MIFARE Ultralight: what a contactless reader reports for an NTAG/Ultralight.
ULTRALIGHT_ATR = bytes.fromhex("3B8F8001804F0CA0000003060300030000000068")
UID_APDU = bytes.fromhex("FFCA000000")
SW_OK = b"\x90\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"

_CONTROL_POWER_OFF = 0x00
_CONTROL_POWER_ON = 0x01
_CONTROL_RESET = 0x02
_CONTROL_GET_ATR = 0x04


class PcscLabError(RuntimeError):
    """The lab could not start pcscd or reach vpcd."""


def process_socket_dir() -> Path:
    """Return the one pcscd socket directory this process can use, setting PCSCLITE_CSOCK_NAME if unset."""
    current = os.environ.get(SOCKET_ENV)
    if current:
        directory = Path(current).parent
        if directory.resolve() == SYSTEM_SOCKET_DIR.resolve():
            raise PcscLabError(
                f"{SOCKET_ENV} points at the system pcscd ({current}); "
                "unset it so the lab uses a private socket"
            )
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    directory = Path(tempfile.mkdtemp(prefix="taptill-pcscd-"))
    os.environ[SOCKET_ENV] = str(directory / "pcscd.comm")
    atexit.register(_remove_socket_dir, directory)
    return directory


def _remove_socket_dir(directory: Path) -> None:
    # Only when empty: a pcscd still running in it (a crashed caller) keeps its files.
    with contextlib.suppress(OSError):
        directory.rmdir()


def free_port_pair() -> int:
    """Return a port p such that p and p + 1 are both free on all interfaces (vpcd uses one per slot)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("0.0.0.0", 0))
            port = int(first.getsockname()[1])
            if port + VPCD_SLOTS - 1 > 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("0.0.0.0", port + 1))
                except OSError:
                    continue
                return port
    raise PcscLabError("found no two consecutive free TCP ports for vpcd; free some ports and retry")


class PcscDaemon:
    """A private pcscd whose only driver is vpcd on its own ports; start/stop/restart it at will."""

    def __init__(self, workdir: Path, *, friendly_name: str = "Virtual PCD", port: int | None = None) -> None:
        if not VPCD_DRIVER.exists():
            raise PcscLabError(
                f"vpcd driver {VPCD_DRIVER} is missing; install it: apt-get install vsmartcard-vpcd"
            )
        if shutil.which("pcscd") is None or shutil.which("unshare") is None:
            raise PcscLabError("pcscd or unshare is missing; install them: apt-get install pcscd util-linux")
        self.friendly_name = friendly_name
        self.port = port if port is not None else free_port_pair()
        self.socket_dir = process_socket_dir()
        self.socket_path = self.socket_dir / "pcscd.comm"
        self.config_dir = workdir / "reader.conf.d"
        self.log_path = workdir / "pcscd.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def reader_names(self) -> list[str]:
        """The names pcscd gives the vpcd slots, in slot order."""
        return [f"{self.friendly_name} 00 {slot:02d}" for slot in range(VPCD_SLOTS)]

    def slot_port(self, slot: int) -> int:
        """The TCP port a virtual card connects to in order to sit on reader ``slot``."""
        if not 0 <= slot < VPCD_SLOTS:
            raise ValueError(f"vpcd has slots 0..{VPCD_SLOTS - 1}, not {slot}")
        return self.port + slot

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 5.0) -> None:
        """Start pcscd and return once its socket accepts clients."""
        if self.running:
            return
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "vpcd").write_text(
            f'FRIENDLYNAME "{self.friendly_name}"\n'
            f"DEVICENAME   /dev/null:0x{self.port:04X}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    0x{self.port:04X}\n"
        )
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.socket_dir / "pcscd.pid").unlink()
        if os.geteuid() == 0:
            # The bind mount needs a mount point; /run/pcscd is the directory the pcscd package owns anyway.
            SYSTEM_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
            unshare = ["unshare", "--mount", "--propagation", "private"]
        elif SYSTEM_SOCKET_DIR.is_dir():
            unshare = ["unshare", "--map-root-user", "--mount", "--propagation", "private"]
        else:
            raise PcscLabError(
                f"{SYSTEM_SOCKET_DIR} does not exist; run the lab as root or create it once as root"
            )
        script = 'mount --bind "$1" /run/pcscd && exec pcscd --foreground --config "$2"'
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [*unshare, "sh", "-c", script, "pcscd-lab", str(self.socket_dir), str(self.config_dir)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._close_log()
                code = self._process.returncode
                raise PcscLabError(f"pcscd exited at start with {code}; see {self.log_path}")
            if self._socket_accepts():
                return
            time.sleep(0.005)
        self.stop()
        raise PcscLabError(
            f"pcscd did not open {self.socket_path} within {timeout_s:g} s; see {self.log_path}"
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop pcscd (SIGTERM, then SIGKILL) and wait for it; safe to call when it is not running."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        self._close_log()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _socket_accepts(self) -> bool:
        if not self.socket_path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                return False
        return True

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> PcscDaemon:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class VirtualCard:
    """A contactless card on a vpcd slot: answers the ATR poll and ``FF CA 00 00 00`` with its UID.

    ``uid_status`` is the status word for the UID request; anything but 90 00 is sent alone, as a reader
    does when it cannot read the UID. ``quickack`` sets TCP_QUICKACK before each receive: vpcd writes the
    length and the body in two sends, and without it Nagle plus delayed ACK add ~40 ms per message.
    """

    def __init__(
        self,
        uid: bytes | str,
        *,
        uid_status: bytes = SW_OK,
        atr: bytes = ULTRALIGHT_ATR,
        quickack: bool = True,
    ) -> None:
        self.uid = bytes.fromhex(uid) if isinstance(uid, str) else bytes(uid)
        self.uid_status = uid_status
        self.atr = atr
        self.quickack = quickack
        self.apdus: list[bytes] = []
        self.inserted_at: float | None = None
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._taken = threading.Event()  # remove() was called: a resting card stops reconnecting

    @property
    def inserted(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def insert(self, port: int, timeout_s: float = 5.0) -> None:
        """Put the card on the vpcd slot listening on ``port`` (connects, retrying while vpcd starts)."""
        if self.inserted:
            raise PcscLabError("the virtual card is already inserted; remove it first")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                break
            except OSError as error:
                if time.monotonic() >= deadline:
                    raise PcscLabError(f"vpcd does not accept cards on port {port}: {error}") from error
                time.sleep(0.01)
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inserted_at = time.perf_counter()
        self._socket = conn
        self._thread = threading.Thread(target=self._serve, args=(conn,), name="virtual-card", daemon=True)
        self._thread.start()

    def rest(self, port: int) -> None:
        """Lay the card on the vpcd slot listening on ``port`` to stay, through pcscd restarts.

        A card lying on a reader is there for whichever pcscd runs next: when vpcd goes away (pcscd
        stops) the card connects again as soon as vpcd listens again. remove() takes it away.
        """
        if self.inserted:
            raise PcscLabError("the virtual card is already inserted; remove it first")
        self._taken.clear()
        self.inserted_at = time.perf_counter()
        self._thread = threading.Thread(target=self._lie, args=(port,), name="virtual-card", daemon=True)
        self._thread.start()

    def _lie(self, port: int) -> None:
        while not self._taken.is_set():
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1.0)
            except OSError:
                self._taken.wait(0.01)  # vpcd is not listening (pcscd is away): try again
                continue
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._taken.is_set():
                    conn.close()
                    return
                self._socket = conn
            self._serve(conn)
            with self._lock:
                self._socket = None
            conn.close()

    def remove(self) -> None:
        """Take the card away (closes its connection); safe to call when it is not inserted."""
        self._taken.set()
        with self._lock:
            conn, self._socket = self._socket, None
        if conn is not None:
            # close() alone does not wake the thread blocked in recv(); shutdown() does.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def respond(self, apdu: bytes) -> bytes:
        """The response APDU for ``apdu``."""
        if apdu == UID_APDU:
            return self.uid + SW_OK if self.uid_status == SW_OK else self.uid_status
        return SW_INS_NOT_SUPPORTED

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                (length,) = struct.unpack(">H", self._receive(conn, 2))
                body = self._receive(conn, length)
                if len(body) == 1:
                    if body[0] == _CONTROL_GET_ATR:
                        conn.sendall(struct.pack(">H", len(self.atr)) + self.atr)
                    # power off/on and reset need no answer
                    continue
                self.apdus.append(body)
                response = self.respond(body)
                conn.sendall(struct.pack(">H", len(response)) + response)
        except (EOFError, OSError):
            return

    def _receive(self, conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            if self.quickack:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data
