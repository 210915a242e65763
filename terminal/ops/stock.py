"""``taptill stock``: the yourbarmate stock ledger for staff (figures, a delivery's arrival, a count)."""

from __future__ import annotations

import json
from collections.abc import Callable

from terminal.config import Config, ConfigError
from terminal.journal import Journal
from terminal.model import printable
from terminal.yourbarmate.config import YourbarmateConfig
from terminal.yourbarmate.parse import EventError
from terminal.yourbarmate.stock import (
    Applied,
    Figures,
    StockError,
    StockLedger,
    connect,
    deliveries,
    quarantined,
    stock_figures,
)
from terminal.yourbarmate.units import UnitError, parse_quantity

UNIT_SHOWN = {"ml": "ml", "g": "g", "pieces": "pieces"}  # as `taptill status` spells them


class StockCommandError(Exception):
    """One line for the person at the command line: what is wrong and what to do."""


def _config(cfg: Config) -> YourbarmateConfig:
    if cfg.yourbarmate is None or not cfg.yourbarmate.products:
        raise ConfigError(
            "no stock is kept: add a [yourbarmate] table with [yourbarmate.products] "
            '(e.g. "2" = { product = "gin", serving_ml = 40 })'
        )
    return cfg.yourbarmate


def show(cfg: Config, as_json: bool, say: Callable[[str], None], *, everything: bool = False) -> None:
    """The figures of every mapped product and the deliveries, read-only (the terminal may run): the open
    ones (requested, not received or cancelled), newest first, and how many others there are; all of them
    with ``everything``. The JSON holds every delivery (a script picks its own)."""
    ybm = _config(cfg)
    journal = Journal.open_read_only(cfg.journal_path)
    try:
        figures = stock_figures(journal.query, ybm.products, ybm.low_servings)
        listed = deliveries(journal.query)
    finally:
        journal.close()
    if as_json:
        say(json.dumps({"products": [f.as_json() for f in figures], "deliveries": listed}))
        return
    say(f"{'product':<20} {'ordered':>12} {'on hand':>12} {'sold':>12} {'servings left':>14}")
    for f in figures:
        mark = "  SOLD OUT" if f.sold_out else "  low" if f.low else ""
        say(
            f"{printable(f.product, 20):<20} {_amount(f.ordered, f):>12} {_amount(f.on_hand, f):>12} "
            f"{_amount(f.sold, f):>12} {f.servings_left:>14}{mark}"
        )
    shown = listed if everything else [d for d in listed if d["state"] == "requested"]
    for d in shown:
        delivery = printable(str(d["delivery_id"]), 100)
        when = str(d["requested_at"])[:16].replace("T", " ")
        if d["type"] == "RETURN":
            what = {"requested": "empties to be taken back"}.get(str(d["state"]), str(d["state"]))
            say(f"return {delivery} ({when}): {what}")
        elif d["state"] == "requested":
            say(f"delivery {delivery} ({when}): ordered; once it arrives: taptill stock receive {delivery}")
        else:
            say(f"delivery {delivery} ({when}): {d['state']}")
    rest = len(listed) - len(shown)
    if rest:
        say(f"{rest} received or cancelled deliveries not listed: taptill stock --all")


def show_quarantine(cfg: Config, as_json: bool, say: Callable[[str], None], *, everything: bool) -> None:
    """The quarantined webhook bodies not applied since (all of them with ``everything``), newest first,
    each with the id ``taptill stock replay`` takes and its reason; read-only."""
    _config(cfg)
    journal = Journal.open_read_only(cfg.journal_path)
    try:
        rows = quarantined(journal.query, everything=everything)
    finally:
        journal.close()
    if as_json:
        say(json.dumps({"quarantine": rows}))
        return
    for q in rows:
        key = printable(str(q["idempotency_key"] or "no key"), 60)
        state = "  (applied)" if q["applied"] else ""
        say(f"#{q['id']} {str(q['received_at'])[:19]} {key}: {printable(str(q['reason']), 300)}{state}")
    if not rows:
        say("no quarantined body waits" + ("" if everything else " (--all lists the applied ones too)"))
    elif not everything:
        say("after fixing [yourbarmate.products]: taptill stock replay ID applies one")


def replay(cfg: Config, quarantine_id: str, say: Callable[[str], None]) -> None:
    """Validate quarantined body ``quarantine_id`` again under the current config and apply it once under
    its idempotency key (written while the terminal runs); one line either way."""
    number = quarantine_id.removeprefix("#")
    if not number.isdigit():
        raise StockCommandError(
            f"{quarantine_id!r} is not a quarantine id; `taptill stock --quarantine` lists them"
        )
    ledger = _ledger(cfg)
    try:
        event, outcome = ledger.replay(int(number))
    except EventError as exc:
        raise StockCommandError(f"#{number} still fails: {printable(str(exc), 300)}") from None
    except StockError as exc:
        raise StockCommandError(str(exc)) from None
    finally:
        ledger.close()
    what = f"{event.kind} {printable(event.delivery_id, 100)}"
    if outcome.applied is Applied.DUPLICATE:
        key = printable(event.idempotency_key, 60)
        say(f"#{number} was applied already ({what}, key {key}); nothing changed")
    else:
        say(f"#{number} applied: {what}" + (f" ({outcome.note})" if outcome.note else ""))


def _amount(value: int, f: Figures) -> str:
    return f"{value} {UNIT_SHOWN[f.measure]}"


def receive(cfg: Config, delivery_id: str, say: Callable[[str], None]) -> None:
    """Staff confirm delivery ``delivery_id`` arrived (written while the terminal runs)."""
    ledger = _ledger(cfg)
    try:
        moved = ledger.receive(delivery_id)
    except StockError as exc:
        raise StockCommandError(str(exc)) from None
    finally:
        ledger.close()
    measure = {p.product: p.measure for p in ledger.products.values()}
    say(
        f"received delivery {delivery_id}: "
        + ", ".join(f"{product} +{amount} {UNIT_SHOWN[measure[product]]}" for product, amount in moved)
    )


def set_count(cfg: Config, product: str, amount_text: str, say: Callable[[str], None]) -> None:
    """Staff counted ``amount_text`` (``20l``, ``500ml``, ``3kg``, ``12``) of wallet product ``product``."""
    ybm = _config(cfg)
    mapped = ybm.by_wallet_product().get(product)
    if mapped is None:
        known = ", ".join(sorted(ybm.by_wallet_product())) or "none"
        raise StockCommandError(f"product {product!r} is in no [yourbarmate.products] entry; known: {known}")
    try:
        amount = parse_quantity(amount_text, mapped.measure)
    except UnitError as exc:
        raise StockCommandError(str(exc)) from None
    ledger = _ledger(cfg)
    try:
        ledger.set_count(product, amount)
    except StockError as exc:
        raise StockCommandError(str(exc)) from None
    finally:
        ledger.close()
    say(f"counted {product}: {amount} {UNIT_SHOWN[mapped.measure]} on hand from now")


def _ledger(cfg: Config) -> StockLedger:
    ybm = _config(cfg)
    try:
        return StockLedger(connect(cfg.journal_path), ybm.products)
    except StockError as exc:
        raise StockCommandError(str(exc)) from None
