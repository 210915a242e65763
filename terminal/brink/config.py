"""Parses the ``[brink]`` table of the config (PAR Brink's Ordering service; absent: no PAR Brink).

The tokens are private files like the wallet token (0600, or the systemd credentials
``brink.access_token`` and ``brink.location_token``); ``url`` must be https:// unless it stays on this
machine (the emulator), since both tokens travel in its headers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from terminal.brink.business_date import DEFAULT_STARTS, parse_day_start
from terminal.config_section import ConfigError, Section
from terminal.net.transport import cleartext_host


@dataclass(frozen=True)
class BrinkConfig:
    url: str  # the Ordering.svc URL, e.g. https://x.parpos.com/Ordering.svc
    access_token_file: Path | None  # read as credentials.BRINK_ACCESS_TOKEN
    location_token_file: Path | None  # read as credentials.BRINK_LOCATION_TOKEN
    timeout_s: float = 5.0  # the overall deadline of one request
    business_day_starts: dt.time = DEFAULT_STARTS
    max_answer_kib: int = 1024  # a bigger answer is refused unread

    @property
    def max_answer_bytes(self) -> int:
        return self.max_answer_kib * 1024


def parse_brink(section: Section, base_dir: Path) -> BrinkConfig | None:
    """Validate ``[brink]``; None when the table is absent or empty."""
    if not section.keys():
        section.finish()
        return None
    url = section.url("url")
    host = cleartext_host(url)
    if host is not None:
        raise ConfigError(
            f"[{section.name}] url is http:// to {host}: the access and location tokens would travel "
            "unencrypted; use the https:// Ordering.svc URL PAR gave you"
        )
    starts_text = section.string("business_day_starts", "06:00")
    try:
        starts = parse_day_start(starts_text)
    except ValueError as exc:
        raise ConfigError(f"[{section.name}] business_day_starts: {exc}") from None
    cfg = BrinkConfig(
        url=url,
        access_token_file=_file(section, "access_token_file", base_dir),
        location_token_file=_file(section, "location_token_file", base_dir),
        timeout_s=section.number("timeout_s", 5.0, min=0.5, max=60.0),
        business_day_starts=starts,
        max_answer_kib=section.integer("max_answer_kib", 1024, min=16, max=16 * 1024),
    )
    section.finish()
    return cfg


def _file(section: Section, key: str, base_dir: Path) -> Path | None:
    path = section.opt_path(key)
    return base_dir / path if path is not None and not path.is_absolute() else path
