"""The installed systemd unit as systemd reads it: taptill.service and its drop-ins, [Service] options."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

UNIT_PATH = Path("/etc/systemd/system/taptill.service")
DROPIN_DIR = Path("/etc/systemd/system/taptill.service.d")


def service_options(unit: str) -> dict[str, list[str]]:
    """The [Service] section as key → every value in order (a key may repeat, as DeviceAllow= does).

    ``unit`` may be a unit followed by its drop-ins (``installed_unit``): a later value of a key that
    takes one wins, as in systemd, and the caller reads ``values[-1]``."""
    options: dict[str, list[str]] = {}
    section = ""
    for raw in unit.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            options.setdefault(key.strip(), []).append(value.strip())
    return options


def installed_unit(root: Path = Path("/")) -> str | None:
    """taptill.service under ``root`` followed by its drop-ins (``*.conf`` in name order, as systemd
    applies them); None when no unit is installed there (a development checkout, the demo)."""
    unit = root / UNIT_PATH.relative_to("/")
    try:
        parts = [unit.read_text(encoding="utf-8")]
        dropins = sorted((root / DROPIN_DIR.relative_to("/")).glob("*.conf"))
        parts += [p.read_text(encoding="utf-8") for p in dropins]
    except (OSError, UnicodeDecodeError):
        return None
    return "\n".join(parts)


def started_config(options: dict[str, list[str]]) -> Path | None:
    """The config file the unit's ExecStart runs with (``--config PATH``), or None when it names none."""
    starts = options.get("ExecStart")
    if not starts:
        return None
    try:
        argv = shlex.split(starts[-1])
    except ValueError:
        return None
    for flag, value in itertools.pairwise(argv):
        if flag == "--config":
            return Path(value)
    return None
