"""A reader that keeps failing, through nfcpy's own stack in a real `taptill run`: the udp driver talks to the
Type 2 tag emulator, which is made to answer every poll with a malformed frame (a broken reader or cable).
The terminal restarts the reader with a growing delay, shows "Reader offline" and sells nothing, `status`
and `doctor` say so, and it sells again once the reader works."""

from __future__ import annotations

import itertools
import re
import threading
import time
from pathlib import Path

import pytest

from hw.readers.supervision import Backoff, run_supervised
from terminal.emulator.readers.type2_tag import Type2TagEmulator
from terminal.emulator.wallet import WalletEmulator
from terminal.service.reader_health import ReaderHealth
from tests.terminal_lab import MAX, TerminalProcess, taptill, wait_for, write_config

pytestmark = pytest.mark.nfcpy

FAILURE = re.compile(r"WARNING .*retrying in (\d+) s \(failure (\d+) in a row\)")


def _nfcpy_config(tmp_path: Path, server: WalletEmulator, tag: Type2TagEmulator) -> Path:
    config = write_config(tmp_path, server)
    text = config.read_text()
    text = text.replace('[reader]\nkind = "sim"', f'[reader]\nkind = "nfcpy"\ndevice = "{tag.device}"')
    config.write_text(text.replace('[display]\nkind = "none"', '[display]\nkind = "console"'))
    return config


def _failures(log: str) -> list[tuple[int, int]]:
    """(retry delay s, failure count) of every failure warning in ``log``, in order."""
    return [(int(m[1]), int(m[2])) for m in FAILURE.finditer(log)]


def test_a_failing_reader_is_restarted_with_backoff_shown_offline_failed_by_doctor_and_recovers(
    tmp_path: Path,
) -> None:
    with WalletEmulator.demo("doc") as server, Type2TagEmulator(uid=MAX, present=False) as tag:
        config = _nfcpy_config(tmp_path, server, tag)
        term = TerminalProcess(config)
        wait_for(lambda: tag.senses_received >= 2, what="the reader to poll")
        tag.place()
        wait_for(lambda: len(server.transactions()) == 1, what="a sale through the working reader")
        tag.remove()

        mark = len(term.log())
        tag.break_device()
        tag.place()  # a guest taps while the reader is broken: nothing may be sold
        seen: dict[int, float] = {}  # failure count -> when its warning appeared (test's clock)

        def failures_seen() -> bool:
            for _, count in _failures(term.log()[mark:]):
                seen.setdefault(count, time.monotonic())
            return len(seen) >= 3

        wait_for(failures_seen, timeout=60, what="three failures in a row")
        log = term.log()[mark:]
        assert _failures(log)[:3] == [(1, 1), (2, 2), (4, 3)], log
        # Each restart waited at least the delay it announced (no upper bound: a loaded machine is slow).
        assert seen[2] - seen[1] >= 1.0 and seen[3] - seen[2] >= 2.0, seen
        assert "Reader offline" in log, log
        assert "Traceback" not in term.log() and "Exception in thread" not in term.log()
        assert len(server.transactions()) == 1, "a sale while the reader was broken"

        status = taptill("status", "--config", str(config)).stdout
        line = next(ln for ln in status.splitlines() if ln.startswith("reader:"))
        assert "OFFLINE since" in line and int(re.findall(r"(\d+) failures in a row", line)[0]) >= 3, status
        doctor = taptill("doctor", "--config", str(config), check=False)
        assert doctor.returncode == 1, doctor.stdout
        reader = [ln for ln in doctor.stdout.splitlines() if ln.split()[1:2] == ["reader"]]
        assert len(reader) == 1 and reader[0].startswith("FAIL") and "offline since" in reader[0], reader

        tag.remove()
        tag.mend()

        def back_online() -> bool:
            out = taptill("status", "--config", str(config)).stdout
            return "reader:          online since" in out

        wait_for(back_online, timeout=60, what="the reader back online")
        # A card already on a reader that (re)starts is not a tap until taken away: the guest taps once
        # the mended reader has polled an empty field.
        polled = tag.senses_received
        wait_for(lambda: tag.senses_received >= polled + 2, what="the mended reader to poll")
        tag.place()
        wait_for(lambda: len(server.transactions()) == 2, what="a sale after the reader recovered")
        doctor = taptill("doctor", "--config", str(config), check=False)
        reader = [ln for ln in doctor.stdout.splitlines() if ln.split()[1:2] == ["reader"]]
        assert not reader[0].startswith("FAIL"), reader
        assert term.stop() == 0
        assert "Traceback" not in term.log()


def test_a_reader_loop_that_raises_is_run_again_after_growing_delays() -> None:
    """The supervisor itself, with a loop that raises three times and then runs until stopped."""
    stopping = threading.Event()
    starts: list[float] = []
    reports: list[str] = []

    def loop() -> None:
        starts.append(time.monotonic())
        if len(starts) <= 3:
            raise OSError(19, "No such device")
        stopping.wait()

    thread = threading.Thread(
        target=run_supervised, args=("test", loop, stopping, reports.append, Backoff(first_s=0.1))
    )
    thread.start()
    wait_for(lambda: len(starts) == 4, what="the fourth start")
    stopping.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4, gaps
    # Each failure reported, with its advice (status and doctor count them; the log has the retry).
    assert (
        reports
        == ["test reader failed (OSError: [Errno 19] No such device); check the reader's cable and driver"]
        * 3
    )


def test_failed_opens_keep_counting_however_long_they_go_on() -> None:
    """Only a reader that ran a stable minute starts from the first delay again; a device that cannot
    be opened for minutes is still counted (and backed off) as failing in a row."""
    now = [0.0]
    backoff = Backoff(first_s=1.0, max_s=30.0, stable_s=60.0, clock=lambda: now[0])
    backoff.started()  # the reader's thread starts; its device is missing
    delays = []
    for _ in range(8):
        delays.append(backoff.failed())
        now[0] += delays[-1]
    assert now[0] > 60.0 and backoff.failures == 8, (now, backoff.failures)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    backoff.started()  # it opened, and ran a minute
    now[0] += 60.0
    assert backoff.failed() == 1.0 and backoff.failures == 1


def test_reader_health_fails_only_while_offline_and_forgets_failures_after_a_stable_minute() -> None:
    health = ReaderHealth(pid=1)
    health.changed(True, "ready", now=0.0)
    health.changed(False, "broken", now=1.0)
    assert health.problem(now=2.0) is None  # one failure, just now: it may come back at once
    health.changed(True, "ready", now=3.0)
    health.changed(False, "broken", now=4.0)
    health.changed(False, "broken again", now=6.0)
    assert health.failures == 3 and "3 failures in a row" in (health.problem(now=6.5) or "")
    health.changed(True, "ready", now=10.0)
    assert health.problem(now=11.0) is None
    health.changed(False, "unplugged", now=100.0)  # online for a minute and more: a fresh start
    assert health.failures == 1 and health.problem(now=120.0) is None
    assert "offline since" in (health.problem(now=131.0) or "")
