"""Named points in the sale path where the crash tests make the process kill itself (SIGKILL).

Set ``TAPTILL_CRASHPOINT=name[:n]`` to die at the n-th (default first) pass through ``name``. Unset,
which is always the case in service, a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset(
    {
        "after_journal",
        "after_answer",
        "after_reconcile_read",
        # every destination's delivery step (terminal/outbox/loop.py)
        "outbox_after_settle",
        "outbox_after_begin",
        "outbox_after_attempt",
        "outbox_after_apply",
    }
)

_target, _, _nth = os.environ.get("TAPTILL_CRASHPOINT", "").partition(":")
_remaining = int(_nth) if _nth.isdigit() else 1


def crashpoint(name: str) -> None:
    """Die here, like a power cut, if the environment asks for it."""
    global _remaining
    if name != _target:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
