"""Parses the ``[wallet]`` table of the config: the server, the terminal's token, how it books."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from terminal.config_section import ConfigError, Section
from terminal.model import PERMISSIONS, Permission
from terminal.net.transport import insecure_url_problem


@dataclass(frozen=True)
class WalletConfig:
    base_url: str
    token_file: Path | None
    permission: Permission = "debit"
    dedupes: bool = False
    timeout_s: float = 10.0
    server_error_limit: int = 3  # error answers found not booked before a sale is rejected
    allow_insecure: bool = False  # http:// to another machine: the token travels in clear


def parse_wallet_config(s: Section, base: Path) -> WalletConfig:
    """Validate ``[wallet]``; a relative ``token_file`` is taken from the config file's folder (``base``)."""
    token_file = s.opt_path("token_file")
    base_url = s.url("base_url")
    allow_insecure = s.flag("allow_insecure", False)
    problem = insecure_url_problem(s.name, base_url, "the API token")
    if problem is not None and not allow_insecure:
        raise ConfigError(problem)
    cfg = WalletConfig(
        base_url=base_url,
        token_file=(token_file if token_file.is_absolute() else base / token_file) if token_file else None,
        permission=s.choice("permission", PERMISSIONS, "debit"),
        dedupes=s.flag("dedupes", False),
        timeout_s=s.number("timeout_s", 10.0, min=0.1),
        server_error_limit=s.integer("server_error_limit", 3, min=1, max=100),
        allow_insecure=allow_insecure,
    )
    s.finish()
    return cfg
