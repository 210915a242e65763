"""Compares the files provisioning wants with those on disk, shows the difference, writes it atomically."""

from __future__ import annotations

import contextlib
import difflib
import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Wanted:
    """One file (or, with ``link_to``, symlink) at ``path`` inside the target system."""

    path: Path  # absolute, as seen on the target system
    content: str = ""
    mode: int = 0o644
    secret: bool = False  # never shown in a diff
    link_to: Path | None = None


@dataclass(frozen=True)
class Change:
    wanted: Wanted
    action: str  # "create", "update", "unchanged"
    diff: str  # unified diff, or a placeholder for secrets

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


class OutsideRoot(Exception):
    """A path under --root leads out of it through a symlink; the message names the link and the fix."""


def on_disk(root: Path, path: Path) -> Path:
    """Where the target system's absolute ``path`` is under ``root``, its directories' symlinks followed
    only while they stay inside: an image's ``/etc/taptill -> /somewhere`` would otherwise put the token
    onto the host. The last part is not followed (a link provisioning writes is replaced, not followed;
    see ``file_on_disk`` for a file read or compared). Raises OutsideRoot."""
    if root == Path("/"):
        return path
    base = Path(os.path.realpath(root))
    current = base
    for part in path.relative_to("/").parts[:-1]:
        current = _inside(base, current / part, root)
    return current / path.name


def file_on_disk(root: Path, path: Path) -> Path:
    """``on_disk``, with a symlink at the last part followed too, and refused when it leads out."""
    target = on_disk(root, path)
    return target if root == Path("/") else _inside(Path(os.path.realpath(root)), target, root)


def _inside(base: Path, step: Path, root: Path) -> Path:
    if not step.is_symlink():
        return step
    real = Path(os.path.realpath(step))
    if real == base or real.is_relative_to(base):
        return real
    shown = "/" + str(step.relative_to(base))
    raise OutsideRoot(
        f"{shown} in --root {root} is a symlink to {os.readlink(step)}, outside the image; provisioning "
        f"writes only inside --root: make {shown} a directory, or a relative link that stays inside"
    )


def plan(root: Path, wanted: list[Wanted]) -> list[Change]:
    return [_compare(root, w) for w in wanted]


def _compare(root: Path, w: Wanted) -> Change:
    if w.link_to is not None:
        target = on_disk(root, w.path)
        try:
            current = os.readlink(target)
        except FileNotFoundError:
            return Change(w, "create", f"+ {w.path} -> {w.link_to}\n")
        except OSError:
            return Change(w, "update", f"~ {w.path}: not a symlink; becomes -> {w.link_to}\n")
        if current == str(w.link_to):
            return Change(w, "unchanged", "")
        return Change(w, "update", f"~ {w.path} -> {current}, becomes -> {w.link_to}\n")
    target = file_on_disk(root, w.path)  # a diff must never show a file of the host
    try:
        st = target.lstat()
        old = target.read_text(encoding="utf-8") if stat.S_ISREG(st.st_mode) else None
    except FileNotFoundError:
        return Change(w, "create", _diff(w, None))
    except (OSError, UnicodeDecodeError):
        old = None
        st = None
    mode_ok = st is not None and stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == w.mode
    if old == w.content and mode_ok:
        return Change(w, "unchanged", "")
    text = _diff(w, old)
    if old == w.content and st is not None:
        text = f"~ {w.path}: mode {stat.S_IMODE(st.st_mode):04o} becomes {w.mode:04o}\n"
    return Change(w, "update", text)


def _diff(w: Wanted, old: str | None) -> str:
    if w.secret:
        verb = "written" if old is None else "replaced"
        return f"~ {w.path}: secret ({w.mode:04o}) would be {verb}; content not shown\n"
    before = [] if old is None else old.splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(
            before,
            w.content.splitlines(keepends=True),
            fromfile="/dev/null" if old is None else str(w.path),
            tofile=str(w.path),
        )
    )


def apply(root: Path, changes: list[Change]) -> None:
    """Write every changed file: temp file with its final mode from the start, then rename over."""
    for c in changes:
        if not c.changed:
            continue
        w = c.wanted
        target = on_disk(root, w.path)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        tmp = target.with_name(f".{target.name}.taptill-provision")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if w.link_to is not None:
            os.symlink(w.link_to, tmp)
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, w.mode)
            try:
                os.fchmod(fd, w.mode)  # the umask must not widen or narrow it
                os.write(fd, w.content.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
