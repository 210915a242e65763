"""Scripted runs of the sender: good deliveries with duplicates and a reordered cancel, then bad bodies."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Literal

from terminal.emulator.yourbarmate.bad_bodies import bad_bodies
from terminal.emulator.yourbarmate.events import (
    bundle,
    cancel_delivery,
    item,
    request_delivery,
    sample_items,
)
from terminal.emulator.yourbarmate.sender import Sender, Sent

ScenarioName = Literal["deliveries", "bad", "all"]
SCENARIOS: tuple[ScenarioName, ...] = ("deliveries", "bad", "all")


def empties() -> list[dict[str, Any]]:
    """What a RETURN takes back: two cartons of empty gin bottles and three empty kegs."""
    return [
        item("2", "Gin", size=7, unit="dl", count=2, bundle_json=bundle("001", "CT", 6)),
        item("17", "Helles", size=20, unit="l", vessel_type="KG", count=3, vessel_id="K20"),
    ]


def rate_event(delivery_id: int, rng: random.Random) -> dict[str, Any]:
    """The event a rate run sends: a DELIVERY of the sample items, ~3 KB like a real order."""
    return request_delivery(delivery_id, sample_items(), rng=rng)


async def deliveries(sender: Sender, first_id: int) -> list[Sent]:
    """Delivery ``first_id`` (every unit) twice with one key, a RETURN with nullables left out, a delivery
    with nullables null and its cancel, and a cancel sent before its request (delivery ``first_id + 3``)."""
    rng = sender.rng
    out: list[Sent] = []
    first = request_delivery(first_id, sample_items(), rng=rng)
    out += await sender.send_duplicate(first, times=2)
    back = request_delivery(first_id + 1, empties(), delivery_type="RETURN", nullables="missing", rng=rng)
    out.append(await sender.send(back))
    kegs = [item("17", "Helles", size=20, unit="l", vessel_type="KG", count=2, price_cents=6400)]
    called_off = request_delivery(first_id + 2, kegs, nullables="null", rng=rng)
    out.append(await sender.send(called_off))
    out.append(await sender.send(cancel_delivery(called_off, rng=rng)))
    late = request_delivery(first_id + 3, kegs, rng=rng)
    out += await sender.send_reordered(late)
    return out


async def bad(sender: Sender, first_id: int) -> list[Sent]:
    """Every bad body of bad_bodies.py built on delivery ``first_id + 10``, then a valid one with a wrong
    password; none of them may change stock."""
    base: Mapping[str, Any] = request_delivery(first_id + 10, sample_items(), rng=sender.rng)
    out = [await sender.send_bad(b) for b in bad_bodies(base, rng=sender.rng)]
    out.append(await sender.send_wrong_credentials(base))
    return out


async def run_scenario(sender: Sender, name: ScenarioName, first_id: int) -> list[Sent]:
    """Run scenario ``name`` ("deliveries", "bad" or "all") with delivery ids from ``first_id`` on."""
    out: list[Sent] = []
    if name in ("deliveries", "all"):
        out += await deliveries(sender, first_id)
    if name in ("bad", "all"):
        out += await bad(sender, first_id)
    return out
