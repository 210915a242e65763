"""Parses the ``[metrics]`` table: where the Prometheus endpoint listens and the bearer token it asks for.

Absent (or without ``listen``): no endpoint, nothing listens. The token is a private file like every other
secret (0600, or the systemd credential ``metrics.token``); it may be left out only on a loopback address,
where only this machine can scrape (a Prometheus agent on the Pi, or an SSH tunnel).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from terminal.config_section import ConfigError, Section

EXAMPLE_LISTEN = "127.0.0.1:9464"  # 9464: the port commonly used for a Prometheus exporter of an app


@dataclass(frozen=True)
class MetricsConfig:
    host: str
    port: int
    token_file: Path | None = None  # read as credentials.METRICS_TOKEN; None: no token (loopback only)

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1); a name or any other address is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_metrics(section: Section, base_dir: Path) -> MetricsConfig | None:
    """Validate ``[metrics]``; None when it has no ``listen`` (the endpoint is off)."""
    text = section.opt_str("listen")
    token_file = section.opt_path("token_file")
    section.finish()
    if text is None:
        if token_file is not None:
            raise ConfigError(
                f'[metrics] has token_file but no listen; add listen = "{EXAMPLE_LISTEN}" or remove the table'
            )
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"[metrics] listen is {text!r}; expected HOST:PORT, e.g. {EXAMPLE_LISTEN!r}")
    if token_file is not None and not token_file.is_absolute():
        token_file = base_dir / token_file
    if token_file is None and not is_loopback(host):
        raise ConfigError(
            f"[metrics] listen {text!r} is reachable from other machines, so it needs token_file: a 0600 "
            "file holding the bearer token Prometheus sends (or the metrics.token credential)"
        )
    return MetricsConfig(host=host, port=int(port), token_file=token_file)
