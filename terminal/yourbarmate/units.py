"""yourbarmate's vessel units as whole millilitres, grams or pieces (Decimal arithmetic, never float).

Rule: the exact amount (``vessel_count × size × unit factor``) is rounded to a whole ml or g, half up
(0.5 ml becomes 1 ml); a serving is tens of ml or g, so the rounding never decides a pour. Pieces are
never rounded (half a lemon is refused, not made one), and an amount above 0 that would round to 0 is
refused rather than recorded as nothing.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

Measure = Literal["ml", "g", "pieces"]
MEASURES: tuple[Measure, ...] = ("ml", "g", "pieces")

# unit -> (what it measures, how many of the whole unit one of it is)
UNITS: dict[str, tuple[Measure, Decimal]] = {
    "l": ("ml", Decimal(1000)),
    "dl": ("ml", Decimal(100)),
    "cl": ("ml", Decimal(10)),
    "ml": ("ml", Decimal(1)),
    "kg": ("g", Decimal(1000)),
    "g": ("g", Decimal(1)),
    "quantity": ("pieces", Decimal(1)),
}
MAX_AMOUNT = 10**12  # ml, g or pieces in one item: a thousand tonnes; more is a broken payload


class UnitError(ValueError):
    """A unit yourbarmate does not document, or an amount that is not a sane positive quantity."""


def measure_of(unit: str) -> Measure:
    """The measure of ``unit`` (one of ``UNITS``); UnitError names the accepted units otherwise."""
    try:
        return UNITS[unit][0]
    except KeyError:
        raise UnitError(f"unit {unit!r} is none of {', '.join(UNITS)}") from None


def whole_amount(count: Decimal, size: Decimal, unit: str) -> int:
    """``count × size`` of ``unit`` in whole ml, g or pieces (rounded half up); UnitError when the
    result is not positive or beyond ``MAX_AMOUNT``."""
    measure_of(unit)
    exact = count * size * UNITS[unit][1]
    if not exact.is_finite() or exact <= 0:
        raise UnitError(f"amount {count} × {size} {unit} is not a positive quantity")
    if exact > MAX_AMOUNT:
        raise UnitError(f"amount {count} × {size} {unit} is beyond {MAX_AMOUNT}")
    measure = UNITS[unit][0]
    if measure == "pieces" and exact != exact.to_integral_value():
        raise UnitError(f"amount {count} × {size} {unit} is {exact} pieces, not a whole number of pieces")
    whole = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if whole == 0:
        raise UnitError(f"amount {count} × {size} {unit} rounds to 0 {measure}; it is not 0")
    return whole


def parse_quantity(text: str, measure: Measure) -> int:
    """A person's stock count: ``20l``, ``500ml``, ``3kg``, ``250g`` or a bare number of pieces, as whole
    units of ``measure`` (ml and g rounded half up); UnitError with a one-line reason otherwise: a negative
    amount, a fraction of a piece, or an amount above 0 that rounds to 0."""
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number) :] or "quantity"
    try:
        amount = Decimal(number.replace(",", "."))
    except ArithmeticError:
        raise UnitError(f"{text!r} is not an amount; give e.g. 20l, 500ml, 3kg or 12") from None
    if unit not in UNITS:
        raise UnitError(f"{text!r} has unit {unit!r}; use l, dl, cl, ml, kg, g or none for pieces")
    if amount.is_finite() and amount == 0:
        return 0  # nothing left is the same in every unit
    if UNITS[unit][0] != measure:
        wanted = {"ml": "a volume (l, dl, cl, ml)", "g": "a weight (kg, g)", "pieces": "a number of pieces"}
        raise UnitError(f"{text!r} is not {wanted[measure]}, which this product is counted in")
    if not amount.is_finite() or amount < 0:
        raise UnitError(f"{text!r} is below zero; a count is an amount of zero or more")
    if measure == "pieces" and amount != amount.to_integral_value():
        raise UnitError(f"{text!r} is not a whole number of pieces; count whole pieces")
    try:
        return whole_amount(Decimal(1), amount, unit)
    except UnitError:
        if amount * UNITS[unit][1] > MAX_AMOUNT:
            raise UnitError(f"{text!r} is more than {MAX_AMOUNT} {measure}; give what was counted") from None
        raise UnitError(
            f"{text!r} is less than half a {measure} and would be recorded as 0; give it in {measure} "
            "(or 0 if none is left)"
        ) from None
