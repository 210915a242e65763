"""The Brink emulator's control endpoints under ``/_emulator/`` (JSON in, JSON out), for tests and the demo.

Parties, orders, entries, payments and deposits go in as JSON objects whose keys are the fields of the
dataclasses in ``parties.py`` (amounts as strings such as ``"24.99"``, dates as ``YYYY-MM-DD``). A POST
body may name another location with ``"location": <its LocationToken>`` (a GET with ``?location=``);
without it the first location is meant. Every refusal is a 400/404 with ``{"detail": one line}``.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from terminal.emulator.brink.parties import (
    NIL,
    Deposit,
    Entry,
    Location,
    Order,
    Party,
    PartyError,
    Payment,
    amount,
)
from terminal.emulator.faults import FaultConfigError
from terminal.emulator.wallet.routes import ApiResponse, json_response, parse_json

if TYPE_CHECKING:
    from terminal.emulator.brink.server import BrinkEmulator

_AMOUNTS = {"price", "tax", "amount", "tip", "total"}


class ControlError(ValueError):
    """A control request is malformed; the message is its one-line detail."""


def to_json(value: object) -> Any:
    """Dataclasses, dates and containers as JSON values (dates as YYYY-MM-DD)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def party_json(party: Party) -> dict[str, Any]:
    """A party with each order's ``due`` (currency units, as the design's money rules compute it)."""
    obj: dict[str, Any] = to_json(party)
    for order_obj, order in zip(obj["orders"], party.orders, strict=True):
        order_obj["due"] = str(order.due())
        order_obj["is_closed"] = order.is_closed
    return obj


def _build(cls: type[Any], obj: object, default_date: date | None = None) -> Any:
    """An instance of dataclass ``cls`` from a JSON object; ControlError naming what is wrong."""
    name = cls.__name__.lower()
    if not isinstance(obj, dict):
        raise ControlError(f"a {name} must be a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(obj) - known
    if unknown:
        raise ControlError(f"unknown {name} field(s) {sorted(unknown)}; use {sorted(known)}")
    values = dict(obj)
    for key, value in values.items():
        if key in _AMOUNTS or key == "balance":
            if (value is None and key in ("total", "tax", "balance")) or (key == "balance" and value == NIL):
                continue
            if not isinstance(value, str):
                raise ControlError(f'{name} {key} must be a decimal string such as "24.99", not {value!r}')
            amount(value)
    if "business_date" in known:
        values["business_date"] = _date(values.get("business_date", default_date))
    nested = {"orders": Order, "entries": Entry, "payments": Payment, "deposits": Deposit}
    for key, inner in nested.items():
        if key in values:
            items = values[key]
            if not isinstance(items, list):
                raise ControlError(f"{name} {key} must be a list")
            day = values.get("business_date", default_date)
            values[key] = [_build(inner, item, day) for item in items]
    try:
        return cls(**values)
    except TypeError as exc:
        raise ControlError(f"{name}: {exc}") from None


def _date(value: object) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ControlError(f"business_date {value!r} is not a date; write YYYY-MM-DD") from None


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlError(f"{key} must be a whole number")
    return value


def control(emu: BrinkEmulator, method: str, path: str, query: str, body: bytes) -> ApiResponse:
    """Answer one control request (see the module docstring and the README of the emulator's report)."""
    what = path[len("/_emulator") :].strip("/")
    obj: Any = {}
    if method == "POST":
        obj, bad = parse_json(body)
        if bad is not None:
            return bad
        if not isinstance(obj, dict):
            return json_response(400, {"detail": "the body must be a JSON object"})
    try:
        token = obj.pop("location", None) if method == "POST" else dict(parse_qsl(query)).get("location")
        location = emu.location if token is None else emu.location_for(str(token))
    except KeyError:
        return json_response(404, {"detail": "no location with that LocationToken"})
    try:
        return _route(emu, location, method, what, obj)
    except (ControlError, FaultConfigError) as exc:
        return json_response(400, {"detail": str(exc)})
    except ValueError as exc:
        return json_response(400, {"detail": str(exc)})
    except PartyError as exc:
        return json_response(404, {"detail": str(exc)})


def _route(emu: BrinkEmulator, loc: Location, method: str, what: str, obj: dict[str, Any]) -> ApiResponse:
    if what == "parties" and method == "GET":
        return json_response(200, {"parties": [party_json(p) for p in loc.parties()]})
    if what == "parties" and method == "POST":
        return json_response(200, party_json(loc.put_party(_build(Party, obj))))
    if what == "parties/close" and method == "POST":
        closed = loc.close_party(_date(obj.get("business_date")), _int(obj, "table_id"))
        return json_response(200, party_json(closed))
    if what == "orders" and method == "POST":
        day, table = _date(obj.get("business_date")), _int(obj, "table_id")
        order = loc.add_order(day, table, _build(Order, obj.get("order"), day))
        return json_response(200, to_json(order))
    if what == "orders/set" and method == "POST":
        order_id = obj.pop("order_id", None)
        if not isinstance(order_id, int):
            raise ControlError("order_id must be a whole number")
        if any(v is not None and not isinstance(v, str) for v in obj.values()):
            raise ControlError('total, tax, balance ("nil" allowed) and closed_time are strings or null')
        return json_response(200, to_json(loc.set_order(order_id, **obj)))
    if what == "entries" and method == "POST":
        entry = loc.add_entry(_int(obj, "order_id"), _build(Entry, obj.get("entry")))
        return json_response(200, to_json(entry))
    if what in ("entries/void", "entries/delete") and method == "POST":
        voided = what == "entries/void"
        entry = loc.mark_entry(
            _int(obj, "order_id"), _int(obj, "entry_id"), voided=voided, deleted=not voided
        )
        return json_response(200, to_json(entry))
    if what == "payments" and method == "GET":
        return json_response(200, {"payments": [p.to_json() for p in loc.applied_payments()]})
    if what in ("payments", "deposits") and method == "POST":
        order_id = _int(obj, "order_id")
        party, _ = loc.order(order_id)
        if what == "payments":
            payment = loc.add_payment(order_id, _build(Payment, obj.get("payment"), party.business_date))
            return json_response(200, to_json(payment))
        deposit = loc.add_deposit(order_id, _build(Deposit, obj.get("deposit"), party.business_date))
        return json_response(200, to_json(deposit))
    if what == "style":
        if method == "POST":
            emu.set_style(str(obj.get("style")))
        return json_response(200, {"style": emu.style})
    if what == "force":
        if method == "POST":
            times = obj.get("times", 1)
            if times is not None and not isinstance(times, int):
                raise ControlError("times must be a whole number or null (always)")
            emu.force(
                str(obj.get("operation")),
                _int(obj, "code"),
                times=times,
                after_applying=bool(obj.get("after_applying", False)),
            )
        elif method == "DELETE":
            emu.clear_forced()
        return json_response(200, {"forced": [f.to_json() for f in emu.forced()]})
    if what == "faults":
        if method == "DELETE":
            emu.faults.clear()
        elif method == "POST":
            emu.faults.configure(obj)
        return json_response(200, emu.faults.state())
    if what == "latency":
        if method == "POST":
            emu.faults.set_profile(str(obj.get("profile")))
        return json_response(200, {"profile": emu.faults.profile})
    if what == "requests":
        if method == "DELETE":
            emu.clear_requests()
        return json_response(200, {"requests": emu.requests()})
    if what == "stats" and method == "GET":
        return json_response(200, emu.stats())
    if what == "clock" and method == "POST":
        advance = obj.get("advance")
        if not isinstance(advance, int | float) or isinstance(advance, bool):
            raise ControlError('give {"advance": seconds}')
        emu.clock.advance(float(advance))
        return json_response(200, {"now": emu.clock.now()})
    return json_response(404, {"detail": f"no control endpoint {method} /_emulator/{what[:60]}"})
