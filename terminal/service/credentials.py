"""Every secret the service reads, and where it finds each: a root-only 0600 file that the unit passes
as a systemd credential (LoadCredential=NAME:FILE), read from $CREDENTIALS_DIRECTORY/NAME.

The service runs as user taptill and cannot open root's files; systemd (as root) copies each one into a
directory only that user reads. The config names the file (the key ``token_file`` and its kin), the unit
loads that same file, and `taptill doctor` and `taptill operator add` find it through the unit too.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from terminal.service.unit_file import UNIT_PATH, installed_unit, service_options, started_config

CONFIG_DIR = Path("/etc/taptill")
# Where systemd puts a running taptill.service's credentials; its user may read them from outside too.
RUNNING_CREDENTIALS = Path("/run/credentials/taptill.service")


@dataclass(frozen=True)
class ServiceSecret:
    """A secret the service reads: the config key naming its file and the credential it comes as."""

    table: str  # the config table, e.g. "wallet"
    key: str  # the key in it that names the file, e.g. "token_file"
    credential: str  # the systemd credential name: LoadCredential=<credential>:<file>
    path: Path  # where taptill-provision keeps it (root's, mode 0600)
    mode: str | None = None  # the [terminal] mode in which the service reads it; None: every mode

    @property
    def setting(self) -> str:
        """``[table] key``, as a person finds it in the config."""
        return f"[{self.table}] {self.key}"


WALLET_TOKEN = ServiceSecret("wallet", "token_file", "wallet.token", CONFIG_DIR / "wallet.token")
PARTYBROKER_PASSWORD = ServiceSecret(
    "partybroker", "password_file", "partybroker.password", CONFIG_DIR / "partybroker.password"
)
READY2ORDER_TOKEN = ServiceSecret(
    "ready2order", "account_token_file", "ready2order.token", CONFIG_DIR / "ready2order.token"
)
OPERATOR_KEY = ServiceSecret(
    "topup", "operator_key_file", "topup.operator_key", CONFIG_DIR / "operator.key", mode="topup"
)
BRINK_ACCESS_TOKEN = ServiceSecret(
    "brink", "access_token_file", "brink.access_token", CONFIG_DIR / "brink.access_token"
)
BRINK_LOCATION_TOKEN = ServiceSecret(
    "brink", "location_token_file", "brink.location_token", CONFIG_DIR / "brink.location_token"
)
YOURBARMATE_PASSWORD = ServiceSecret(
    "yourbarmate", "password_file", "yourbarmate.password", CONFIG_DIR / "yourbarmate.password"
)
METRICS_TOKEN = ServiceSecret("metrics", "token_file", "metrics.token", CONFIG_DIR / "metrics.token")
SERVICE_SECRETS = (
    WALLET_TOKEN,
    PARTYBROKER_PASSWORD,
    READY2ORDER_TOKEN,
    OPERATOR_KEY,
    BRINK_ACCESS_TOKEN,
    BRINK_LOCATION_TOKEN,
    YOURBARMATE_PASSWORD,
    METRICS_TOKEN,
)


def named_in(data: Mapping[str, object], config_dir: Path) -> list[tuple[ServiceSecret, Path]]:
    """The secrets a config (TOML as parsed) makes the service read, each with the file its key names
    (a relative one taken from ``config_dir``, as the config loader does)."""
    terminal = data.get("terminal")
    mode = terminal.get("mode", "tap") if isinstance(terminal, dict) else "tap"
    found = []
    for secret in SERVICE_SECRETS:
        table = data.get(secret.table)
        value = table.get(secret.key) if isinstance(table, dict) else None
        if isinstance(value, str) and value and secret.mode in (None, mode):
            found.append((secret, config_dir / value))  # an absolute value replaces config_dir
    return found


def loaded(options: Mapping[str, list[str]]) -> dict[str, Path]:
    """Credential name → the file the unit loads it from (its LoadCredential= lines; a later one wins)."""
    out: dict[str, Path] = {}
    for value in options.get("LoadCredential", []):
        name, _, source = value.partition(":")
        if name and source:
            out[name] = Path(source)
    return out


@dataclass(frozen=True)
class Source:
    """Where whoever asks (root, the service user, the service itself) reads a secret that the service
    will read, named for people; or why the service would not get it (``problem``, with the fix), or
    why this user cannot look at it (``unreadable``)."""

    path: Path | None
    where: str
    credential: bool = False  # a copy systemd made (its mode and owner are systemd's, not checked)
    problem: str | None = None
    unreadable: str | None = None


def service_source(
    secret: ServiceSecret, configured: Path | None, config_path: Path, root: Path = Path("/")
) -> Source:
    """Where the service gets ``secret`` (``configured``: the file the config names), and where this
    process can read that same secret: inside the unit its credential; as root the file the unit loads;
    as the service user outside the unit the running service's copy. When no installed unit runs
    ``config_path`` (a development checkout), simply the configured file."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / secret.credential).is_file():
        return Source(Path(cred_dir) / secret.credential, f"the {secret.credential} credential", True)
    unit = installed_unit(root)
    options = service_options(unit) if unit is not None else {}
    started = started_config(options)
    if started is None or started.absolute() != config_path.absolute():
        return Source(configured, str(configured))
    user = (options.get("User") or ["root"])[-1]
    source = loaded(options).get(secret.credential)
    if source is None:
        if configured is None or _readable_by(configured, user):
            return Source(configured, str(configured))
        return Source(
            configured,
            str(configured),
            problem=(
                f"{UNIT_PATH} passes no credential {secret.credential}, and its user {user} cannot read "
                f"{configured}: the service would not start; run taptill-provision again (it adds "
                f"LoadCredential={secret.credential}:{configured})"
            ),
        )
    where = f"{source} (the unit's {secret.credential} credential)"
    if configured is not None and configured.absolute() != source:
        return Source(
            source,
            where,
            problem=(
                f"{secret.setting} names {configured}, but the unit passes {source} as credential "
                f"{secret.credential}; run taptill-provision again, or make both name the same file"
            ),
        )
    if os.access(source, os.R_OK) or not source.exists():
        return Source(source, where)  # reading it says what is wrong with it, if anything
    running = RUNNING_CREDENTIALS / secret.credential
    if os.access(running, os.R_OK):
        return Source(running, f"the running service's {secret.credential} credential", True)
    return Source(
        None,
        where,
        unreadable=(
            f"{source} is root's, as it should be: the unit passes it to the service as credential "
            f"{secret.credential}; run `sudo taptill doctor` to check what it holds (or this while "
            "taptill runs)"
        ),
    )


def _readable_by(path: Path, user: str) -> bool:
    """Whether ``user`` could open ``path`` by its owner (a secret file gives group and others nothing)."""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return user == "root"
    try:
        return uid == 0 or path.stat().st_uid == uid
    except OSError:
        return True  # a missing file: reading it says so, and no credential would change that
