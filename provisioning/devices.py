"""The device nodes and groups the configured reader and display need, and whether the service can open them.

The service runs as the unprivileged user ``taptill`` with DevicePolicy=closed; it gets exactly the groups
its devices need (the unit's SupplementaryGroups=), and provisioning checks each node it can name now:
it exists, and its mode lets that user (through those groups or "others") read and write it.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from provisioning.changes import on_disk

SERVICE_USER = "taptill"
UART_FIX = (
    "enable the UART for a device, not a console: raspi-config nonint do_serial_hw 0 and "
    "do_serial_cons 1, then reboot (udev then gives it group dialout)"
)
I2C_FIX = "enable I2C with raspi-config nonint do_i2c 0 (udev gives /dev/i2c-* group i2c)"
USB_FIX = (
    "add a udev rule giving the reader group plugdev (nfcpy: python3 -m nfc prints it) to "
    "/etc/udev/rules.d/nfcdev.rules"
)

# gpiozero's lgpio pin factory opens /dev/gpiochip0 (gpiochip4 on an early Pi 5 kernel); Raspberry Pi OS's
# udev rules give every /dev/gpiochip* group gpio, so chip 0 stands for them all.
GPIO_NODE = PurePosixPath("/dev/gpiochip0")
GPIO_FIX = (
    "the relay and buttons need /dev/gpiochip0 readable by group gpio, as Raspberry Pi OS's udev rules "
    "(package raspberrypi-sys-mods) give it; on another system add such a rule"
)


class DeviceError(Exception):
    """A device answer that names no usable node; the message is one line saying what to set."""


@dataclass(frozen=True)
class DeviceNeed:
    what: str  # as a person names it: "the PN532 on the UART"
    group: str | None  # the group that opens it; None: reached through a daemon's socket (pcscd)
    node: PurePosixPath | None  # None: known only at run time (a USB bus address)
    fix: str


def tty_node(device: str) -> PurePosixPath | None:
    """The node of an nfcpy ``tty:NAME[:driver]`` path, as nfcpy opens it; None for a USB or udp path.

    Raises DeviceError for a port pattern (``tty:AMA`` without a number): provisioning must name one node."""
    kind, _, rest = device.partition(":")
    if kind != "tty":
        return None
    name = rest.partition(":")[0]
    if not name or re.fullmatch(r"(S|ACM|AMA|USB)", name):
        raise DeviceError(
            f"reader device {device!r} names no single port; name it, e.g. tty:AMA0:pn532 for /dev/ttyAMA0"
        )
    if re.fullmatch(r"(S|ACM|AMA|USB)\d+", name):
        return PurePosixPath("/dev") / f"tty{name}"
    return PurePosixPath("/dev") / name  # e.g. tty:serial0:pn532 → /dev/serial0 (a symlink on a Pi)


def needs(
    reader_kind: str,
    reader_device: str | None,
    display_kind: str,
    oled_port: int | None,
    gpio: bool = False,
) -> list[DeviceNeed]:
    """What the configured reader, display and (``gpio``: [gpio] enabled) pins open, with each one's group."""
    out: list[DeviceNeed] = []
    if reader_kind == "nfcpy":
        device = reader_device or "usb"
        node = tty_node(device)
        if node is not None:
            out.append(DeviceNeed(f"the reader on the UART ({device})", "dialout", node, UART_FIX))
        elif device.startswith("usb"):
            out.append(DeviceNeed(f"the USB reader ({device})", "plugdev", None, USB_FIX))
    if display_kind == "oled" and oled_port is not None:
        node = PurePosixPath(f"/dev/i2c-{oled_port}")
        out.append(DeviceNeed(f"the OLED on {node}", "i2c", node, I2C_FIX))
    if gpio:
        out.append(DeviceNeed("the GPIO pins ([gpio] relay and buttons)", "gpio", GPIO_NODE, GPIO_FIX))
    return out


def groups(found: Sequence[DeviceNeed]) -> tuple[str, ...]:
    return tuple(sorted({n.group for n in found if n.group}))


def access_problem(root: Path, need: DeviceNeed, service_groups: Sequence[str]) -> str | None:
    """None when the service user (member of ``service_groups`` only) can read and write the node."""
    if need.node is None:
        return None
    node = on_disk(root, Path(need.node))
    try:
        st = node.stat()
    except FileNotFoundError:
        return f"{need.what}: {need.node} does not exist; {need.fix}"
    if not stat.S_ISCHR(st.st_mode):
        return f"{need.what}: {need.node} is not a character device; check the device name"
    mode = stat.S_IMODE(st.st_mode)
    group = _group_name(st.st_gid)
    if mode & 0o006 == 0o006 or (group in service_groups and mode & 0o060 == 0o060):
        return None
    owner = _user_name(st.st_uid)
    return (
        f"{need.what}: {need.node} is {owner}:{group} {mode:04o}, which user {SERVICE_USER} "
        f"(groups {', '.join(service_groups) or 'none'}) cannot open; {need.fix}"
    )


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def not_allowed(root: Path, need: DeviceNeed, device_allow: Sequence[str]) -> str | None:
    """With DevicePolicy=closed, a tty the unit's DeviceAllow= does not list fails with EPERM at open."""
    if need.node is None or not need.node.name.startswith(("tty", "serial")):
        return None
    real = PurePosixPath(os.path.realpath(on_disk(root, Path(need.node)))).name
    driver = "char-" + real.rstrip("0123456789")
    if any(entry.split()[0] == driver for entry in device_allow):
        return None
    return f"{need.what}: the unit's DeviceAllow= has no {driver}; add DeviceAllow={driver} rw to the unit"
