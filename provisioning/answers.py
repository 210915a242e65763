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
from terminal.controller.operators import OperatorKeyError, parse_operator_key
from terminal.net.transport import cleartext_host
from terminal.ready2order.config import DEFAULT_BASE_URL as R2O_BASE_URL
from terminal.service.credentials import OPERATOR_KEY
from terminal.service.secret import Secret


class AnswersError(Exception):
    """A missing or malformed answer; the message names the flag, variable and TOML key to set."""


R2O_PAYMENT_METHOD = "Wallet"
R2O_REQUESTS_PER_MINUTE = 20
R2O_WAIT_S = 15 * 60.0
R2O_POLL_S = 3.0
TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}

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
    "ready2order_url": ("--ready2order-url", "TAPTILL_R2O_URL", "ready2order.base_url"),
    "ready2order_developer_token": ("", "TAPTILL_R2O_DEVELOPER_TOKEN", "ready2order.developer_token"),
    "ready2order_developer_token_file": (
        "--ready2order-developer-token-file",
        "TAPTILL_R2O_DEVELOPER_TOKEN_FILE",
        "ready2order.developer_token_file",
    ),
    "ready2order_payment_method": (
        "--ready2order-payment-method",
        "TAPTILL_R2O_PAYMENT_METHOD",
        "ready2order.payment_method",
    ),
    "ready2order_user_id": ("--ready2order-user-id", "TAPTILL_R2O_USER_ID", "ready2order.user_id"),
    "ready2order_training": ("--ready2order-training", "TAPTILL_R2O_TRAINING", "ready2order.training"),
    "ready2order_requests_per_minute": (
        "--ready2order-requests-per-minute",
        "TAPTILL_R2O_REQUESTS_PER_MINUTE",
        "ready2order.requests_per_minute",
    ),
    "ready2order_wait": ("--ready2order-wait", "TAPTILL_R2O_WAIT", "ready2order.wait"),
    "ready2order_poll": ("--ready2order-poll", "TAPTILL_R2O_POLL", "ready2order.poll"),
}

# What a flag is for, where the generic "or $VAR, or key in --answers" says too little.
HELP: dict[str, str] = {
    "ready2order_url": f"the ready2order API (default {R2O_BASE_URL})",
    "ready2order_developer_token_file": (
        "a 0600 file holding the ready2order developer token, or - for standard input; needed only "
        "when no working account token is stored yet"
    ),
    "ready2order_payment_method": (
        "the ready2order payment method wallet sales are booked with, by name "
        f"(default {R2O_PAYMENT_METHOD!r}; never created: make it in ready2order first)"
    ),
    "ready2order_user_id": "the ready2order user the invoices are made by (default: the account's first)",
    "ready2order_training": "true: invoices become training records, not fiscal ones (default false)",
    "ready2order_requests_per_minute": (
        f"this terminal's share of the account's 60 requests a minute (default {R2O_REQUESTS_PER_MINUTE})"
    ),
    "ready2order_wait": (
        f"how long to wait for the owner to approve access, e.g. 15m, 90s or 900 (s; default "
        f"{R2O_WAIT_S / 60:g}m); a grant that expires meanwhile is replaced by a new one"
    ),
    "ready2order_poll": f"seconds between two looks at the grant's state (default {R2O_POLL_S:g})",
}

# The answers that are secrets: each has a NAME_file answer too, the way to give it (a file or "-", stdin).
SECRETS = ("wallet_token", "partybroker_password", "ready2order_developer_token")
# Answers-file keys that make the file itself a secret (operator entries unlock the kiosk's credits).
SECRET_KEYS = (
    ("wallet", "token"),
    ("partybroker", "password"),
    ("ready2order", "developer_token"),
    ("topup", "operators"),
)
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
class Ready2OrderAnswers:
    base_url: str
    developer_token: Secret | None  # needed only when a grant must be asked for
    payment_method: str  # the name of the payment method wallet sales are booked with
    user_id: int | None  # None: the account's first user
    training: bool
    requests_per_minute: int
    wait_s: float  # how long the owner has to approve, all grants together
    poll_s: float


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
    ready2order: Ready2OrderAnswers | None = None
    # [gpio], [select], [topup] from the answers file, as TOML gave them (already checked), except that
    # a kiosk's [topup] operator_key_file names where the service finds the key: OPERATOR_KEY.path
    config_tables: dict[str, dict[str, object]] = field(default_factory=dict)
    # the operator key the answers' [topup.operators] were made under, to store at OPERATOR_KEY.path;
    # None: the key already there (or no kiosk)
    operator_key: Secret | None = None
    warnings: tuple[str, ...] = ()  # one line each, for standard error: e.g. a secret from the environment


def add_flags(p: argparse.ArgumentParser) -> None:
    for name, (flag, env, key) in SOURCES.items():
        if flag:
            what = f"{HELP[name]}; " if name in HELP else ""
            p.add_argument(
                flag, dest=name, metavar=name.upper(), help=f"{what}or ${env}, or {key} in --answers"
            )
    p.add_argument(
        "--ready2order",
        action="store_true",
        help="mirror every sale to ready2order: get an account token (the owner approves on a phone) and "
        "write [ready2order]; also on with --ready2order-url or a [ready2order] table in --answers",
    )


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
    ready2order = None
    if getattr(args, "ready2order", False) or raw["ready2order_url"] is not None or "ready2order" in toml:
        ready2order = _ready2order(raw, text)
    tables = {n: dict(t) for n, t in toml.items() if n in CONFIG_TABLES and isinstance(t, dict)}
    operator_key = None
    if mode == "topup" and "topup" in tables:
        operator_key = _operator_key(tables["topup"], args.answers)  # only an answers file gives [topup]
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
        ready2order=ready2order,
        config_tables=tables,
        operator_key=operator_key,
        warnings=tuple(warnings),
    )


def _operator_key(topup: dict[str, object], answers_file: Path) -> Secret | None:
    """The key a kiosk's [topup.operators] were made under, from the answers' [topup] operator_key_file
    (0600; a relative path is taken from the answers file's folder, as `taptill operator add --config
    ANSWERS` takes it), to be stored where the unit loads it; that key then becomes the value. None when
    the answers name that place itself or nothing: the key already on the terminal."""
    raw = topup.get("operator_key_file")
    topup["operator_key_file"] = str(OPERATOR_KEY.path)
    if not isinstance(raw, str) or not raw or Path(raw) == OPERATOR_KEY.path:
        return None
    path = Path(raw) if Path(raw).is_absolute() else answers_file.parent / raw
    where = f"the answers' [topup] operator_key_file {path}"
    try:
        _refuse_open(path, f"{where} holds the operator key")
        text = path.read_text(encoding="utf-8")
        parse_operator_key(text)
    except (OSError, UnicodeDecodeError):
        raise AnswersError(
            f"cannot read {where}; make the operators' lines with taptill operator add NAME --config "
            f"{answers_file}, which creates it"
        ) from None
    except OperatorKeyError as exc:
        raise AnswersError(f"{where}: {exc}") from None
    return Secret(text.strip())


def _ready2order(raw: dict[str, object], text: Callable[..., str | None]) -> Ready2OrderAnswers:
    token, token_file = text("ready2order_developer_token"), text("ready2order_developer_token_file")
    developer_token = None
    if token is not None or token_file is not None:
        developer_token = _secret(token, token_file, "ready2order_developer_token")
    user_id, rate = raw["ready2order_user_id"], raw["ready2order_requests_per_minute"]
    return Ready2OrderAnswers(
        base_url=_url(text("ready2order_url", R2O_BASE_URL) or R2O_BASE_URL, "ready2order_url"),
        developer_token=developer_token,
        payment_method=text("ready2order_payment_method", R2O_PAYMENT_METHOD) or R2O_PAYMENT_METHOD,
        user_id=None if user_id is None else _whole(user_id, "ready2order_user_id", 1, 2**53),
        training=_flag(raw["ready2order_training"], "ready2order_training", False),
        requests_per_minute=_whole(
            R2O_REQUESTS_PER_MINUTE if rate is None else rate,
            "ready2order_requests_per_minute",
            1,
            60,
        ),
        wait_s=_duration(raw["ready2order_wait"], "ready2order_wait", R2O_WAIT_S),
        poll_s=_seconds(raw["ready2order_poll"], "ready2order_poll", R2O_POLL_S, 0.05, 60.0),
    )


def _whole(value: object, name: str, lo: int, hi: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise AnswersError(f"{_where(name)} is {value!r}; expected a whole number from {lo} to {hi}")
    return value


def _flag(value: object, name: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise AnswersError(f"{_where(name)} is {value!r}; expected true or false")


def _seconds(value: object, name: str, default: float, lo: float, hi: float) -> float:
    if value is None:
        return default
    try:
        seconds = (
            float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else -1.0
        )
    except ValueError:
        seconds = -1.0
    if not lo <= seconds <= hi:
        raise AnswersError(f"{_where(name)} is {value!r}; expected seconds from {lo:g} to {hi:g}")
    return seconds


def _duration(value: object, name: str, default: float) -> float:
    """A wait like 15m, 90s, 1h or 900 (seconds), from 1 s to a day."""
    if value is None:
        return default
    text = str(value).strip().lower()
    scale = DURATION_UNITS.get(text[-1:], 1.0) if text else 1.0
    number = text[:-1] if text[-1:] in DURATION_UNITS else text
    try:
        seconds = float(number) * scale if not isinstance(value, bool) else -1.0
    except ValueError:
        seconds = -1.0
    if not 1.0 <= seconds <= 86400.0:
        raise AnswersError(f"{_where(name)} is {value!r}; expected a time like 15m, 90s or 1h (up to 24h)")
    return seconds


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
