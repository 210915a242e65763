"""Loads and validates the one TOML config file; every error is one line naming the key."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from terminal.brink.config import BrinkConfig, parse_brink
from terminal.config_section import ConfigError, Section
from terminal.metrics.config import MetricsConfig, parse_metrics
from terminal.model import ProductId
from terminal.partybroker.config import PartybrokerConfig, parse_partybroker
from terminal.ready2order.config import Ready2OrderConfig, parse_ready2order
from terminal.wallet.config import WalletConfig, parse_wallet_config
from terminal.yourbarmate.config import YourbarmateConfig, parse_yourbarmate

DEFAULT_CONFIG_PATH = Path("/etc/taptill/config.toml")
# A result screen or a re-tap guard longer than a minute would only keep the next guest waiting.
MAX_HOLD_S = 60.0

Mode = Literal["tap", "select", "topup", "table"]
ReaderKind = Literal["sim", "pcsc", "nfcpy"]
DisplayKind = Literal["console", "image", "oled", "none"]
OfflineMode = Literal["decline", "accept"]

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "parse_config",
    "parse_gpio",
    "parse_select",
    "parse_table",
    "parse_topup",
]


@dataclass(frozen=True)
class TerminalConfig:
    state_dir: Path
    products: tuple[ProductId, ...]
    description: str
    tag: str | None
    mode: Mode = "tap"
    tap_budget_ms: int = 800
    locale: str = "de"
    currency: str = "EUR"
    pairing_url: str | None = None
    screen_hold_s: float = 3.0
    # No second charge of a card while its result shows nor this long after its last one (0: no guard).
    retap_guard_s: float = 3.0
    # ...nor before it has been away from the reader this long without a break (0: not asked). A card at
    # the field's edge is gone for tens to a few hundred ms at a time; a guest lifting the card to tap
    # again for a second coffee keeps it away longer than a second.
    rearm_absent_s: float = 1.0


@dataclass(frozen=True)
class OfflineConfig:
    mode: OfflineMode = "accept"
    max_per_card_cents: int = 1000
    max_total_cents: int = 20000
    max_balance_age_s: int = 24 * 3600
    probe_interval_s: float = 5.0


@dataclass(frozen=True)
class ReaderConfig:
    kind: ReaderKind = "sim"
    socket: Path = Path("/run/taptill/tap.sock")
    name: str | None = None  # pcsc: substring of the reader name; first reader if unset
    device: str = "usb"  # nfcpy: usb, usb:072f:2200, tty:AMA0:pn532, udp:127.0.0.1:PORT
    targets: tuple[str, ...] = ("106A",)
    poll_interval_s: float = 0.1


@dataclass(frozen=True)
class DisplayConfig:
    kind: DisplayKind = "console"
    driver: Literal["ssd1306", "sh1106"] = "ssd1306"
    width: int = 128
    height: int = 64
    interface: Literal["i2c", "spi"] = "i2c"
    i2c_port: int = 1
    i2c_address: int = 0x3C
    spi_port: int = 0
    spi_device: int = 0
    rotate: int = 0
    image_dir: Path | None = None


@dataclass(frozen=True)
class GpioConfig:
    enabled: bool = False
    relay_pin: int | None = None
    relay_active_high: bool = True
    relay_pulse_ms: int = 500
    relay_gap_ms: int = 300
    buzzer_pin: int | None = None
    led_ok_pin: int | None = None
    led_error_pin: int | None = None
    led_online_pin: int | None = None
    bounce_ms: int = 50
    # A press counts only once the contact stayed closed this long: a spike on the line is not a press,
    # while the quickest deliberate finger press (~50 ms and more) still is.
    min_press_ms: int = 30
    buttons: dict[str, int] = field(default_factory=dict)
    # A relay per product (product id as text → pin); products not listed pulse relay_pin.
    relays: dict[str, int] = field(default_factory=dict)

    def relay_for(self, product: ProductId) -> int | None:
        """The pin pulsed to dispense ``product``: its own relay, else relay_pin (None: no relay)."""
        return self.relays.get(str(product), self.relay_pin)


@dataclass(frozen=True)
class SelectConfig:
    """Select mode (coffee machine): buttons fill a cart that the next tap pays."""

    buttons: dict[str, ProductId] = field(default_factory=dict)
    cancel_button: str | None = None
    cart_timeout_s: float = 30.0


MAX_TABLES = 1000  # a [table] table_range longer than this is a typo, not a venue
MAX_TABLE_ID = 2**31 - 1  # PAR Brink's TableId is an int
# A table terminal's name in its POS payments' references: a letter first, so "-2" stays a retry suffix
TERMINAL_ID = re.compile(r"[a-z][a-z0-9]{0,7}")


@dataclass(frozen=True)
class TableConfig:
    """Table mode (PAR Brink): the tables staff choose from, or the one table the terminal is at; the
    wallet products that pay an amount (cents -> product id); whether the POS is told (ApplyPayment)."""

    tables: tuple[int, ...] = ()
    table_id: int | None = None
    denominations: dict[int, ProductId] = field(default_factory=dict)
    apply_payment: bool = False
    tender_id: int | None = None
    bill_refresh_s: float = 30.0
    # With apply_payment: this terminal's name among the venue's terminals, in every POS payment's
    # reference, so a terminal only ever takes its OWN payment on an order for the one it looks for
    terminal_id: str | None = None


@dataclass(frozen=True)
class OperatorEntry:
    """One operator of a top-up kiosk: a name (sent with every credit) and the keyed hashes of the
    card's UID and of the PIN (terminal.controller.operators makes and checks them)."""

    name: str
    card: str  # "hmac-sha256:" + key id (8 hex digits) + ":" + 64 hex digits; older entries lack the key id
    pin: str | None = None


@dataclass(frozen=True)
class TopupConfig:
    """Top-up kiosk: operator cards (keyed hashes of the UID) unlock it; buttons pick credit products;
    caps bound what one unlock, one operator's day and the unconfirmed offline credits may add."""

    operators: tuple[OperatorEntry, ...] = ()
    operator_key_file: Path | None = None  # 0600, or the systemd credential topup.operator_key
    unlock_s: float = 300.0
    buttons: dict[str, ProductId] = field(default_factory=dict)
    clear_button: str | None = None
    pin_required: bool = False
    pin_length: int = 4  # button presses
    pin_attempts: int = 3  # wrong PINs in a row before the operator's card is locked out
    pin_lockout_s: float = 300.0
    max_credit_per_unlock_cents: int | None = None  # None: no cap
    max_credit_per_shift_cents: int | None = None  # per operator per local calendar day; None: no cap
    max_offline_credit_cents: int = 20000  # unconfirmed offline credits, all cards together

    @property
    def pin_in_use(self) -> bool:
        """Some operator card is followed by a PIN (every one with ``pin_required``)."""
        return self.pin_required or any(op.pin is not None for op in self.operators)

    @property
    def pin_keys(self) -> int:
        """How many buttons a PIN is entered with: the credit buttons and the clear button."""
        return len(set(self.buttons) | ({self.clear_button} if self.clear_button else set()))

    @property
    def pin_space(self) -> int:
        """How many PINs there are: buttons ** presses."""
        return int(self.pin_keys**self.pin_length)

    @property
    def pin_sweep_s(self) -> float:
        """Seconds a cloned operator card needs to try every PIN: ``pin_attempts`` guesses, then a lockout
        of ``pin_lockout_s`` (lockouts survive restarts), the guesses themselves counted as instant."""
        return (math.ceil(self.pin_space / self.pin_attempts) - 1) * self.pin_lockout_s


# PINs with fewer combinations are refused at load: a cloned card tries them all within hours.
PIN_SPACE_FLOOR = 1000
MAX_PIN_LENGTH = 12  # button presses


def pin_space_problem(keys: int, presses: int, attempts: int, lockout_s: float) -> str | None:
    """Why a PIN of ``presses`` presses on ``keys`` buttons is too weak to use (one line with the fix),
    or None. ``attempts`` wrong PINs lock a card out for ``lockout_s`` seconds."""
    space = keys**presses
    if space >= PIN_SPACE_FLOOR:
        return None
    sweep = (math.ceil(space / attempts) - 1) * lockout_s
    needed = next((n for n in range(presses, MAX_PIN_LENGTH + 1) if keys**n >= PIN_SPACE_FLOOR), None)
    fix = (
        f"set [topup] pin_length = {needed} or more"
        if needed is not None
        else "give the kiosk more buttons ([topup] buttons, clear_button)"
    )
    when = f"within {span_words(sweep)}" if sweep > 0 else "before its first lockout"
    return (
        f"a PIN of {_count(presses, 'press', 'presses')} on {_count(keys, 'button', 'buttons')} has only "
        f"{_count(space, 'combination', 'combinations')}, which a cloned operator card tries in full {when}; "
        f"{fix} (at least {PIN_SPACE_FLOOR} combinations)"
    )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def span_words(seconds: float) -> str:
    """A duration for people: "40 s", "12 minutes", "5.5 hours", "3.2 days"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86_400:.1f} days"


@dataclass(frozen=True)
class Config:
    terminal: TerminalConfig
    wallet: WalletConfig
    offline: OfflineConfig
    reader: ReaderConfig
    display: DisplayConfig
    gpio: GpioConfig
    partybroker: PartybrokerConfig | None = None
    ready2order: Ready2OrderConfig | None = None
    brink: BrinkConfig | None = None
    yourbarmate: YourbarmateConfig | None = None
    metrics: MetricsConfig | None = None  # None: no Prometheus endpoint
    select: SelectConfig = field(default_factory=SelectConfig)
    topup: TopupConfig = field(default_factory=TopupConfig)
    table: TableConfig = field(default_factory=TableConfig)
    source: Path | None = None

    @property
    def journal_path(self) -> Path:
        return self.terminal.state_dir / "journal.sqlite3"


def load_config(path: Path) -> Config:
    """Read and validate ``path``; raises ConfigError with one line a person can act on."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass --config PATH") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return parse_config(data, source=path)


def parse_config(data: dict[str, object], source: Path | None = None) -> Config:
    """Validate an already-parsed TOML document."""
    root = Section("", data)
    base = source.parent if source else Path.cwd()
    terminal = _terminal(root.table("terminal"), base)
    cfg = Config(
        terminal=terminal,
        wallet=parse_wallet_config(root.table("wallet"), base),
        offline=_offline(root.table("offline")),
        reader=_reader(root.table("reader"), base),
        display=_display(root.table("display"), base),
        gpio=parse_gpio(root.table("gpio")),
        partybroker=parse_partybroker(root.table("partybroker"), base),
        ready2order=parse_ready2order(root.table("ready2order"), base),
        brink=parse_brink(root.table("brink"), base),
        yourbarmate=parse_yourbarmate(root.table("yourbarmate"), base),
        metrics=parse_metrics(root.table("metrics"), base),
        select=parse_select(root.table("select")),
        topup=parse_topup(root.table("topup"), base),
        table=parse_table(root.table("table")),
        source=source,
    )
    _check_mode(cfg)
    _check_buttons(cfg)
    _check_relays(cfg)
    _check_stock(cfg)
    root.finish()
    return cfg


def _resolve(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p)


def _terminal(s: Section, base: Path) -> TerminalConfig:
    products = s.list_of("products", (str, int), [])
    for p in products:
        if isinstance(p, str) and not p.strip():
            raise ConfigError("[terminal] products has an empty product id; use the wallet's ids")
    mode = s.choice("mode", ("tap", "select", "topup", "table"), "tap")
    if mode == "tap" and not products:
        raise ConfigError("[terminal] products is empty; tap mode needs at least one product id")
    tag = s.opt_str("tag")
    cfg = TerminalConfig(
        state_dir=_resolve(base, s.path("state_dir", "/var/lib/taptill")),
        products=tuple(products),  # type: ignore[arg-type]
        description=s.string("description"),
        tag=tag,
        mode=mode,
        tap_budget_ms=s.integer("tap_budget_ms", 800, min=100, max=10000),
        locale=s.choice("locale", ("de", "en"), "de"),
        currency=_currency(s),
        pairing_url=s.opt_str("pairing_url"),
        screen_hold_s=s.number("screen_hold_s", 3.0, min=0.0, max=MAX_HOLD_S),
        retap_guard_s=s.number("retap_guard_s", 3.0, min=0.0, max=MAX_HOLD_S),
        rearm_absent_s=s.number("rearm_absent_s", 1.0, min=0.0, max=MAX_HOLD_S),
    )
    s.finish()
    return cfg


def _currency(s: Section) -> str:
    """An ISO 4217 code: three letters (EUR, CHF); anything else would be printed as it is on every price."""
    code = s.string("currency", "EUR")
    if not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise ConfigError(
            f'[terminal] currency is {code!r}; expected an ISO 4217 code of three letters, e.g. "EUR"'
        )
    return code.upper()


def _offline(s: Section) -> OfflineConfig:
    cfg = OfflineConfig(
        mode=s.choice("mode", ("decline", "accept"), "accept"),
        max_per_card_cents=s.integer("max_per_card_cents", 1000, min=0),
        max_total_cents=s.integer("max_total_cents", 20000, min=0),
        max_balance_age_s=s.integer("max_balance_age_s", 24 * 3600, min=0),
        probe_interval_s=s.number("probe_interval_s", 5.0, min=0.05),
    )
    s.finish()
    return cfg


def _reader(s: Section, base: Path) -> ReaderConfig:
    targets = s.list_of("targets", (str,), ["106A"])
    cfg = ReaderConfig(
        kind=s.choice("kind", ("sim", "pcsc", "nfcpy"), "sim"),
        socket=_resolve(base, s.path("socket", "/run/taptill/tap.sock")),
        name=s.opt_str("name"),
        device=s.string("device", "usb"),
        targets=tuple(str(t) for t in targets),
        poll_interval_s=s.number("poll_interval_s", 0.1, min=0.01, max=5.0),  # what NfcpyReader accepts
    )
    s.finish()
    return cfg


def _display(s: Section, base: Path) -> DisplayConfig:
    image_dir = s.opt_path("image_dir")
    cfg = DisplayConfig(
        kind=s.choice("kind", ("console", "image", "oled", "none"), "console"),
        driver=s.choice("driver", ("ssd1306", "sh1106"), "ssd1306"),
        width=s.choice("width", (128,), 128),
        height=s.choice("height", (64, 32), 64),
        interface=s.choice("interface", ("i2c", "spi"), "i2c"),
        i2c_port=s.integer("i2c_port", 1, min=0),
        i2c_address=s.integer("i2c_address", 0x3C, min=0x03, max=0x77),
        spi_port=s.integer("spi_port", 0, min=0),
        spi_device=s.integer("spi_device", 0, min=0),
        rotate=s.choice("rotate", (0, 1, 2, 3), 0),
        image_dir=_resolve(base, image_dir) if image_dir else None,
    )
    s.finish()
    return cfg


def _pin(s: Section, key: str) -> int | None:
    return s.integer(key, min=0, max=53) if s.has(key) else None


def parse_gpio(s: Section) -> GpioConfig:
    """The [gpio] table alone (pins, [gpio.buttons], [gpio.relays]); raises ConfigError naming the key."""
    buttons_section = s.table("buttons")
    buttons: dict[str, int] = {}
    for name in buttons_section.keys():  # noqa: SIM118 - a Section, not a dict
        buttons[name] = buttons_section.integer(name, min=0, max=53)
    relays_section = s.table("relays")
    relays: dict[str, int] = {}
    for product in relays_section.keys():  # noqa: SIM118 - a Section, not a dict
        relays[product] = relays_section.integer(product, min=0, max=53)
    cfg = GpioConfig(
        enabled=s.flag("enabled", False),
        relay_pin=_pin(s, "relay_pin"),
        relay_active_high=s.flag("relay_active_high", True),
        relay_pulse_ms=s.integer("relay_pulse_ms", 500, min=10, max=60000),
        relay_gap_ms=s.integer("relay_gap_ms", 300, min=0, max=60000),
        buzzer_pin=_pin(s, "buzzer_pin"),
        led_ok_pin=_pin(s, "led_ok_pin"),
        led_error_pin=_pin(s, "led_error_pin"),
        led_online_pin=_pin(s, "led_online_pin"),
        bounce_ms=s.integer("bounce_ms", 50, min=0, max=1000),
        min_press_ms=s.integer("min_press_ms", 30, min=0, max=1000),
        buttons=buttons,
        relays=relays,
    )
    s.finish()
    _check_pins(cfg)
    return cfg


def _check_pins(cfg: GpioConfig) -> None:
    """One pin, one job: two devices on a pin would fight over it (gpiozero refuses it at start anyway).
    Several products may share one relay (sizes of one drink); a relay pin is never also something else."""
    owners: dict[int, str] = {}
    named: list[tuple[int | None, str]] = [
        (cfg.relay_pin, "relay_pin"),
        *((pin, f"relays.{product}") for product, pin in cfg.relays.items()),
        (cfg.buzzer_pin, "buzzer_pin"),
        (cfg.led_ok_pin, "led_ok_pin"),
        (cfg.led_error_pin, "led_error_pin"),
        (cfg.led_online_pin, "led_online_pin"),
        *((pin, f"buttons.{name}") for name, pin in cfg.buttons.items()),
    ]

    def relay(key: str) -> bool:
        return key == "relay_pin" or key.startswith("relays.")

    for pin, key in named:
        if pin is None:
            continue
        other = owners.get(pin)
        if other is not None and not (relay(key) and relay(other)):
            raise ConfigError(f"[gpio] {key} uses GPIO{pin}, already used by {other}; give each its own pin")
        owners.setdefault(pin, key)


def _buttons(s: Section) -> dict[str, ProductId]:
    table = s.table("buttons")
    out: dict[str, ProductId] = {}
    for name in table.keys():  # noqa: SIM118 - a Section, not a dict
        value = table.raw(name)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise ConfigError(f"[{table.name}] {name} must be a wallet product id, got {value!r}")
        out[name] = value
    return out


def parse_select(s: Section) -> SelectConfig:
    """The [select] table alone; whether its buttons are wired is checked with the whole config."""
    cfg = SelectConfig(
        buttons=_buttons(s),
        cancel_button=s.opt_str("cancel_button"),
        cart_timeout_s=s.number("cart_timeout_s", 30.0, min=1.0),
    )
    s.finish()
    return cfg


OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_KEYED_HASH = re.compile(r"hmac-sha256:(?:[0-9a-f]{8}:)?[0-9a-f]{64}")
_ADD_OPERATOR = "re-register each card with: taptill operator add NAME (it prints the [topup.operators] line)"


def parse_topup(s: Section, base: Path | None = None) -> TopupConfig:
    """The [topup] table alone; whether its buttons are wired is checked with the whole config."""
    raw = s.raw("operators")
    if isinstance(raw, list):
        # The old form: unsalted SHA-256 of each UID, brute-forced from a leaked config in minutes.
        raise ConfigError(
            "[topup] operators is a list of unsalted SHA-256 card hashes, which anyone who reads the "
            f"config can turn back into the UIDs; {_ADD_OPERATOR}"
        )
    operators = _operators(raw)
    key_file = s.opt_path("operator_key_file")
    buttons = _buttons(s)
    cfg = TopupConfig(
        operators=operators,
        operator_key_file=_resolve(base or Path.cwd(), key_file) if key_file is not None else None,
        unlock_s=s.number("unlock_s", 300.0, min=1.0),
        buttons=buttons,
        clear_button=s.opt_str("clear_button"),
        pin_required=s.flag("pin_required", False),
        pin_length=s.integer("pin_length", 4, min=1, max=MAX_PIN_LENGTH),
        pin_attempts=s.integer("pin_attempts", 3, min=1, max=10),
        pin_lockout_s=s.number("pin_lockout_s", 300.0, min=1.0),
        max_credit_per_unlock_cents=_opt_cap(s, "max_credit_per_unlock_cents"),
        max_credit_per_shift_cents=_opt_cap(s, "max_credit_per_shift_cents"),
        max_offline_credit_cents=s.integer("max_offline_credit_cents", 20000, min=0),
    )
    if cfg.pin_required:
        for op in operators:
            if op.pin is None:
                raise ConfigError(
                    f"[topup.operators] {op.name} has no pin, but [topup] pin_required = true; "
                    f"run: taptill operator add {op.name} --pin"
                )
    if cfg.pin_in_use and cfg.buttons:
        weak = pin_space_problem(cfg.pin_keys, cfg.pin_length, cfg.pin_attempts, cfg.pin_lockout_s)
        if weak is not None:
            raise ConfigError(f"[topup] {weak}")
    s.finish()
    return cfg


def _opt_cap(s: Section, key: str) -> int | None:
    return s.integer(key, min=1) if s.has(key) else None


def _operators(raw: object) -> tuple[OperatorEntry, ...]:
    """[topup.operators]: NAME = "hmac-sha256:…" or NAME = { card = "hmac-sha256:…", pin = "…" }."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(f"[topup] operators must be a table of NAME = entry lines; {_ADD_OPERATOR}")
    out = []
    for name, value in raw.items():
        if not OPERATOR_NAME.fullmatch(name):
            raise ConfigError(
                f"[topup.operators] {name[:40]!r} is not an operator name; "
                "use up to 32 letters, digits, _ . -"
            )
        card, pin = (value, None) if not isinstance(value, dict) else (value.get("card"), value.get("pin"))
        extra = sorted(set(value) - {"card", "pin"}) if isinstance(value, dict) else []
        if extra:
            raise ConfigError(f"[topup.operators] {name} has unknown key {extra[0]!r}; only card and pin")
        for what, entry in (("card", card), ("pin", pin)):
            if (what == "card" or entry is not None) and not (
                isinstance(entry, str) and _KEYED_HASH.fullmatch(entry)
            ):
                raise ConfigError(
                    f"[topup.operators] {name} {what} is not an hmac-sha256 entry; {_ADD_OPERATOR}"
                )
        out.append(OperatorEntry(name, str(card), None if pin is None else str(pin)))
    return tuple(out)


def parse_table(s: Section) -> TableConfig:
    """The [table] table alone; whether table mode has what it needs is checked with the whole config."""
    table_id = s.integer("table_id", min=1, max=MAX_TABLE_ID) if s.has("table_id") else None
    tables: list[int] = []
    if s.has("tables"):
        raw = s.list_of("tables", (int,))
        tables = [int(str(t)) for t in raw]
        for t in tables:
            if not 1 <= t <= MAX_TABLE_ID:
                raise ConfigError(f"[table] tables has {t}; table ids are whole numbers from 1")
        if len(set(tables)) != len(tables):
            raise ConfigError("[table] tables lists a table twice; list each table once")
    if s.has("table_range"):
        raw = s.list_of("table_range", (int,))
        if len(raw) != 2 or not 1 <= int(str(raw[0])) <= int(str(raw[1])) <= MAX_TABLE_ID:
            raise ConfigError(
                "[table] table_range must be [first, last] table ids with 1 <= first <= last, e.g. [1, 40]"
            )
        first, last = int(str(raw[0])), int(str(raw[1]))
        if last - first + 1 > MAX_TABLES:
            raise ConfigError(f"[table] table_range spans {last - first + 1} tables; at most {MAX_TABLES}")
        if tables:
            raise ConfigError("[table] has both tables and table_range; keep one of them")
        tables = list(range(first, last + 1))
    if table_id is not None and tables:
        raise ConfigError(
            "[table] has table_id and a list of tables; a terminal at one table keeps only table_id"
        )
    apply_payment = s.flag("apply_payment", False)
    tender_id = s.integer("tender_id", min=0, max=MAX_TABLE_ID) if s.has("tender_id") else None
    if apply_payment and tender_id is None:
        raise ConfigError(
            "[table] apply_payment = true needs tender_id: the PAR Brink tender the wallet payments are "
            "booked as (ask the POS administrator)"
        )
    terminal_id = s.opt_str("terminal_id")
    if terminal_id is not None and not TERMINAL_ID.fullmatch(terminal_id):
        raise ConfigError(
            f"[table] terminal_id {terminal_id!r} must be 1-8 lower-case letters and digits, beginning "
            'with a letter (e.g. "bar1")'
        )
    if apply_payment and terminal_id is None:
        raise ConfigError(
            '[table] apply_payment = true needs terminal_id: a short name (e.g. "bar1") unique among the '
            "venue's table terminals, so each finds only its own payments at the POS"
        )
    cfg = TableConfig(
        tables=tuple(tables),
        table_id=table_id,
        denominations=_denominations(s),
        apply_payment=apply_payment,
        tender_id=tender_id,
        bill_refresh_s=s.number("bill_refresh_s", 30.0, min=5.0, max=3600.0),
        terminal_id=terminal_id,
    )
    s.finish()
    return cfg


def _denominations(s: Section) -> dict[int, ProductId]:
    """[table] denominations = { 1000 = "eur10", 1 = "ct1" }: amount in cents -> wallet product id."""
    table = s.table("denominations")
    out: dict[int, ProductId] = {}
    for name in table.keys():  # noqa: SIM118 - a Section, not a dict
        value = table.raw(name)
        if not (name.isascii() and name.isdigit() and int(name) > 0):
            raise ConfigError(
                f'[table] denominations has key {name[:20]!r}; keys are amounts in cents, e.g. 1000 = "eur10"'
            )
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise ConfigError(f"[table] denominations {name} must be a wallet product id, got {value!r}")
        if str(value) in {str(v) for v in out.values()}:
            raise ConfigError(
                f"[table] denominations maps two amounts to product {value!r}; one product each"
            )
        out[int(name)] = value
    return out


def _check_mode(cfg: Config) -> None:
    mode = cfg.terminal.mode
    if mode == "table":
        t = cfg.table
        if not t.tables and t.table_id is None:
            raise ConfigError(
                "[table] has no tables; set tables = [1, 2, 5], table_range = [1, 40] or table_id = 12"
            )
        if not t.denominations:
            raise ConfigError(
                "[table] denominations is empty; map amounts in cents to wallet products, e.g. "
                '{ 1000 = "eur10", 100 = "eur1", 10 = "ct10", 1 = "ct1" }'
            )
        if cfg.brink is None:
            raise ConfigError("table mode reads bills from PAR Brink: add a [brink] table (url, token files)")
        if cfg.gpio.relays:
            raise ConfigError(
                "[gpio] relays is set, but a table terminal gives no goods; remove [gpio.relays]"
            )
    if mode == "select" and not cfg.select.buttons:
        raise ConfigError("[select] buttons is empty; select mode needs button = product id entries")
    if mode == "topup":
        if not cfg.topup.operators:
            raise ConfigError(
                f"[topup.operators] is empty; the kiosk needs an operator card: {_ADD_OPERATOR}"
            )
        if not cfg.topup.buttons:
            raise ConfigError("[topup] buttons is empty; the kiosk needs button = top-up product id entries")


def _check_stock(cfg: Config) -> None:
    """The stock ledger counts a sale by what it poured: a Partybroker ladder step is booked, never
    poured, so a [yourbarmate.products] entry naming one would never count down."""
    pb, ybm = cfg.partybroker, cfg.yourbarmate
    if pb is None or ybm is None:
        return
    drink_of = {str(step): product for product, m in pb.drinks.items() for step in m.ladder}
    for ybm_id, mapped in ybm.products.items():
        if mapped.product in drink_of:
            raise ConfigError(
                f'[yourbarmate.products] "{ybm_id}" names {mapped.product!r}, a [partybroker] ladder step: '
                f"stock counts the drink poured, so name {drink_of[mapped.product]!r} instead"
            )


def _check_buttons(cfg: Config) -> None:
    """Every button the mode reacts to can be pressed, and a guest can always empty the cart."""
    mode = cfg.terminal.mode
    if mode == "tap":
        return
    if mode == "table":
        if cfg.gpio.enabled and cfg.table.table_id is None:
            for name in ("next", "prev", "ok"):
                if name not in cfg.gpio.buttons:
                    raise ConfigError(
                        f"table mode chooses tables with the buttons next, prev and ok; [gpio.buttons] does "
                        f"not wire {name!r}: add {name} = PIN there"
                    )
        return
    table, buttons, cancel_key, cancel = (
        ("select", cfg.select.buttons, "cancel_button", cfg.select.cancel_button)
        if mode == "select"
        else ("topup", cfg.topup.buttons, "clear_button", cfg.topup.clear_button)
    )
    if mode == "select" and cancel is None:
        raise ConfigError(
            "[select] cancel_button is missing; a guest must be able to empty the cart with one press: "
            'add cancel_button = "cancel" and wire that button'
        )
    if cancel is not None and cancel in buttons:
        raise ConfigError(
            f"[{table}] {cancel_key} {cancel!r} is also a product button in [{table}] buttons; "
            "give it a name of its own"
        )
    if not cfg.gpio.enabled:
        return  # buttons come from `taptill press` (sim reader)
    wanted = [(f"[{table}] buttons", name) for name in buttons]
    if cancel is not None:
        wanted.append((f"[{table}] {cancel_key}", cancel))
    for where, name in wanted:
        if name not in cfg.gpio.buttons:
            wired = ", ".join(cfg.gpio.buttons) or "none"
            raise ConfigError(
                f"{where} names button {name!r}, which [gpio.buttons] does not wire to a pin "
                f"(wired: {wired}); add {name} = PIN there"
            )


def _check_relays(cfg: Config) -> None:
    """A relay per product only for products this terminal sells, and none sold without a relay."""
    relays = cfg.gpio.relays
    if not relays:
        return
    mode = cfg.terminal.mode
    if mode == "topup":
        raise ConfigError("[gpio] relays is set, but a top-up kiosk gives no goods; remove [gpio.relays]")
    sold, source = (
        (cfg.terminal.products, "[terminal] products")
        if mode == "tap"
        else (tuple(cfg.select.buttons.values()), "[select] buttons")
    )
    names = [str(p) for p in dict.fromkeys(sold)]
    for product in relays:
        if product not in names:
            raise ConfigError(
                f"[gpio] relays names product {product!r}, which this terminal does not sell; "
                f"the products in {source} are: {', '.join(names)}"
            )
    if cfg.gpio.relay_pin is None:
        for product in names:
            if product not in relays:
                raise ConfigError(
                    f"[gpio] relays has no relay for product {product!r} and there is no relay_pin for "
                    f"the others; add {product} = PIN to [gpio.relays] or set relay_pin"
                )
