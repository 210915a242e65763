"""pytest fixtures for PC/SC tests: a private pcscd with vpcd per test, virtual cards, a recording listener.

Import the fixtures into a test module (``from tests.pcsc_lab import pcsc_daemon_fixture, ...``); they
are named without the suffix (``pcsc_daemon``, ``stopped_pcsc_daemon``, ``virtual_card``). Every process
they start is stopped by their finalizers, and every card is removed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from terminal.emulator.readers.pcsc_lab import SW_OK, PcscDaemon, VirtualCard


@dataclass(frozen=True)
class ReaderEvent:
    """One call a reader made on its listener: kind is "present", "removed" or "status"."""

    kind: str
    uid: str = ""
    already_present: bool = False  # "present": the card was there when the reader (re)started
    online: bool = False
    detail: str = ""
    at: float = 0.0


class RecordingListener:
    """A CardListener that records every call with its time and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[ReaderEvent] = []
        self._changed = threading.Condition()

    def card_present(self, uid: str, *, already_present: bool = False) -> None:
        self._record(ReaderEvent("present", uid=uid, already_present=already_present, at=time.perf_counter()))

    def card_removed(self) -> None:
        self._record(ReaderEvent("removed", at=time.perf_counter()))

    def reader_status(self, online: bool, detail: str) -> None:
        self._record(ReaderEvent("status", online=online, detail=detail, at=time.perf_counter()))

    def _record(self, event: ReaderEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(
        self, matches: Callable[[ReaderEvent], bool], *, after: int = 0, timeout_s: float = 10.0
    ) -> ReaderEvent:
        """Wait for the first event at index >= ``after`` that ``matches``; fail the test on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for event in self.events[after:]:
                    if matches(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"no matching reader event within {timeout_s:g} s; got {self.events}")
                self._changed.wait(remaining)

    def wait_present(self, uid: str, *, after: int = 0, timeout_s: float = 10.0) -> ReaderEvent:
        return self.wait_for(lambda e: e.kind == "present" and e.uid == uid, after=after, timeout_s=timeout_s)

    def wait_removed(self, *, after: int = 0, timeout_s: float = 10.0) -> ReaderEvent:
        return self.wait_for(lambda e: e.kind == "removed", after=after, timeout_s=timeout_s)

    def wait_status(self, online: bool, *, after: int = 0, timeout_s: float = 10.0) -> ReaderEvent:
        return self.wait_for(
            lambda e: e.kind == "status" and e.online == online, after=after, timeout_s=timeout_s
        )

    def mark(self) -> int:
        """The index the next event will get; pass it as ``after`` to wait only for newer events."""
        with self._changed:
            return len(self.events)

    def kinds(self) -> list[str]:
        with self._changed:
            return [event.kind for event in self.events]


@pytest.fixture(name="stopped_pcsc_daemon")
def stopped_pcsc_daemon_fixture(tmp_path: Path) -> Iterator[PcscDaemon]:
    """A private pcscd with vpcd, configured but not started; stopped at teardown whatever the test did."""
    daemon = PcscDaemon(tmp_path)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(name="pcsc_daemon")
def pcsc_daemon_fixture(stopped_pcsc_daemon: PcscDaemon) -> PcscDaemon:
    """A running private pcscd with the two vpcd readers "Virtual PCD 00 00" and "Virtual PCD 00 01"."""
    stopped_pcsc_daemon.start()
    return stopped_pcsc_daemon


@pytest.fixture(name="virtual_card")
def virtual_card_fixture() -> Iterator[Callable[..., VirtualCard]]:
    """A factory of virtual cards: ``virtual_card(uid, uid_status=...)``; all are removed at teardown."""
    cards: list[VirtualCard] = []

    def make(uid: bytes | str, *, uid_status: bytes = SW_OK) -> VirtualCard:
        card = VirtualCard(uid, uid_status=uid_status)
        cards.append(card)
        return card

    try:
        yield make
    finally:
        for card in cards:
            card.remove()
