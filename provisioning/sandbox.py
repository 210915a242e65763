"""Reads a rendered unit's sandbox options and says what inside it the service could not reach or write.

systemd applies ProtectHome=, PrivateTmp=, ProtectSystem= before it executes ExecStart=: a program (or its
interpreter, or its packages) under /home is simply absent for the service, and the unit fails with
203/EXEC on every start. Provisioning asks these questions of the unit it is about to write and refuses to
write one that could not start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from terminal.service.unit_file import service_options

__all__ = ["hidden", "problems", "service_options", "writable"]

TRUE = ("yes", "true", "on", "1")


def _last(options: dict[str, list[str]], key: str, default: str = "") -> str:
    values = options.get(key)
    return values[-1].lower() if values else default


def _paths(options: dict[str, list[str]], key: str) -> list[PurePosixPath]:
    """Space-separated paths; a leading - (ignore if missing) or + (outside the root) is not part of them."""
    out: list[PurePosixPath] = []
    for value in options.get(key, []):
        out += [PurePosixPath(word.lstrip("-+")) for word in value.split()]
    return out


def _under(path: PurePosixPath, tops: Iterable[PurePosixPath]) -> PurePosixPath | None:
    for top in tops:
        if path == top or top in path.parents:
            return top
    return None


def hidden(options: dict[str, list[str]], path: PurePosixPath) -> str | None:
    """Why ``path`` does not exist for the service (the option that hides it), or None when it is there."""
    home = _last(options, "ProtectHome", "no")
    if home in (*TRUE, "tmpfs"):
        top = _under(path, map(PurePosixPath, ("/home", "/root", "/run/user")))
        if top is not None:
            return f"ProtectHome={home} hides {top}"
    if _last(options, "PrivateTmp", "no") in TRUE:
        top = _under(path, map(PurePosixPath, ("/tmp", "/var/tmp")))
        if top is not None:
            return f"PrivateTmp=yes gives the service an empty {top} of its own"
    for key in ("InaccessiblePaths", "TemporaryFileSystem"):
        top = _under(path, (PurePosixPath(str(p).split(":")[0]) for p in _paths(options, key)))
        if top is not None:
            return f"{key}= hides {top}"
    return None


def writable(options: dict[str, list[str]], path: PurePosixPath) -> str | None:
    """None when the service may write ``path``, else the option that makes it read-only."""
    allowed = [PurePosixPath(p) for p in ("/dev", "/proc", "/sys")]
    allowed += [PurePosixPath("/var/lib") / d for d in _words(options, "StateDirectory")]
    allowed += [PurePosixPath("/run") / d for d in _words(options, "RuntimeDirectory")]
    allowed += [PurePosixPath("/var/cache") / d for d in _words(options, "CacheDirectory")]
    allowed += [PurePosixPath("/var/log") / d for d in _words(options, "LogsDirectory")]
    allowed += _paths(options, "ReadWritePaths")
    if _under(path, allowed) is not None:
        return None
    system = _last(options, "ProtectSystem", "no")
    read_only = {
        "strict": ["/"],
        "full": ["/usr", "/boot", "/efi", "/etc"],
        **{key: ["/usr", "/boot", "/efi"] for key in TRUE},
    }.get(system, [])
    if _under(path, map(PurePosixPath, read_only)) is not None:
        return f"ProtectSystem={system} makes it read-only"
    if _last(options, "ProtectHome", "no") == "read-only" and _under(
        path, map(PurePosixPath, ("/home", "/root", "/run/user"))
    ):
        return "ProtectHome=read-only makes it read-only"
    return None


def _words(options: dict[str, list[str]], key: str) -> list[str]:
    return [word for value in options.get(key, []) for word in value.split()]


def problems(
    unit: str,
    executables: Sequence[tuple[PurePosixPath, str]],
    state_dir: PurePosixPath,
    sim_socket: PurePosixPath,
) -> list[str]:
    """Every reason the unit could not start or serve; ``executables`` is ExecStart's chain (script,
    interpreter, symlink targets, site-packages), each with what to do when it is hidden; ``state_dir``
    the journal's directory."""
    options = service_options(unit)
    found: list[str] = []
    for path, fix in executables:
        why = hidden(options, path)
        if why:
            found.append(f"the service could not run {path} ({why}); {fix}")
    why = hidden(options, state_dir) or writable(options, state_dir)
    if why:
        state = ", ".join(f"/var/lib/{d}" for d in _words(options, "StateDirectory")) or "ReadWritePaths="
        found.append(f"the service could not write its journal in {state_dir} ({why}); use {state}")
    run = ", ".join(f"/run/{d}" for d in _words(options, "RuntimeDirectory")) or "ReadWritePaths="
    why = hidden(options, sim_socket.parent)
    if why:
        found.append(f"`taptill tap` could not reach the sim socket {sim_socket} ({why}); put it under {run}")
    else:
        why = writable(options, sim_socket.parent)
        if why:
            found.append(
                f"the service could not create the sim socket {sim_socket} ({why}); put it under {run}"
            )
    return found
