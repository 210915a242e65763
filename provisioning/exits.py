"""How taptill-provision ends: its exit codes (stable, for fleet tooling) and Stop, with one line."""

from __future__ import annotations

EXIT_CHANGED = 0
EXIT_USAGE = 2
EXIT_UNCHANGED = 3
EXIT_REFUSED = 4
EXIT_UNREACHABLE = 5
EXIT_MISSING = 6
EXIT_CANNOT_WRITE = 7
EXIT_NOT_APPROVED = 8


class Stop(Exception):
    """Ends provisioning with an exit code and one line saying what to do."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
