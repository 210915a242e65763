"""One terminal per state directory: an flock on ``state_dir/taptill.lock``, held while the process lives."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_NAME = "taptill.lock"


class StateLockError(Exception):
    """The state directory cannot be locked at all (read-only, missing permission)."""


class StateDirBusy(StateLockError):
    """Another taptill process holds the lock."""


class StateLock:
    """Held until ``release`` (or the process dies: the kernel drops an flock with its last descriptor).

    ``role`` names the command holding it ("run", "recover") so a refused second command can say who.
    The lock file is never removed: unlinking it would let a third process lock a new file while the
    second still waits on the old one.
    """

    def __init__(self, state_dir: Path, role: str) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_NAME
        self.role = role
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        """Take the lock without waiting; raises StateLockError with one line a person can act on."""
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateLockError(
                f"cannot lock state directory {self.state_dir} ({exc.strerror}); "
                "make the state directory writable"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateDirBusy(
                f"another {holder_of(self.state_dir) or 'taptill process'} is using {self.state_dir}; "
                "stop it first"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StateLockError(f"cannot lock state directory {self.state_dir} ({exc.strerror})") from None
        _same_owner_as_directory(fd, self.state_dir)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {self.role}\n".encode())
        except OSError:
            pass  # the PID is only a courtesy for the refused process; the flock is what protects
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def holder_of(state_dir: Path) -> str | None:
    """``taptill run (PID 1234)`` for the process holding the lock, as it wrote itself in; None if unknown."""
    try:
        text = (state_dir / LOCK_NAME).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    pid, _, role = text.strip().partition(" ")
    if not pid.isdigit():
        return None  # taken a moment ago, not written yet
    return f"taptill {role or 'process'} (PID {pid})"


def running_terminal(state_dir: Path) -> int | None:
    """The PID of the ``taptill run`` that holds ``state_dir`` now, or None when no terminal runs there.

    The lock file keeps the last holder's PID after it ends; the kernel's lock table (/proc/locks) says
    whether that process still holds the lock, without taking it (which could refuse a terminal starting
    at that moment).
    """
    path = state_dir / LOCK_NAME
    try:
        text = path.read_text(encoding="ascii", errors="replace")
        inode = path.stat().st_ino
    except OSError:
        return None
    pid, _, role = text.strip().partition(" ")
    if role != "run" or not pid.isdigit():
        return None
    try:
        table = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 1234 b3:02:5678 0 EOF": holder PID, then MAJOR:MINOR:INODE
        fields = line.split()
        held = len(fields) >= 6 and fields[1] == "FLOCK" and fields[4] == pid
        if held and fields[5].rsplit(":", 1)[-1] == str(inode):
            return int(pid)
    return None


def _same_owner_as_directory(fd: int, state_dir: Path) -> None:
    """Root running ``taptill recover`` must not leave a lock file the service's own user cannot open."""
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        st = state_dir.stat()
        os.fchown(fd, st.st_uid, st.st_gid)
