"""PC/SC card reader (pyscard): a SCardGetStatusChange wait loop that reports card UIDs and survives pcscd.

Owning the wait loop (rather than pyscard's CardMonitor, a process-wide thread that never stops) gives a
clean stop() and recovery: when pcscd is not there, stops or restarts, the loop reports the reader
offline and tries to re-establish its context after a backoff (1 s doubling to 30 s, one warning line
per failed attempt, like any reader failure: hw/readers/supervision.py), and reports it back online as
soon as a matching reader is listed again. Watched readers that disappear while pcscd runs are no
failure: pcscd tells us when one comes back.

A card lying on a reader when the reader (re)appears (the service starts, pcscd restarts, the reader is
plugged back) was not tapped: it is reported with ``already_present``. That is the card in the reader's
first status, or one that shows up within ``READER_SETTLE_S`` of it: pcscd asks drivers without
interrupt support (vpcd, serial readers) for card presence every 400 ms, so a resting card may appear
one poll after its reader. A guest who taps within that second after a restart taps again.

The PC/SC client library honours ``PCSCLITE_CSOCK_NAME`` (the pcscd socket path), read once at the first
PC/SC call of the process; tests use it to point at a private pcscd.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import ModuleType

from hw.readers.base import CardListener
from hw.readers.supervision import Backoff, failed, run_supervised
from terminal.uid import InvalidUid, normalise_uid

log = logging.getLogger(__name__)

UID_APDU = [0xFF, 0xCA, 0x00, 0x00, 0x00]
PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
UNKNOWN_READER_PAUSE_S = 0.05
STOP_JOIN_TIMEOUT_S = 2.0
READER_SETTLE_S = 1.0  # two and a half of pcscd's 400 ms presence polls


def _code(result: int) -> int:
    """PC/SC result codes as unsigned 32-bit numbers, whatever sign pyscard hands back."""
    return result & 0xFFFFFFFF


class PcscReader:
    """Card reader through pcscd; watches every reader whose name contains ``name_filter`` (all if None).

    ``poll_timeout_ms`` bounds each SCardGetStatusChange wait; between waits the reader list is re-read,
    which is how readers plugged in while nobody listened are found. It costs one short IPC per wait.
    """

    def __init__(self, name_filter: str | None = None, *, poll_timeout_ms: int = 500) -> None:
        if poll_timeout_ms <= 0:
            raise ValueError(f"poll_timeout_ms must be positive, got {poll_timeout_ms}")
        self.name_filter = name_filter
        self.poll_timeout_ms = poll_timeout_ms
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._context: int | None = None
        self._thread: threading.Thread | None = None
        self._listener: CardListener | None = None
        self._last_status: tuple[bool, str] | None = None
        # A loop that fails (a driver or pyscard raising), and pcscd missing or going away, are tried
        # again after 1 s, 2 s, … 30 s.
        self.backoff = Backoff()

    def start(self, listener: CardListener) -> None:
        if self._thread is not None:
            raise RuntimeError("PcscReader.start() was called twice; create a new reader instead")
        from smartcard import scard  # only this adapter needs pyscard

        self._listener = listener
        self._thread = threading.Thread(
            target=run_supervised,
            args=("PC/SC", lambda: self._run(scard), self._stopping, self._report_failure, self.backoff),
            name="pcsc-reader",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._context is not None:
                from smartcard import scard

                scard.SCardCancel(self._context)  # wakes the blocked SCardGetStatusChange at once
        if self._thread is not None:
            self._thread.join(STOP_JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("PC/SC reader thread did not stop within %.1f s", STOP_JOIN_TIMEOUT_S)

    def matches(self, reader_name: str) -> bool:
        """True if this reader watches ``reader_name`` (case-insensitive substring of the filter)."""
        if reader_name == PNP_NOTIFICATION:
            return False
        return self.name_filter is None or self.name_filter.casefold() in reader_name.casefold()

    def _run(self, scard: ModuleType) -> None:
        listener = self._listener
        assert listener is not None  # start() sets it before the thread exists
        while not self._stopping.is_set():
            result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if _code(result) != scard.SCARD_S_SUCCESS:
                why = scard.SCardGetErrorMessage(result).strip().rstrip(".")
                self._service_failed(
                    f"pcscd is not available ({why}); start it: systemctl start pcscd.socket "
                    "(apt install pcscd)"
                )
                continue
            self.backoff.started()
            with self._lock:
                self._context = context
            try:
                # Anything a driver throws ends this context's watch: run_supervised restarts it with
                # backoff, after the context is released and the cards on it are forgotten.
                detail = _ContextWatch(self, scard, context, listener).run()
            finally:
                with self._lock:
                    self._context = None
                scard.SCardReleaseContext(context)
            if not self._stopping.is_set():
                self._service_failed(detail)

    def _service_failed(self, detail: str) -> None:
        """pcscd missing or gone: one warning line, the reader reported offline, the backoff's wait."""
        delay = failed(self.backoff, f"PC/SC reader offline: {detail}")
        self._report_failure(detail)
        self._stopping.wait(delay)

    def _report_failure(self, detail: str) -> None:
        """A failure, already logged with its retry: told to the listener (each one, so it counts them)."""
        self._last_status = (False, detail)
        if self._listener is not None:
            _notify(self._listener.reader_status, False, detail)

    def _report_status(self, online: bool, detail: str) -> None:
        if self._last_status == (online, detail) or self._listener is None:
            return
        self._last_status = (online, detail)
        if online:
            log.info("PC/SC reader online: %s", detail)
        else:
            log.warning("PC/SC reader offline: %s", detail)
        _notify(self._listener.reader_status, online, detail)


class _ContextWatch:
    """One PC/SC context's life: watch the matching readers until the service goes away or stop()."""

    def __init__(self, reader: PcscReader, scard: ModuleType, context: int, listener: CardListener) -> None:
        self.reader = reader
        self.scard = scard
        self.context = context
        self.listener = listener
        self.states: dict[str, int] = {}  # reader name -> last event state (our "current state")
        # pcsc-lite >= 2 keeps the reader count in the high word and answers at once while ours differs;
        # 1.9 only wakes on changes during the call and answers 0. Feeding back its answer suits both.
        self.pnp_state = 0
        self.handled: set[str] = set()  # readers whose present card was read (reported or ignored)
        # Readers whose state after (re)appearing is not settled yet: until their first definitive
        # status, and for READER_SETTLE_S after they appeared, a card on them was already there.
        self.unsettled: set[str] = set()
        self.appeared: dict[str, float] = {}  # reader name -> time.monotonic() it (re)appeared
        self.reported: set[str] = set()  # readers whose card the listener was told about

    def run(self) -> str:
        """Watch until the service is lost or fails (returns why) or the reader stops (returns "stopped")."""
        scard = self.scard
        service_lost = {
            scard.SCARD_E_NO_SERVICE,
            scard.SCARD_E_SERVICE_STOPPED,
            scard.SCARD_E_INVALID_HANDLE,
            scard.SCARD_F_COMM_ERROR,
        }
        try:
            while not self.reader._stopping.is_set():
                names, result = self._list_readers()
                if result in service_lost:
                    return _went_away(scard, result)
                if result != scard.SCARD_S_SUCCESS:
                    # An error this loop does not know: a fresh context after the backoff, not a warning
                    # line every turn of the loop.
                    return _went_away(scard, result, "SCardListReaders failed")
                self._follow_reader_list(names)
                watched = [(name, state) for name, state in self.states.items()]
                result, changes = scard.SCardGetStatusChange(
                    self.context,
                    self.reader.poll_timeout_ms,
                    [*watched, (PNP_NOTIFICATION, self.pnp_state)],
                )
                result = _code(result)
                if result in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
                    continue  # cancelled means stop()
                if result == scard.SCARD_E_UNKNOWN_READER:
                    self.reader._stopping.wait(UNKNOWN_READER_PAUSE_S)  # the next list drops it
                    continue
                if result in service_lost:
                    return _went_away(scard, result)
                if result != scard.SCARD_S_SUCCESS:
                    # An error this loop does not know: a fresh context after the backoff, not a warning
                    # line every turn of the loop.
                    return _went_away(scard, result, "SCardGetStatusChange failed")
                for name, event_state, _atr in changes:
                    if name == PNP_NOTIFICATION:
                        self.pnp_state = event_state & ~scard.SCARD_STATE_CHANGED
                    elif name in self.states:
                        self._follow_reader_state(name, event_state)
            return "stopped"
        finally:
            if not self.reader._stopping.is_set():  # no events after stop()
                self._forget_cards(set(self.reported))

    def _list_readers(self) -> tuple[list[str], int]:
        result, names = self.scard.SCardListReaders(self.context, [])
        result = _code(result)
        if result == self.scard.SCARD_E_NO_READERS_AVAILABLE:
            return [], self.scard.SCARD_S_SUCCESS
        if result != self.scard.SCARD_S_SUCCESS:
            return [], result
        return [str(name) for name in names if self.reader.matches(str(name))], result

    def _follow_reader_list(self, names: list[str]) -> None:
        if set(names) == set(self.states):
            if not names:
                self._report_no_reader()
            return
        gone = set(self.states) - set(names)
        self._forget_cards(gone & self.reported)
        for name in gone:
            del self.states[name]
            self.handled.discard(name)
            self.unsettled.discard(name)
            self.appeared.pop(name, None)
        for name in names:
            if name not in self.states:
                self.states[name] = self.scard.SCARD_STATE_UNAWARE
                self.unsettled.add(name)
                self.appeared[name] = time.monotonic()
        if names:
            self.reader._report_status(True, ", ".join(sorted(self.states)))
        else:
            self._report_no_reader()

    def _report_no_reader(self) -> None:
        wanted = f"matching {self.reader.name_filter!r}" if self.reader.name_filter else "at all"
        self.reader._report_status(False, f"no PC/SC reader {wanted}; plug one in")

    def _follow_reader_state(self, name: str, event_state: int) -> None:
        scard = self.scard
        self.states[name] = event_state & ~scard.SCARD_STATE_CHANGED
        leaving = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE | scard.SCARD_STATE_IGNORE
        if event_state & leaving:
            return  # the reader is going away; the next reader list drops it
        present = bool(event_state & scard.SCARD_STATE_PRESENT)
        muted = bool(event_state & scard.SCARD_STATE_MUTE)
        already = name in self.unsettled or time.monotonic() - self.appeared[name] < READER_SETTLE_S
        if not (present and muted):  # a muted card is not a definitive answer yet
            self.unsettled.discard(name)
        if present and not muted and name not in self.handled:
            self.handled.add(name)
            uid = self._read_uid(name)
            if uid is not None:
                self.reported.add(name)
                _notify(self.listener.card_present, uid, already_present=already)
        elif not present:
            self.handled.discard(name)
            self._forget_cards({name} & self.reported)

    def _forget_cards(self, names: set[str]) -> None:
        for name in names:
            self.reported.discard(name)
            _notify(self.listener.card_removed)

    def _read_uid(self, name: str) -> str | None:
        """Connect, ask for the UID with FF CA 00 00 00 and normalise it; None (and a log line) otherwise."""
        scard = self.scard
        result, card, protocol = scard.SCardConnect(
            self.context, name, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        if _code(result) != scard.SCARD_S_SUCCESS:
            reason = scard.SCardGetErrorMessage(result)
            log.warning("ignoring the card on %s: cannot connect (%s)", name, reason)
            return None
        try:
            result, response = scard.SCardTransmit(card, protocol, UID_APDU)
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        if _code(result) != scard.SCARD_S_SUCCESS:
            reason = scard.SCardGetErrorMessage(result)
            log.warning("ignoring the card on %s: the UID request failed (%s)", name, reason)
            return None
        return _uid_from_response(name, bytes(response))


def _went_away(scard: ModuleType, result: int, what: str = "pcscd went away") -> str:
    """Why a context's watch ended, with what to check."""
    why = scard.SCardGetErrorMessage(result).strip().rstrip(".")
    return f"{what} ({why}); check it runs: systemctl status pcscd"


def _notify(event: Callable[..., None], *args: object, **kwargs: object) -> None:
    """Call a listener method; its bugs are logged, they do not take the reader down."""
    try:
        event(*args, **kwargs)
    except Exception:
        log.exception("card listener failed on %s", getattr(event, "__name__", event))


def _uid_from_response(reader_name: str, response: bytes) -> str | None:
    if len(response) < 2 or response[-2:] != b"\x90\x00":
        status = response[-2:].hex(" ").upper() or "nothing"
        log.warning(
            "ignoring the card on %s: it answered %s to the UID request (not a contactless card?)",
            reader_name,
            status,
        )
        return None
    try:
        return normalise_uid(response[:-2])
    except InvalidUid as error:
        log.warning("ignoring the card on %s: %s", reader_name, error)
        return None
