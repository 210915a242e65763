"""Typed, one-line-error access to one TOML table of the config (shared by every section parser)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_MISSING: object = object()


class ConfigError(Exception):
    """One clear line: which key, what is wrong, what is expected."""


class Section:
    """One ``[table]`` of the config; every getter names the key in its error."""

    def __init__(self, name: str, data: object) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"[{name}] must be a table, got {type(data).__name__}")
        self.name = name
        self._data: Mapping[str, object] = data
        self._used: set[str] = set()
        # Keys the parser asked about without reading (optional pins, one-of pairs): still known keys,
        # so "known keys are: …" names every key this table accepts, not only those read this time.
        self._asked: set[str] = set()

    def _where(self, key: str) -> str:
        # A quoted TOML key may hold a line break; the error must stay one line.
        return f"[{self.name}] {key if key.isprintable() else repr(key)}"

    def keys(self) -> list[str]:
        """The keys present (for tables whose keys are free-form names, like buttons)."""
        return list(self._data)

    def has(self, key: str) -> bool:
        self._asked.add(key)
        return key in self._data

    def _get(self, key: str, default: object) -> object:
        self._used.add(key)
        if key in self._data:
            return self._data[key]
        if default is _MISSING:
            raise ConfigError(f"{self._where(key)} is missing; it is required")
        return default

    def raw(self, key: str) -> object:
        """The value as TOML gave it, for tables of free-form names checked by the caller."""
        return self._get(key, None)

    def table(self, key: str) -> Section:
        self._used.add(key)
        return Section(f"{self.name}.{key}" if self.name else key, self._data.get(key))

    def string(self, key: str, default: object = _MISSING, *, allow_empty: bool = False) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"{self._where(key)} must be a string, got {value!r}")
        if not value and not allow_empty:
            raise ConfigError(f"{self._where(key)} is empty; expected a non-empty string")
        return value

    def opt_str(self, key: str) -> str | None:
        if key not in self._data:
            self._used.add(key)
            return None
        return self.string(key)

    def integer(
        self, key: str, default: object = _MISSING, *, min: int | None = None, max: int | None = None
    ) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self._where(key)} must be a whole number, got {value!r}")
        if min is not None and value < min:
            raise ConfigError(f"{self._where(key)} is {value}; expected at least {min}")
        if max is not None and value > max:
            raise ConfigError(f"{self._where(key)} is {value}; expected at most {max}")
        return value

    def number(
        self, key: str, default: object = _MISSING, *, min: float | None = None, max: float | None = None
    ) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{self._where(key)} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{self._where(key)} is {value}; expected a finite number")
        if min is not None and value < min:
            raise ConfigError(f"{self._where(key)} is {value}; expected at least {min}")
        if max is not None and value > max:
            raise ConfigError(f"{self._where(key)} is {value}; expected at most {max}")
        return float(value)

    def flag(self, key: str, default: object = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self._where(key)} must be true or false, got {value!r}")
        return value

    def choice(self, key: str, choices: Sequence[Any], default: object = _MISSING) -> Any:
        value = self._get(key, default)
        for c in choices:
            # type() too: TOML true == 1 and 64.0 == 64 must not pass for an integer choice
            if value == c and type(value) is type(c):
                return c
        options = " | ".join(repr(c) for c in choices)
        raise ConfigError(f"{self._where(key)} is {value!r}; expected one of {options}")

    def path(self, key: str, default: object = _MISSING) -> Path:
        return Path(self.string(key, default))

    def opt_path(self, key: str) -> Path | None:
        value = self.opt_str(key)
        return Path(value) if value is not None else None

    def url(self, key: str, default: object = _MISSING) -> str:
        value = self.string(key, default)
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"{self._where(key)} is {value!r}; expected an http:// or https:// URL")
        return value.rstrip("/")

    def list_of(self, key: str, kinds: tuple[type, ...], default: object = _MISSING) -> list[object]:
        value = self._get(key, default)
        names = " or ".join(k.__name__ for k in kinds)
        if not isinstance(value, list):
            raise ConfigError(f"{self._where(key)} must be a list of {names}, got {value!r}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, kinds):
                raise ConfigError(f"{self._where(key)} has {item!r}; every item must be a {names}")
        return list(value)

    def finish(self) -> None:
        """Refuse keys nobody read: a typo must not silently fall back to a default."""
        unknown = sorted(set(self._data) - self._used)
        if unknown and not self.name:
            known = ", ".join(f"[{k}]" for k in sorted(self._used))
            table = unknown[0] if unknown[0].isprintable() else repr(unknown[0])
            raise ConfigError(f"the config has unknown table [{table}]; known tables are: {known}")
        if unknown:
            known = ", ".join(sorted(self._used | self._asked)) or "none"
            raise ConfigError(f"[{self.name}] has unknown key {unknown[0]!r}; known keys are: {known}")
