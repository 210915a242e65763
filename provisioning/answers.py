"""The provisioning answers, gathered without a prompt: flags beat environment beats an answers TOML."""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from terminal.config import ConfigError, parse_gpio, parse_select, parse_topup
from terminal.config_section import Section
from terminal.net.transport import cleartext_host
from terminal.service.secret import Secret


class AnswersError(Exception):
    """A missing or malformed answer; the message names the flag, variable and TOML key to set."""


# answer name → (flag, environment variable, answers-TOML "table.key")
SOURCES: dict[str, tuple[str, str, str]] = {
    "wallet_url": ("--wallet-url", "TAPTILL_WALLET_URL", "wallet.base_url"),
    "wallet_token": ("", "TAPTILL_WALLET_TOKEN", "wallet.token"),
    "wallet_token_file": ("--wallet-token-file", "TAPTILL_WALLET_TOKEN_FILE", "wallet.token_file"),
    "products": ("--products", "TAPTILL_PRODUCTS", "terminal.products"),
    "description": ("--description", "TAPTILL_DESCRIPTION", "terminal.description"),
    "tag": ("--tag", "TAPTILL_TAG", "terminal.tag"),
    "mode": ("--mode", "TAPTILL_MODE", "terminal.mode"),
    "state_dir": ("--state-dir", "TAPTILL_STATE_DIR", "terminal.state_dir"),
    "reader": ("--reader", "TAPTILL_READER", "reader.kind"),
    "reader_device": ("--reader-device", "TAPTILL_READER_DEVICE", "reader.device"),
    "sim_socket": ("--sim-socket", "TAPTILL_SIM_SOCKET", "reader.socket"),
    "display": ("--display", "TAPTILL_DISPLAY", "display.kind"),
    "partybroker_url": ("--partybroker-url", "TAPTILL_PARTYBROKER_URL", "partybroker.base_url"),
    "party_id": ("--party-id", "TAPTILL_PARTY_ID", "partybroker.party_id"),
    "partybroker_user": ("--partybroker-user", "TAPTILL_PARTYBROKER_USER", "partybroker.username"),
    "partybroker_password": ("", "TAPTILL_PARTYBROKER_PASSWORD", "partybroker.password"),
    "partybroker_password_file": (
        "--partybroker-password-file",
        "TAPTILL_PARTYBROKER_PASSWORD_FILE",
        "partybroker.password_file",
    ),
}

# The answers that are secrets: each has a NAME_file answer too, the way to give it (a file or "-", stdin).
SECRETS = ("wallet_token", "partybroker_password")
# Answers-file keys that make the file itself a secret (operator entries unlock the kiosk's credits).
SECRET_KEYS = (("wallet", "token"), ("partybroker", "password"), ("topup", "operators"))
# A secret file with any of these bits is readable (or writable) by other users.
OPEN_BITS = 0o077

# Tables the answers file may give whole: copied into the config as they are, after the config's own
# parser for that table has checked them (so the rules live in one place, terminal/config.py).
CONFIG_TABLES: dict[str, Callable[[Section], object]] = {
    "gpio": parse_gpio,
    "select": parse_select,
    "topup": parse_topup,
}

READER_KINDS = ("auto", "pcsc", "nfcpy", "sim")
DISPLAY_KINDS = ("auto", "oled", "console", "none")
MODES = ("tap", "select", "topup")


@dataclass(frozen=True)
class PartybrokerAnswers:
    base_url: str
    party_id: str
    username: str
    password: Secret


@dataclass(frozen=True)
class Answers:
    wallet_url: str
    wallet_token: Secret
    products: tuple[str, ...]  # as typed; matched against the server's ids as text
    description: str
    tag: str | None
    mode: str
    state_dir: str
    reader: str
    reader_device: str | None  # nfcpy: usb, usb:VVVV:PPPP or tty:AMA0:pn532; None lets detection choose
    sim_socket: str
    display: str
    partybroker: PartybrokerAnswers | None
    # [gpio], [select], [topup] from the answers file, as TOML gave them (already checked)
    config_tables: dict[str, dict[str, object]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # one line each, for standard error: e.g. a secret from the environment


def add_flags(p: argparse.ArgumentParser) -> None:
    for name, (flag, env, key) in SOURCES.items():
        if flag:
            p.add_argument(flag, dest=name, metavar=name.upper(), help=f"or ${env}, or {key} in --answers")


def gather(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Answers:
    """Merge the three sources and check them; raises AnswersError naming what to set."""
    env = os.environ if env is None else env
    toml = _answers_file(args.answers) if args.answers else {}
    raw: dict[str, object] = {}
    warnings: list[str] = []
    for name, (_flag, var, key) in SOURCES.items():
        table, _, field = key.partition(".")
        section = toml.get(table)
        from_file = section.get(field) if isinstance(section, dict) else None
        value = getattr(args, name, None)
        if value is None:
            value = env.get(var) or None
            if value is not None and name in SECRETS:
                warnings.append(
                    f"warning: the {name.replace('_', ' ')} came from ${var}: sudo's log, shell history and "
                    f"/proc/PID/environ can keep it; use {SOURCES[name + '_file'][0]} FILE (mode 0600) "
                    "or - for standard input"
                )
        if value is None:
            value = from_file
        raw[name] = value
    if [raw[f"{n}_file"] for n in SECRETS].count("-") > 1:
        raise AnswersError("only one secret can come from standard input (-); give the other as a 0600 file")

    def text(name: str, default: str | None = None) -> str | None:
        value = raw[name]
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise AnswersError(f"{_where(name)} must be text, got {value!r}")
        return str(value).strip() or default

    def required(name: str, what: str) -> str:
        value = text(name)
        if value is None:
            raise AnswersError(f"{what} is missing; set {_where(name)}")
        return value

    url = _url(required("wallet_url", "the wallet base URL"), "wallet_url")
    token = _secret(text("wallet_token"), text("wallet_token_file"), "wallet_token")
    products = _products(raw["products"])
    reader = _choice(text("reader", "auto"), READER_KINDS, "reader")
    display = _choice(text("display", "auto"), DISPLAY_KINDS, "display")
    mode = _choice(text("mode", "tap"), MODES, "mode")
    pb_url = text("partybroker_url")
    if pb_url is not None:
        pb_url = _url(pb_url, "partybroker_url")
    partybroker = None
    if pb_url is not None:
        partybroker = PartybrokerAnswers(
            base_url=pb_url,
            party_id=required("party_id", "the Partybroker party id"),
            username=required("partybroker_user", "the Partybroker user name"),
            password=_secret(
                text("partybroker_password"), text("partybroker_password_file"), "partybroker_password"
            ),
        )
    return Answers(
        wallet_url=url,
        wallet_token=token,
        products=products,
        description=text("description", "taptill") or "taptill",
        tag=text("tag"),
        mode=mode,
        state_dir=text("state_dir", "/var/lib/taptill") or "/var/lib/taptill",
        reader=reader,
        reader_device=text("reader_device"),
        sim_socket=text("sim_socket", "/run/taptill/tap.sock") or "/run/taptill/tap.sock",
        display=display,
        partybroker=partybroker,
        config_tables={n: t for n, t in toml.items() if n in CONFIG_TABLES and isinstance(t, dict)},
        warnings=tuple(warnings),
    )


def _where(name: str) -> str:
    flag, var, key = SOURCES[name]
    return " or ".join(x for x in (flag, f"${var}", f"{key} in the answers file") if x)


def _answers_file(path: Path) -> dict[str, object]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnswersError(f"answers file {path} does not exist; pass an existing --answers FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AnswersError(
            f"answers file {path} cannot be read ({exc}); check its owner and encoding"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise AnswersError(f"answers file {path} is not valid TOML: {exc}") from None
    _refuse_unknown(path, data)
    held = [f"[{t}] {k}" for t, k in SECRET_KEYS if isinstance(data.get(t), dict) and k in data[t]]
    if held:
        _refuse_open(path, f"answers file {path} holds {', '.join(held)}")
    for name, parse in CONFIG_TABLES.items():
        if name in data:
            try:
                parse(Section(name, data[name]))
            except ConfigError as exc:
                raise AnswersError(f"answers file {path}: {exc}") from None
    return data


def _refuse_unknown(path: Path, data: dict[str, object]) -> None:
    """Like the config: a misspelt key (``token_fil``) must not silently leave its answer unset."""
    known: dict[str, set[str]] = {}
    for _flag, _var, key in SOURCES.values():
        table, _, field = key.partition(".")
        known.setdefault(table, set()).add(field)
    tables = ", ".join(f"[{t}]" for t in sorted({*known, *CONFIG_TABLES}))
    for table, section in data.items():
        shown = table if table.isprintable() else repr(table)
        if table in CONFIG_TABLES:
            continue  # checked key by key by the config's parser
        if table not in known:
            raise AnswersError(f"answers file {path} has unknown table [{shown}]; known tables are: {tables}")
        if not isinstance(section, dict):
            raise AnswersError(f"answers file {path}: [{shown}] must be a table, got {section!r}")
        unknown = sorted(set(section) - known[table])
        if unknown:
            raise AnswersError(
                f"answers file {path}: [{shown}] has unknown key {unknown[0]!r}; "
                f"known keys are: {', '.join(sorted(known[table]))}"
            )


def _url(value: str, name: str) -> str:
    """A base URL must say http:// or https://; without it every request fails as "unreachable"."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
        example = "https://" + value.split("://")[-1].lstrip("/")
        raise AnswersError(f"{_where(name)} is {value!r}; expected an http:// or https:// URL like {example}")
    host = cleartext_host(value)
    if host is not None:
        # Provisioning sends the secret at once to check it; allow_insecure is a hand edit of the config.
        raise AnswersError(
            f"{_where(name)} is http:// to {host}: the secret would travel unencrypted; use https://"
        )
    return value


def _secret(value: str | None, file: str | None, name: str) -> Secret:
    if value is None and file == "-":
        value = sys.stdin.readline().strip()  # one line: a second secret cannot follow (refused above)
    elif value is None and file is not None:
        try:
            _refuse_open(Path(file), f"the secret file {file}")
            value = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise AnswersError(f"cannot read the secret file {file}; check the path and its owner") from None
    if not value:
        what = name.replace("_", " ")
        if file == "-":
            raise AnswersError(f"standard input gave no {what}; paste or pipe it as one line")
        # the file (or stdin) is the way to name: a variable ends up in sudo's log and shell history
        raise AnswersError(
            f"the {what} is missing; set {_where(name + '_file')} (a 0600 file, or - for standard input)"
        )
    return Secret(value)


def _refuse_open(path: Path, what: str) -> None:
    """A file holding a secret must be 0600 or 0400: other users of the machine must not read it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & OPEN_BITS:
        raise AnswersError(f"{what} but is mode {mode:04o}, open to other users; run: chmod 600 {path}")


def _products(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[object] = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise AnswersError(f"{_where('products')} must be a comma-separated list, got {value!r}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise AnswersError(f"product {item!r} is neither a product id nor a number")
        out.append(str(item).strip())
    return tuple(out)


def _choice(value: str | None, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise AnswersError(f"{_where(name)} is {value!r}; expected one of {', '.join(allowed)}")
    return value
