"""Ages that survive wall-clock steps: the boot-time clock within one boot, the wall clock across boots.

A Raspberry Pi has no real-time clock. At boot its wall clock comes from fake-hwclock (the time of the
last shutdown) and is then stepped by NTP, by hours or days in either direction. CLOCK_BOOTTIME counts
seconds since boot (suspend included) and is never stepped, so within one boot it measures how long ago
something happened exactly; across a reboot only the wall clock can, and a time that lies in the future
then counts as "just now".
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Moment:
    """When something happened: the wall clock (s since the epoch), the boot and the boot-time clock (s)."""

    wall: float
    boot: str = ""  # the kernel's boot id; empty when unknown (then only the wall clock counts)
    uptime: float = 0.0


@functools.cache
def boot_id() -> str:
    """This boot's id (a UUID from the kernel), or "" where the kernel does not tell."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return ""


def now(wall: float | None = None) -> Moment:
    """The current moment; ``wall`` overrides the wall clock (an injected clock in tests)."""
    return Moment(time.time() if wall is None else wall, boot_id(), time.clock_gettime(time.CLOCK_BOOTTIME))


def age_s(then: Moment, at: Moment) -> float:
    """Seconds from ``then`` to ``at``, never negative: by the boot-time clock when both lie in the same
    boot, else by the wall clock."""
    if then.boot and then.boot == at.boot:
        return max(0.0, at.uptime - then.uptime)
    return max(0.0, at.wall - then.wall)
