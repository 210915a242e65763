"""Kiosk operator PIN lockouts across restarts: what the controller starts with, from the journal.

The rule: a lockout runs for ``pin_lockout_s`` on the boot-time clock (CLOCK_BOOTTIME), which no
wall-clock step moves. Within one boot (a restart of the service, a crash, ``systemctl restart``) its
remainder is measured exactly, so NTP or fake-hwclock stepping the wall clock a day either way neither
ends nor extends it. Across a reboot (a power cut) the time the terminal was off could only be read from
the wall clock, which whoever can cut the power may also be able to step (NTP is not authenticated): the
lockout then starts over in full, and is re-anchored to the new boot at once, so it is counted anew once
per reboot and never forever. The wall time it began is kept for people (the log), not for measuring.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from terminal.controller.settings import PinRecord
from terminal.journal import Journal, JournalError, PinFailures
from terminal.service.boot_clock import Moment

log = logging.getLogger(__name__)


def lockout_left_s(began: Moment, now: Moment, lockout_s: float) -> float:
    """Seconds of a lockout that began at ``began`` still to run at ``now`` (0: over): by the boot-time
    clock within one boot; the whole ``lockout_s`` when ``began`` lies in another (or an unknown) boot."""
    if not (began.boot and began.boot == now.boot):
        return lockout_s
    return min(lockout_s, max(0.0, lockout_s - (now.uptime - began.uptime)))


@dataclass(frozen=True)
class Lockout:
    """An operator card locked out now, for `taptill status`."""

    operator: str
    left_s: float  # still to run, as lockout_left_s measures it
    began: float  # wall-clock seconds since the epoch (for a person: the clock may have been stepped)
    wrong: int  # wrong PINs in a row that led to it


def current_lockouts(journal: Journal, now: Moment, lockout_s: float) -> list[Lockout]:
    """The operator cards locked out at ``now``, by operator name; an ended lockout is left out."""
    found = []
    for name, failures in sorted(journal.pin_failures().items()):
        if failures.locked_at is None:
            continue
        left = lockout_left_s(failures.locked_at, now, lockout_s)
        if left > 0:
            found.append(Lockout(name, left, failures.locked_at.wall, failures.wrong))
    return found


def restore_pins(journal: Journal, now: Moment, lockout_s: float) -> dict[str, PinRecord]:
    """The operators' PIN records for ``ControllerSettings.pins``: wrong PINs in a row, and the lockouts
    still running (an ended lockout leaves no count). A lockout from another boot is journaled again as
    beginning ``now``; if that write fails it still runs in full now, and again after the next start."""
    records: dict[str, PinRecord] = {}
    for name, failures in journal.pin_failures().items():
        began = failures.locked_at
        if began is None:
            if failures.wrong > 0:
                records[name] = PinRecord(wrong=failures.wrong)
            continue
        left = lockout_left_s(began, now, lockout_s)
        if left <= 0:
            continue
        records[name] = PinRecord(wrong=failures.wrong, locked_for_s=left)
        if began.boot != now.boot or not now.boot:
            _reanchor(journal, name, failures, now)
    return records


def _reanchor(journal: Journal, name: str, failures: PinFailures, now: Moment) -> None:
    try:
        journal.note_pin_failures(name, failures.wrong, now)
    except JournalError as exc:
        log.warning("operator %s stays locked out, but the journal cannot note it anew: %s", name, exc)
    else:
        log.warning("operator %s was locked out before the reboot: locked out in full from now", name)
