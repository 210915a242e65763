"""Named points in the sale path where the crash tests make the process kill itself (SIGKILL).

Set ``TAPTILL_CRASHPOINT=name[:n]`` to die at the n-th (default first) pass through ``name``. A point of
the delivery loop can be named for one destination: ``ready2order.outbox_after_begin`` dies only in the
ready2order loop, while ``outbox_after_begin`` dies in whichever loop passes first. Unset, which is always
the case in service, a crash point costs one string comparison.
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
        # ready2order: a search for a maybe-created invoice answered, nothing recorded yet
        "after_search",
        # yourbarmate's webhook: an event committed (or about to be), its 200 not yet answered
        "ybm_before_commit",
        "ybm_after_commit",
    }
)

_target, _, _nth = os.environ.get("TAPTILL_CRASHPOINT", "").partition(":")
_remaining = int(_nth) if _nth.isdigit() else 1


def crashpoint(name: str, scope: str | None = None) -> None:
    """Die here, like a power cut, if the environment asks for it (``scope``: the destination's name)."""
    global _remaining
    if name != _target and (scope is None or f"{scope}.{name}" != _target):
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
