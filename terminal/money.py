"""Formats integer cents for people, by locale (``2,90 €`` for de, ``€2.90`` for en)."""

from __future__ import annotations

CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "CHF": "CHF"}


def format_cents(cents: int, locale: str = "de", currency: str = "EUR") -> str:
    """Format an amount in cents; negative amounts keep their sign in front."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    symbol = CURRENCY_SYMBOLS.get(currency.upper(), currency.upper())
    if locale.lower().startswith("en"):
        return f"{sign}{symbol}{whole:,}.{frac:02d}"
    grouped = f"{whole:,}".replace(",", ".")
    return f"{sign}{grouped},{frac:02d} {symbol}"
