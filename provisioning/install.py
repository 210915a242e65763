"""Installs taptill into a venv of its own under /opt/taptill, where the hardened unit can run it.

The checkout's .venv usually lives under /home, which the unit's ProtectHome=yes hides from the service, and
an editable install there points back into the checkout. So provisioning builds a separate, non-editable venv
under the prefix, owned by root and readable by everyone (the service user included), and the unit starts
``PREFIX/venv/bin/taptill``. With --root the venv is built inside the image tree for this machine's Python
and architecture, its scripts already naming the path they will have when the image boots.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

from provisioning.changes import on_disk

DEFAULT_PREFIX = PurePosixPath("/opt/taptill")
STAMP_NAME = "taptill-provision.json"
CHECKOUT = Path(__file__).resolve().parent.parent
SOURCE_PARTS = ("pyproject.toml", "README.md", "terminal", "hw", "provisioning", "systemd")
PIP_TIMEOUT_S = 900  # a Pi Zero compiling a wheel is slow; a hung index is still cut off
EXTRA_FOR_READER = {"pcsc": "pcsc", "nfcpy": "nfc"}
SYSTEM_PYTHON = PurePosixPath("/usr/bin/python3")
# The versions the tests passed with (exact pins, no hashes: see README *Security*); shipped in the package.
CONSTRAINTS = Path(__file__).resolve().parent / "constraints.txt"


class InstallError(Exception):
    """Installing the program failed; the message is one line saying what to do."""


@dataclass(frozen=True)
class Program:
    """Where the unit finds taptill on the target system (paths as the booted system sees them)."""

    taptill_bin: PurePosixPath
    python_bin: PurePosixPath
    venv: PurePosixPath | None  # None: an existing installation named with --taptill-bin

    @classmethod
    def in_prefix(cls, prefix: PurePosixPath) -> Program:
        venv = prefix / "venv"
        return cls(venv / "bin" / "taptill", venv / "bin" / "python", venv)


def extras_for(reader_kind: str, gpio: bool = False) -> tuple[str, ...]:
    """The pip extras the configured devices need (the OLED driver is a core dependency; ``gpio``:
    [gpio] is enabled, so gpiozero and, on a Pi, its pin library lgpio)."""
    extra = EXTRA_FOR_READER.get(reader_kind)
    return ((extra,) if extra else ()) + (("gpio",) if gpio else ())


def wanted_stamp(extras: Sequence[str], python: PurePosixPath) -> dict[str, object]:
    """What an up-to-date venv records: version, extras, base Python and, from a checkout, a code digest."""
    return {
        "version": _version(),
        "extras": sorted(extras),
        "python": str(python),
        "source": _source_digest(),
    }


def installed_stamp(root: Path, program: Program) -> dict[str, object] | None:
    if program.venv is None:
        return None
    try:
        data = json.loads(on_disk(root, Path(program.venv) / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not on_disk(root, Path(program.taptill_bin)).is_file():
        return None
    return data if isinstance(data, dict) else None


def venv_python(asked: PurePosixPath | None) -> PurePosixPath:
    """The interpreter the venv is built on: as asked, else the system's /usr/bin/python3 (a pyenv or
    conda Python usually lives under /home or /root, which the unit hides), else this one's base."""
    if asked is not None:
        return asked
    if Path(SYSTEM_PYTHON).is_file():
        return SYSTEM_PYTHON
    return PurePosixPath(getattr(sys, "_base_executable", sys.executable))


def predicted_chain(program: Program, python: PurePosixPath) -> tuple[list[PurePosixPath], str]:
    """What ExecStart will touch once the venv is built (its script, its python, the base interpreter
    through its symlinks and that interpreter's standard library), and that interpreter's version.
    Raises InstallError for a Python that cannot run taptill."""
    code = (
        "import sys, platform; print(sys.version_info >= (3, 11)); print(sys.base_prefix); "
        "print(platform.python_version())"
    )
    try:
        probe = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise InstallError(
            f"cannot run --python {python} ({exc.strerror}); name an installed Python 3.11+"
        ) from None
    lines = probe.stdout.splitlines()
    if probe.returncode != 0 or len(lines) != 3 or lines[0] != "True":
        raise InstallError(
            f"--python {python} is not a Python 3.11 or newer; name one (e.g. /usr/bin/python3)"
        )
    assert program.venv is not None
    real = PurePosixPath(os.path.realpath(python))
    return [program.taptill_bin, program.python_bin, python, real, PurePosixPath(lines[1])], lines[2]


def existing_chain(
    root: Path, taptill_bin: PurePosixPath, live: bool
) -> tuple[list[PurePosixPath], str | None]:
    """What an existing ``taptill`` script touches (itself, its interpreter and the files the symlinks
    name, and, on a live system, the directory its ``terminal`` package is imported from), and that
    interpreter's version (None in an image, where it is not run)."""
    script = on_disk(root, Path(taptill_bin))
    if not script.is_file():
        if not live:
            raise InstallError(
                f"--taptill-bin {taptill_bin} does not exist inside the image (with --root it is looked up "
                f"as {script}); install taptill there, or drop --taptill-bin to install one into --prefix"
            )
        raise InstallError(f"--taptill-bin {taptill_bin} does not exist; name an installed taptill script")
    chain = [taptill_bin]
    with open(script, "rb") as f:
        first = f.readline()
    interpreter = first[2:].split()[0].decode() if first.startswith(b"#!") and first[2:].split() else None
    if interpreter is None:
        raise InstallError(f"--taptill-bin {taptill_bin} is not a taptill script (no #! line); name one")
    chain += _symlink_chain(root, PurePosixPath(interpreter))
    if not live:
        return chain, None
    code = (
        "import terminal, sys, platform; print(terminal.__file__); print(sys.base_prefix); "
        "print(platform.python_version())"
    )
    probe = subprocess.run([interpreter, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    lines = probe.stdout.splitlines()
    if probe.returncode != 0 or len(lines) != 3:
        raise InstallError(f"{interpreter} cannot import taptill; install it there or drop --taptill-bin")
    return chain + [PurePosixPath(line) for line in lines[:2]], lines[2]


def _symlink_chain(root: Path, path: PurePosixPath) -> list[PurePosixPath]:
    out = [path]
    for _ in range(20):
        target = on_disk(root, Path(out[-1]))
        if not target.is_symlink():
            break
        link = PurePosixPath(os.readlink(target))
        out.append(link if link.is_absolute() else out[-1].parent / link)
    return out


def unreadable(root: Path, chain: Sequence[PurePosixPath]) -> str | None:
    """The first path (or parent directory) a user who is neither owner nor in the group cannot use.

    The service user owns nothing of the program, so "others" bits decide; a venv built by root under a
    umask of 077 would otherwise look fine to root and fail for the service."""
    for path in chain:
        target = on_disk(root, Path(path))
        if not target.exists():
            continue
        for parent in reversed(PurePosixPath(path).parents):
            if not on_disk(root, Path(parent)).stat().st_mode & stat.S_IXOTH:
                return f"{parent} (not searchable by other users)"
        mode = target.stat().st_mode
        if not mode & (stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH):
            return f"{path} (not readable by other users)"
    return None


def install(root: Path, program: Program, python: PurePosixPath, extras: Sequence[str]) -> None:
    """Build ``ROOT/PREFIX/venv`` afresh beside the old one, then swap it in. Raises InstallError."""
    assert program.venv is not None
    final = on_disk(root, Path(program.venv))
    build = final.with_name(final.name + ".new")
    old = final.with_name(final.name + ".old")
    with _umask(0o022), tempfile.TemporaryDirectory(prefix="taptill-provision-") as tmp:
        for stale in (build, old):
            shutil.rmtree(stale, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        requirement = _requirement(Path(tmp), extras)
        _run([str(python), "-m", "venv", str(build)], f"create a venv with {python}")
        _run(
            [
                str(build / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-compile",
                "--disable-pip-version-check",
                "--constraint",
                str(CONSTRAINTS),
                requirement,
            ],
            f"pip install {requirement}",
        )
        retarget_scripts(build / "bin", str(build), str(program.venv))
        # Byte-code now, with the final path in it: the service may not write it (ProtectSystem=strict).
        _run(
            [
                str(build / "bin" / "python"),
                "-m",
                "compileall",
                "-q",
                "-s",
                str(build),
                "-p",
                str(program.venv),
                str(build / "lib"),
            ],
            "compile the byte-code",
        )
        (build / STAMP_NAME).write_text(
            json.dumps(wanted_stamp(extras, python), indent=2) + "\n", encoding="utf-8"
        )
        if final.exists():
            final.rename(old)
        build.rename(final)
        shutil.rmtree(old, ignore_errors=True)


def _requirement(tmp: Path, extras: Sequence[str]) -> str:
    """A copy of the checkout (a build must not leave root-owned files in it), else this version from the
    package index."""
    suffix = f"[{','.join(sorted(extras))}]" if extras else ""
    if (CHECKOUT / "pyproject.toml").is_file():
        src = tmp / "taptill"
        src.mkdir()
        for part in SOURCE_PARTS:
            path = CHECKOUT / part
            if path.is_dir():
                shutil.copytree(path, src / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif path.is_file():
                shutil.copy2(path, src / part)
        return f"{src}{suffix}"
    return f"taptill{suffix}=={_version()}"


def retarget_scripts(bindir: Path, built: str, final: str) -> None:
    """pip writes the build path into each script's #! line; the unit runs them from the final path."""
    for script in bindir.iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if data.startswith(f"#!{built}/".encode()):
            script.write_bytes(data.replace(built.encode(), final.encode(), 1))


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise InstallError(f"could not {what}: no end after {PIP_TIMEOUT_S} s; check the network") from None
    if proc.returncode != 0:
        last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "no message")
        raise InstallError(f"could not {what} ({last.strip()}); fix that and run taptill-provision again")


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _version() -> str:
    try:
        return metadata.version("taptill")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _source_digest() -> str | None:
    """From a checkout, the code changes while the version stays: a digest tells a stale venv apart."""
    if not (CHECKOUT / "pyproject.toml").is_file():
        return None
    digest = hashlib.sha256()
    for part in SOURCE_PARTS:
        path = CHECKOUT / part
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc" or not file.exists():
                continue
            digest.update(str(file.relative_to(CHECKOUT)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()
