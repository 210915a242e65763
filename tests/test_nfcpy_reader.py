"""The nfcpy reader through nfcpy's own stack: its udp driver talks to the Type 2 tag emulator on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from hw.readers.nfcpy_reader import NfcpyReader
from terminal.emulator.readers.type2_tag import Type2TagEmulator

pytestmark = pytest.mark.nfcpy

# Generous bounds: nfcpy's udp driver waits 1 s per unanswered sense, and this may run on a busy 2-core box.
EVENT_TIMEOUT_S = 8.0


@dataclass
class RecordingListener:
    """A CardListener that keeps every event with the monotonic time it arrived."""

    events: list[tuple[float, str, object]] = field(default_factory=list)
    already_present: list[bool] = field(default_factory=list)  # the flag of every "present", in order
    status_changes: list[tuple[bool, str]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def card_present(self, uid: str, *, already_present: bool = False) -> None:
        with self.changed:
            self.already_present.append(already_present)
        self._add("present", uid)

    def card_removed(self) -> None:
        self._add("removed", None)

    def reader_status(self, online: bool, detail: str) -> None:
        with self.changed:
            self.status_changes.append((online, detail))
        self._add("status", (online, detail))

    def _add(self, kind: str, value: object) -> None:
        with self.changed:
            self.events.append((time.monotonic(), kind, value))
            self.changed.notify_all()

    def kinds(self) -> list[tuple[str, object]]:
        with self.changed:
            return [(kind, value) for _, kind, value in self.events]

    def statuses(self) -> list[tuple[bool, str]]:
        with self.changed:
            return list(self.status_changes)

    def card_events(self) -> list[tuple[str, object]]:
        return [(kind, value) for kind, value in self.kinds() if kind != "status"]

    def wait_for(self, predicate: Callable[[list[tuple[str, object]]], bool], what: str) -> float:
        """Wait until ``predicate`` holds for the event list; return the monotonic time it did."""
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        with self.changed:
            while True:
                kinds = [(kind, value) for _, kind, value in self.events]
                if predicate(kinds):
                    return self.events[-1][0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}; events: {kinds}")
                self.changed.wait(remaining)

    def wait_count(self, kind: str, count: int) -> float:
        return self.wait_for(lambda evs: sum(1 for k, _ in evs if k == kind) >= count, f"{count}× {kind}")


@pytest.fixture
def tag() -> Iterator[Type2TagEmulator]:
    emulator = Type2TagEmulator(uid="04:a1:b2:c3:d4:e5:f6", present=False)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def listener() -> RecordingListener:
    return RecordingListener()


@pytest.fixture
def started(tag: Type2TagEmulator, listener: RecordingListener) -> Iterator[NfcpyReader]:
    reader = NfcpyReader(device=tag.device, targets=("106A",), poll_interval_s=0.1)
    reader.start(listener)
    listener.wait_count("status", 1)
    yield reader
    reader.stop()


def test_tag_already_present_is_delivered_once_with_its_normalised_uid(
    tag: Type2TagEmulator, listener: RecordingListener
) -> None:
    tag.place()
    reader = NfcpyReader(device=tag.device)
    began = time.monotonic()
    reader.start(listener)
    try:
        arrived = listener.wait_count("present", 1)
        time.sleep(1.5)  # the tag stays in the field: nfcpy keeps checking presence, no new events
        assert [online for online, _ in listener.statuses()] == [True]
        assert listener.card_events() == [("present", "04A1B2C3D4E5F6")]
        assert listener.already_present == [True], "a tag lying there at start is not a tap"
        print(f"tag present at start → card_present {1000 * (arrived - began):.0f} ms")
    finally:
        reader.stop()


def test_removal_then_a_second_tag(
    tag: Type2TagEmulator, listener: RecordingListener, started: NfcpyReader
) -> None:
    tag.place()
    listener.wait_count("present", 1)
    removed_at = time.monotonic()
    tag.remove()
    gone = listener.wait_count("removed", 1)
    tag.place("04112233445566")
    placed_at = time.monotonic()
    second = listener.wait_count("present", 2)
    assert listener.card_events() == [
        ("present", "04A1B2C3D4E5F6"),
        ("removed", None),
        ("present", "04112233445566"),
    ]
    print(
        f"removal → card_removed {1000 * (gone - removed_at):.0f} ms; "
        f"second tag while polling → card_present {1000 * (second - placed_at):.0f} ms"
    )


def test_tag_arriving_while_the_reader_polls(
    tag: Type2TagEmulator, listener: RecordingListener, started: NfcpyReader
) -> None:
    time.sleep(1.2)  # at least one unanswered sense has run
    assert listener.card_events() == []
    assert [online for online, _ in listener.statuses()] == [True]
    sensed_while_absent = tag.frames_received
    assert sensed_while_absent > 0, "the reader never sent a SENS_REQ while the field was empty"
    placed_at = time.monotonic()
    tag.place()
    arrived = listener.wait_count("present", 1)
    assert listener.kinds()[-1] == ("present", "04A1B2C3D4E5F6")
    print(f"tag placed while polling → card_present {1000 * (arrived - placed_at):.0f} ms")


def test_unavailable_device_is_tried_again_with_growing_delays_and_each_attempt_reported(
    listener: RecordingListener,
) -> None:
    reader = NfcpyReader(device="usb:ffff:ffff")  # no reader with that vendor/product id exists here
    reader.retry_interval_s = 0.2
    reader.start(listener)
    try:
        listener.wait_count("status", 3)
        assert listener.card_events() == []
        statuses = listener.statuses()
        # Every failed open is reported (the terminal counts them), none announces the reader online.
        assert all(not online and "usb:ffff:ffff" in detail for online, detail in statuses), statuses
        at = [t for t, kind, _ in listener.events if kind == "status"]
        # Attempts 0.2 s, then 0.4 s apart (a fixed interval would flood the log of a missing reader).
        assert at[1] - at[0] >= 0.2 and at[2] - at[1] >= 0.4, at
        assert reader.backoff.failures >= 3
    finally:
        reader.stop()
        assert not _reader_thread_alive(), "stop() did not end the retries of a missing device"


def test_device_failure_reports_offline_then_recovers(
    tag: Type2TagEmulator, listener: RecordingListener, started: NfcpyReader
) -> None:
    started.retry_interval_s = 0.2
    tag.place()
    listener.wait_count("present", 1)
    tag.remove()
    listener.wait_count("removed", 1)
    tag.corrupt_next_answer()
    tag.place()  # the next SENS_RES arrives corrupted: nfcpy's driver fails as on a broken device
    failed = listener.wait_count("status", 2)
    recovered = listener.wait_count("status", 3)
    listener.wait_count("present", 2)
    assert [online for online, _ in listener.statuses()] == [True, False, True]
    assert listener.kinds()[-1] == ("present", "04A1B2C3D4E5F6")
    print(f"device failure → back online {1000 * (recovered - failed):.0f} ms")


def test_a_tag_resting_through_a_reader_restart_is_already_present_after_it(
    tag: Type2TagEmulator, listener: RecordingListener, started: NfcpyReader
) -> None:
    started.retry_interval_s = 0.2
    wait_until(lambda: tag.senses_received >= 1, "the first sense")  # the field was empty then
    tag.place()
    listener.wait_count("present", 1)
    tag.corrupt_next_answer()  # a presence check of the held tag fails as on a broken device
    listener.wait_count("status", 3)
    listener.wait_count("present", 2)
    assert [online for online, _ in listener.statuses()] == [True, False, True]
    assert listener.card_events() == [
        ("present", "04A1B2C3D4E5F6"),
        ("removed", None),
        ("present", "04A1B2C3D4E5F6"),
    ]
    assert listener.already_present == [False, True], "the resting tag was taken for a new tap"


READER_THREAD = "nfcpy-reader"


def _reader_thread_alive() -> bool:
    return any(t.name == READER_THREAD and t.is_alive() for t in threading.enumerate())


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.mark.parametrize("tag_present", [False, True], ids=["field-empty", "tag-held"])
def test_stop_returns_quickly(
    tag: Type2TagEmulator, listener: RecordingListener, started: NfcpyReader, tag_present: bool
) -> None:
    if tag_present:
        tag.place()
        listener.wait_count("present", 1)
    time.sleep(0.5)  # mid-poll: with the field empty the udp driver is blocked waiting for a SENS_RES
    began = time.monotonic()
    started.stop()  # wakes the driver's socket, and gives the thread 2 s to end
    took = time.monotonic() - began
    assert not _reader_thread_alive(), "stop() returned with the reader thread still running"
    print(f"stop() with {'a tag held' if tag_present else 'the field empty'}: {1000 * took:.1f} ms")
    frames = tag.frames_received
    time.sleep(0.4)
    assert tag.frames_received == frames, "the reader still talks to the tag after stop()"


def test_polling_does_not_hog_the_cpu(
    tag: Type2TagEmulator, listener: RecordingListener, started: NfcpyReader
) -> None:
    tag.place()
    listener.wait_count("present", 1)
    thread = next(t for t in threading.enumerate() if t.name == READER_THREAD)
    assert thread.ident is not None
    # The reader thread's own CPU time: not the tag emulator's, nor what the machine's load costs it.
    clock = time.pthread_getcpuclockid(thread.ident)
    cpu, wall = time.clock_gettime(clock), time.monotonic()
    time.sleep(2.0)  # a held tag: nfcpy checks its presence every ~0.1 s
    share = (time.clock_gettime(clock) - cpu) / (time.monotonic() - wall)
    print(f"CPU while a tag is held: {100 * share:.1f} % of one core")
    # A reader that polls without waiting takes at least half a core even on a loaded 2-core machine.
    assert share < 0.25


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": ("106X",)}, "targets"),
        ({"targets": ()}, "targets"),
        ({"poll_interval_s": 0.0}, "poll interval"),
        ({"device": ""}, "device"),
    ],
)
def test_bad_settings_are_rejected_with_a_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NfcpyReader(**kwargs)  # type: ignore[arg-type]
