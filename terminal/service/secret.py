"""Reads secrets (API tokens, passwords) from private files or systemd credentials, never leaking them."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class SecretError(Exception):
    """A secret file is missing, empty or readable by others; the message says how to fix it."""


class Secret:
    """A secret value whose repr and str never show it (safe in logs and tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def read_secret(path: Path | None, credential: str) -> Secret:
    """Read ``credential`` from ``$CREDENTIALS_DIRECTORY`` if systemd passed it, else from ``path``.

    The file must not be readable by group or others: a token in a world-readable file is leaked.
    """
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        cred_path = Path(cred_dir) / credential
        if cred_path.is_file():
            return _read(cred_path, check_mode=False)
    if path is None:
        raise SecretError(
            f"no secret for {credential}: set its *_file key in the config "
            f"or pass it with LoadCredential={credential}:PATH"
        )
    return _read(path, check_mode=True)


def _read(path: Path, *, check_mode: bool) -> Secret:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SecretError(f"secret file {path} does not exist; create it with the token inside") from None
    except PermissionError:
        raise SecretError(_not_readable(path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise SecretError(
            f"secret file {path} is a directory; point the key at the file in it that holds the secret"
        )
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block the read or never end
        raise SecretError(f"secret file {path} is not a regular file; put the secret in a plain file")
    if check_mode and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"secret file {path} is readable by group or others; run: chmod 600 {path}")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except PermissionError:  # the usual case: root's file, and this is the service user
        raise SecretError(_not_readable(path)) from None
    except (OSError, UnicodeDecodeError):
        raise SecretError(f"secret file {path} cannot be read as UTF-8 text; rewrite it") from None
    if not value:
        raise SecretError(f"secret file {path} is empty; put the token in it")
    return Secret(value)


def _not_readable(path: Path) -> str:
    """A secret this user may not open: for the service that is a root-only file the unit did not pass
    as a credential, which a chown would fix by giving the secret away to whoever runs as that user."""
    return (
        f"secret file {path} is not readable by this user; the service gets such a root-only file as a "
        "systemd credential (LoadCredential=, which taptill-provision writes): run taptill-provision "
        "again, or run this as the file's owner"
    )
