"""PcscReader through a real pcscd, the vpcd virtual reader and virtual cards the tests put on it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from hw.readers.pcsc import READER_SETTLE_S, PcscReader
from hw.readers.supervision import FIRST_RETRY_S, MAX_RETRY_S
from terminal.emulator.readers.pcsc_lab import UID_APDU, PcscDaemon, VirtualCard
from tests.pcsc_lab import (  # noqa: F401  (fixtures)
    RecordingListener,
    pcsc_daemon_fixture,
    stopped_pcsc_daemon_fixture,
    virtual_card_fixture,
)

pytestmark = pytest.mark.pcsc

CardFactory = Callable[..., VirtualCard]
ReaderFactory = Callable[..., tuple[PcscReader, RecordingListener]]


@pytest.fixture
def start_reader() -> Iterator[ReaderFactory]:
    """Start PcscReaders with a RecordingListener; all are stopped at teardown."""
    readers: list[PcscReader] = []

    def start(
        name_filter: str | None = None, *, poll_timeout_ms: int = 500
    ) -> tuple[PcscReader, RecordingListener]:
        reader = PcscReader(name_filter, poll_timeout_ms=poll_timeout_ms)
        listener = RecordingListener()
        readers.append(reader)
        reader.start(listener)
        return reader, listener

    try:
        yield start
    finally:
        for reader in readers:
            reader.stop()


# How late past its due moment a retrying reader may come back on a loaded 2-core machine.
RECOVERY_SLACK_S = 3.0
# A reader waiting as it should burns a few per cent of a core at most; one that polls without waiting
# takes at least half a core even on a loaded 2-core machine (tests/test_loop_freeze.py's figure).
BUSY_SHARE = 0.25


def _reader_thread() -> threading.Thread | None:
    return next((t for t in threading.enumerate() if t.name == "pcsc-reader" and t.is_alive()), None)


def _reader_thread_alive() -> bool:
    return _reader_thread() is not None


def test_card_uid_reported_once_while_it_stays_then_removed(
    pcsc_daemon: PcscDaemon, start_reader: ReaderFactory, virtual_card: CardFactory
) -> None:
    _, listener = start_reader(poll_timeout_ms=100)
    online = listener.wait_status(True)
    assert online.detail == "Virtual PCD 00 00, Virtual PCD 00 01"

    card = virtual_card(bytes.fromhex("04a1b2c3d4e5f6"))
    card.insert(pcsc_daemon.slot_port(0))
    listener.wait_present("04A1B2C3D4E5F6")
    time.sleep(1.5)  # many poll timeouts and pcscd status polls while the card stays
    assert listener.kinds() == ["status", "present"]
    assert card.apdus == [UID_APDU]

    card.remove()
    listener.wait_removed()
    time.sleep(0.5)
    assert listener.kinds() == ["status", "present", "removed"]


def test_two_cards_one_after_another(
    pcsc_daemon: PcscDaemon, start_reader: ReaderFactory, virtual_card: CardFactory
) -> None:
    _, listener = start_reader()
    listener.wait_status(True)
    for uid in ("A1B2C3D4", "04112233445566"):
        card = virtual_card(uid.lower())
        card.insert(pcsc_daemon.slot_port(0))
        listener.wait_present(uid, after=listener.mark())
        mark = listener.mark()
        card.remove()
        listener.wait_removed(after=mark)
    presents = [e.uid for e in listener.events if e.kind == "present"]
    assert presents == ["A1B2C3D4", "04112233445566"]
    assert listener.kinds() == ["status", "present", "removed", "present", "removed"]


def test_card_refusing_the_uid_request_is_ignored_with_a_log_line(
    pcsc_daemon: PcscDaemon,
    start_reader: ReaderFactory,
    virtual_card: CardFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="hw.readers.pcsc")
    _, listener = start_reader()
    listener.wait_status(True)

    refusing = virtual_card("04DEADBEEF0001", uid_status=b"\x6a\x81")
    refusing.insert(pcsc_daemon.slot_port(0))
    deadline = time.monotonic() + 10
    while not any("6A 81" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.02)
    [line] = [r.getMessage() for r in caplog.records if "6A 81" in r.getMessage()]
    assert "Virtual PCD 00 00" in line
    assert refusing.apdus == [UID_APDU]
    refusing.remove()

    # The next card on the same reader works, and the refused one produced no events at all.
    good = virtual_card("04A1B2C3D4E5F6")
    good.insert(pcsc_daemon.slot_port(0))
    listener.wait_present("04A1B2C3D4E5F6")
    assert listener.kinds() == ["status", "present"]


def test_watches_several_readers(
    pcsc_daemon: PcscDaemon, start_reader: ReaderFactory, virtual_card: CardFactory
) -> None:
    _, listener = start_reader()
    listener.wait_status(True)
    second = virtual_card("11223344")
    second.insert(pcsc_daemon.slot_port(1))
    listener.wait_present("11223344")
    first = virtual_card("55667788")
    first.insert(pcsc_daemon.slot_port(0))
    listener.wait_present("55667788")
    mark = listener.mark()
    second.remove()
    listener.wait_removed(after=mark)
    assert [e.uid for e in listener.events if e.kind == "present"] == ["11223344", "55667788"]


class _FailingOnceListener(RecordingListener):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def card_present(self, uid: str, *, already_present: bool = False) -> None:
        super().card_present(uid, already_present=already_present)
        if not self.failed:
            self.failed = True
            raise RuntimeError("listener bug")


def test_a_failing_listener_does_not_take_the_reader_down(
    pcsc_daemon: PcscDaemon, virtual_card: CardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    reader = PcscReader()
    listener = _FailingOnceListener()
    reader.start(listener)
    try:
        listener.wait_status(True)
        for uid in ("A1A2A3A4", "B1B2B3B4"):
            card = virtual_card(uid)
            card.insert(pcsc_daemon.slot_port(0))
            listener.wait_present(uid)
            mark = listener.mark()
            card.remove()
            listener.wait_removed(after=mark)
    finally:
        reader.stop()
    assert listener.kinds() == ["status", "present", "removed", "present", "removed"]
    assert any("card listener failed" in r.getMessage() for r in caplog.records)


def test_name_filter_picks_one_reader(
    pcsc_daemon: PcscDaemon, start_reader: ReaderFactory, virtual_card: CardFactory
) -> None:
    _, listener = start_reader("pcd 00 01")  # case-insensitive substring
    online = listener.wait_status(True)
    assert online.detail == "Virtual PCD 00 01"

    elsewhere = virtual_card("0A0B0C0D")
    elsewhere.insert(pcsc_daemon.slot_port(0))
    watched = virtual_card("01020304")
    watched.insert(pcsc_daemon.slot_port(1))
    listener.wait_present("01020304")
    time.sleep(1.0)  # pcscd has long seen the card on the other reader
    assert [e.uid for e in listener.events if e.kind == "present"] == ["01020304"]
    assert elsewhere.apdus == []


def test_no_matching_reader_is_reported_offline(pcsc_daemon: PcscDaemon, start_reader: ReaderFactory) -> None:
    _, listener = start_reader("ACR122")
    offline = listener.wait_status(False)
    assert "ACR122" in offline.detail
    assert listener.kinds() == ["status"]


def test_pcscd_restart_goes_offline_and_recovers_on_its_own(
    pcsc_daemon: PcscDaemon,
    start_reader: ReaderFactory,
    virtual_card: CardFactory,
    record_property: Callable[[str, object], None],
) -> None:
    _, listener = start_reader()
    listener.wait_status(True)
    card = virtual_card("04A1B2C3D4E5F6")
    card.insert(pcsc_daemon.slot_port(0))
    listener.wait_present("04A1B2C3D4E5F6")

    mark = listener.mark()
    pcsc_daemon.stop()
    offline = listener.wait_status(False, after=mark)
    assert "pcscd" in offline.detail
    # The card that was on the reader is gone with it, before the reader is reported offline.
    assert listener.kinds()[mark : mark + 2] == ["removed", "status"]
    card.remove()

    time.sleep(1.0)  # the reader keeps retrying while pcscd is away
    mark = listener.mark()
    pcsc_daemon.start()  # returns once pcscd's socket accepts clients: from here it is back
    back_at = time.perf_counter()
    online = listener.wait_status(True, after=mark, timeout_s=MAX_RETRY_S + 10)
    # The reader tries again when its backoff says (1 s doubling per failure, every failure reported):
    # it comes back then, or at once when that moment passed while pcscd was starting. Measured from
    # there, not from the start of a pcscd start-up that a loaded machine stretches.
    failures = [e for e in listener.events if e.kind == "status" and not e.online and e.at < online.at]
    retry_s = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (len(failures) - 1))
    due_at = max(back_at, failures[-1].at + retry_s)
    recovery_s = online.at - back_at
    record_property("pcsc_recovery_s", round(recovery_s, 3))
    print(f"pcsc reader back {recovery_s * 1000:.0f} ms after pcscd returned")
    assert online.at - due_at < RECOVERY_SLACK_S, (recovery_s, len(failures), listener.events)

    new_card = virtual_card("04998877665544")
    new_card.insert(pcsc_daemon.slot_port(1))
    listener.wait_present("04998877665544", after=mark)


def test_renamed_reader_is_dropped_and_found_again(
    pcsc_daemon: PcscDaemon, start_reader: ReaderFactory, virtual_card: CardFactory
) -> None:
    _, listener = start_reader("virtual pcd")
    listener.wait_status(True)
    mark = listener.mark()
    pcsc_daemon.stop()
    pcsc_daemon.friendly_name = "Other PCD"
    pcsc_daemon.start()
    offline = listener.wait_for(
        lambda e: e.kind == "status" and not e.online and "matching 'virtual pcd'" in e.detail, after=mark
    )
    assert offline.detail.startswith("no PC/SC reader")

    mark = listener.mark()
    pcsc_daemon.stop()
    pcsc_daemon.friendly_name = "Virtual PCD"
    pcsc_daemon.start()
    listener.wait_status(True, after=mark)
    card = virtual_card("CAFEBABE")
    card.insert(pcsc_daemon.slot_port(0))
    listener.wait_present("CAFEBABE", after=mark)


def test_starts_offline_without_pcscd_and_comes_online_when_it_starts(
    stopped_pcsc_daemon: PcscDaemon, start_reader: ReaderFactory, virtual_card: CardFactory
) -> None:
    _, listener = start_reader()
    offline = listener.wait_status(False)
    assert "pcscd is not available" in offline.detail
    stopped_pcsc_daemon.start()
    listener.wait_status(True)
    card = virtual_card("0123456789ABCD")
    card.insert(stopped_pcsc_daemon.slot_port(0))
    listener.wait_present("0123456789ABCD")


def test_card_already_on_the_reader_at_start_is_reported(
    pcsc_daemon: PcscDaemon, start_reader: ReaderFactory, virtual_card: CardFactory
) -> None:
    card = virtual_card("A0A1A2A3")
    card.insert(pcsc_daemon.slot_port(0))
    time.sleep(1.0)  # let pcscd notice it before the reader starts
    _, listener = start_reader()
    assert listener.wait_present("A0A1A2A3").already_present, "lying there at start: not a tap"


def test_a_card_resting_through_a_pcscd_restart_is_already_present_after_it(
    pcsc_daemon: PcscDaemon, start_reader: ReaderFactory, virtual_card: CardFactory
) -> None:
    _, listener = start_reader("PCD 00 00")
    listener.wait_status(True)
    time.sleep(READER_SETTLE_S)  # the reader has settled: what arrives now is a tap
    card = virtual_card("04A1B2C3D4E5F6")
    card.rest(pcsc_daemon.slot_port(0))
    assert not listener.wait_present("04A1B2C3D4E5F6").already_present

    mark = listener.mark()
    pcsc_daemon.stop()
    listener.wait_status(False, after=mark)
    pcsc_daemon.start()  # the card connects to the new vpcd as soon as it listens
    again = listener.wait_present("04A1B2C3D4E5F6", after=mark)
    assert again.already_present, "a card lying on the reader through a pcscd restart was tapped"
    kinds = [e.kind for e in listener.events[mark:]]
    assert kinds[0] == "removed" and kinds[-1] == "present" and kinds.count("present") == 1, kinds

    time.sleep(READER_SETTLE_S)
    mark = listener.mark()
    card.remove()
    listener.wait_removed(after=mark)
    card.rest(pcsc_daemon.slot_port(0))
    assert not listener.wait_present("04A1B2C3D4E5F6", after=mark).already_present


def test_stop_is_quick_even_with_a_long_wait(pcsc_daemon: PcscDaemon, start_reader: ReaderFactory) -> None:
    reader, listener = start_reader(poll_timeout_ms=60_000)
    listener.wait_status(True)
    time.sleep(0.2)  # now blocked in SCardGetStatusChange for up to a minute
    reader.stop()  # gives the thread STOP_JOIN_TIMEOUT_S to end, then returns anyway
    assert not _reader_thread_alive(), "stop() did not cancel the minute-long wait"


def test_stop_is_quick_while_pcscd_is_away(
    stopped_pcsc_daemon: PcscDaemon, start_reader: ReaderFactory
) -> None:
    reader, listener = start_reader()
    listener.wait_status(False)
    reader.stop()  # gives the thread STOP_JOIN_TIMEOUT_S to end, then returns anyway
    assert not _reader_thread_alive(), "stop() did not end the wait before the next retry"


def test_waiting_for_a_card_uses_almost_no_cpu(pcsc_daemon: PcscDaemon, start_reader: ReaderFactory) -> None:
    _, listener = start_reader()
    listener.wait_status(True)
    thread = _reader_thread()
    assert thread is not None and thread.ident is not None
    # The reader thread's own CPU time: the rest of this process (and the machine's load) is not its.
    clock = time.pthread_getcpuclockid(thread.ident)
    cpu_before, wall_before = time.clock_gettime(clock), time.perf_counter()
    time.sleep(2.0)
    share = (time.clock_gettime(clock) - cpu_before) / (time.perf_counter() - wall_before)
    assert share < BUSY_SHARE, f"the waiting reader used {share:.0%} of a core (its figure: the bench)"
