"""The nfcpy card reader: polls ISO 14443 A on its own thread and reports UIDs, removals and reader loss.

A tag found by the first poll after the device (re)opens was lying in the field already (the service
started, or the reader failed and came back): it is reported with ``already_present``, not as a tap.

A device that cannot be opened, or fails while polling, is tried again after a backoff
(``retry_interval_s``, doubling up to 30 s); anything else that goes wrong on the reader's thread
restarts its loop with the same backoff (hw/readers/supervision.py). Each failure is one warning line
of ours, saying what failed, on which device and when it retries.

nfcpy logs every attempt to open a device itself (INFO "searching for reader on path usb", ERROR "no
reader available on path usb") and every I/O error that ends a poll (ERROR): with a reader missing that
was two journal lines a second. A filter on its ``nfc.clf`` logger drops those lines of ``open()`` and
``connect()`` (whose outcome our own line reports, with the error nfcpy gave) and lets everything else
through: setting the whole ``nfc`` logger to CRITICAL instead would also hide the warnings of its tag
modules (ISO-DEP transmission errors of a card), which nothing of ours reports.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from hw.readers.base import CardListener
from hw.readers.supervision import Backoff, failed, run_supervised
from terminal.uid import InvalidUid, normalise_uid

log = logging.getLogger(__name__)

KNOWN_TARGETS = frozenset({"106A", "212A", "424A", "106B", "212B", "424B", "212F", "424F"})
NFCPY_LOGGER = "nfc.clf"  # the module of ContactlessFrontend.open() and connect()


class _NfcpyAttemptFilter(logging.Filter):
    """Keeps nfcpy's per-attempt lines of ``open()`` and ``connect()`` out of the log (the reader logs
    one line of its own per failure); the last error it dropped on a thread is kept for that line."""

    FUNCTIONS = frozenset({"open", "connect"})

    def __init__(self) -> None:
        super().__init__()
        self._last = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.funcName not in self.FUNCTIONS or not logging.DEBUG < record.levelno < logging.CRITICAL:
            return True  # DEBUG lines show only with run --verbose, where a person wants them
        if record.levelno >= logging.ERROR:
            self._last.error = record.getMessage()
        return False

    def take_error(self) -> str:
        """The last ERROR dropped on this thread ("" if none), forgotten once taken."""
        error: str = getattr(self._last, "error", "")
        self._last.error = ""
        return error


NFCPY_FILTER = _NfcpyAttemptFilter()


class NfcpyReader:
    """A PN53x/ACR122U/PN532 reader (or nfcpy's ``udp`` test driver) behind the Reader protocol."""

    def __init__(
        self,
        device: str = "usb",
        targets: tuple[str, ...] = ("106A",),
        poll_interval_s: float = 0.1,
        retry_interval_s: float = 1.0,
    ) -> None:
        if not device:
            raise ValueError("the nfcpy device path is empty; set [reader] device (usb, tty:AMA0:pn532, ...)")
        unknown = [t for t in targets if t not in KNOWN_TARGETS]
        if not targets or unknown:
            raise ValueError(
                f"nfcpy targets {list(targets)!r} are not valid; use some of {sorted(KNOWN_TARGETS)}"
            )
        if not 0.01 <= poll_interval_s <= 5.0:
            raise ValueError(f"poll interval {poll_interval_s} s is out of range; use 0.01 to 5 seconds")
        self.device = device
        self.targets = targets
        self.poll_interval_s = poll_interval_s
        self.backoff = Backoff(first_s=retry_interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: CardListener | None = None
        self._clf: Any = None
        self._card_reported = False
        self._tag_connected = False
        self._senses = 0  # senses started since the device was (re)opened

    @property
    def retry_interval_s(self) -> float:
        """The first delay (s) after a failure (a device that cannot be opened, or fails); doubles to 30 s."""
        return self.backoff.first_s

    @retry_interval_s.setter
    def retry_interval_s(self, seconds: float) -> None:
        self.backoff.first_s = seconds

    def start(self, listener: CardListener) -> None:
        if self._thread is not None:
            raise RuntimeError("the nfcpy reader is already started; create a new one to restart")
        self._listener = listener
        logging.getLogger(NFCPY_LOGGER).addFilter(NFCPY_FILTER)  # added once, however many readers
        self._thread = threading.Thread(target=self._supervised, name="nfcpy-reader", daemon=True)
        self._thread.start()

    def _supervised(self) -> None:
        run_supervised(
            f"NFC {self.device!r}", self._run, self._stop, lambda why: self._status(False, why), self.backoff
        )

    def stop(self) -> None:
        thread = self._thread
        self._stop.set()
        if thread is None:
            return
        # A sense over nfcpy's udp driver blocks up to 1 s waiting for an answer; waking its socket lets
        # stop() return at once. USB and serial drivers return from a sense within their own short timeout.
        for _ in range(40):
            self._wake_udp_socket()
            thread.join(timeout=0.05)
            if not thread.is_alive():
                break
        else:
            log.warning("nfcpy reader thread did not stop within 2 s; it will end with the process")

    def _wake_udp_socket(self) -> None:
        sock = getattr(getattr(self._clf, "device", None), "socket", None)
        if isinstance(sock, socket.socket):
            # Raises ENOTCONN on an unconnected UDP socket, yet Linux still wakes the blocked select().
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        while not self._stop.is_set():
            clf, problem = self._open()
            if clf is None:
                # A device that is not there (yet) fails like one that breaks: counted, backed off.
                self._failed(problem)
                continue
            log.info("NFC reader %s ready on %r", clf, self.device)
            self._status(True, f"NFC reader {clf} ready")
            self.backoff.started()
            problem = self._poll(clf)
            self._clf = None
            try:
                clf.close()
            except Exception:  # a vanished device may fail to close; it is gone either way
                log.debug("closing the nfcpy device failed", exc_info=True)
            self._tag_connected = False
            if self._card_reported and not self._stop.is_set():
                self._notify(lambda listener: listener.card_removed())
            self._card_reported = False
            if self._stop.is_set():
                break
            self._failed(problem)

    def _failed(self, problem: str) -> None:
        """One failure: a warning line, the reader reported offline, and the backoff's wait."""
        delay = failed(self.backoff, problem)
        self._status(False, problem)
        self._stop.wait(delay)

    def _open(self) -> tuple[Any, str]:
        """The opened ContactlessFrontend and ""; or None and what went wrong, with what to do."""
        import nfc  # imported here: the core must run on machines without nfcpy

        clf = nfc.ContactlessFrontend()
        NFCPY_FILTER.take_error()
        try:
            opened = clf.open(self.device)
        except Exception as exc:  # IOError (EACCES, EBUSY), OSError (libusb missing), ValueError (path)
            return None, (
                f"NFC reader {self.device!r} cannot be opened ({exc}); check [reader] device and that "
                "the service user may open it (group plugdev for USB, dialout for a serial port)"
            )
        if not opened:
            return None, f"no NFC reader found at {self.device!r}; check the cable and [reader] device"
        self._clf = clf
        return clf, ""

    def _poll(self, clf: Any) -> str:
        """Poll until stopped (returns "") or until the device fails (returns what went wrong)."""
        options = {
            "targets": list(self.targets),
            # One sense per connect loop, so terminate() runs (and paces the polling) between senses.
            "iterations": 1,
            "interval": self.poll_interval_s,
            "on-connect": self._on_connect,
            "on-release": self._on_release,
            "beep-on-connect": False,  # the terminal's own buzzer reports the outcome of a tap
        }
        self._senses = 0
        NFCPY_FILTER.take_error()
        while not self._stop.is_set():
            try:
                result = clf.connect(rdwr=options, terminate=self._terminate)
            except Exception as exc:
                if self._stop.is_set():
                    return ""
                log.debug("nfcpy connect failed", exc_info=True)
                return f"NFC reader {self.device!r} failed ({exc}); check the cable"
            if result is False and not self._stop.is_set():
                # connect() returns False after an IOError (logged by nfcpy, kept by the filter): the
                # device went away (unplugged, reset).
                error = NFCPY_FILTER.take_error()
                why = f" ({error})" if error else ""
                return f"NFC reader {self.device!r} stopped answering{why}; check the cable"
        return ""

    def _terminate(self) -> bool:
        if self._stop.is_set():
            return True
        if not self._tag_connected:
            # Before each sense (nfcpy asks before the first one too): wait the poll interval (woken at
            # once by stop()) instead of spinning.
            self._senses += 1
            return self._stop.wait(self.poll_interval_s)
        return False

    def _on_connect(self, tag: Any) -> bool:
        self._tag_connected = True
        try:
            uid = normalise_uid(bytes(tag.identifier))
        except InvalidUid as exc:
            log.warning("ignoring a tag with an unusable UID: %s", exc)
        else:
            self._card_reported = True
            already = self._senses <= 1  # found by the first sense after the device opened
            self._notify(lambda listener: listener.card_present(uid, already_present=already))
        return True  # let nfcpy check presence until the tag leaves, so a held card is one event

    def _on_release(self, tag: Any) -> bool:
        self._tag_connected = False
        if self._card_reported and not self._stop.is_set():
            self._card_reported = False
            self._notify(lambda listener: listener.card_removed())
        return True

    def _status(self, online: bool, detail: str) -> None:
        self._notify(lambda listener: listener.reader_status(online, detail))

    def _notify(self, event: Callable[[CardListener], None]) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            event(listener)
        except Exception:  # a faulty listener must not kill the reader thread
            log.exception("card listener raised; the reader keeps running")
