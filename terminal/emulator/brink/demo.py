"""The emulator's demo location: the seed's own party, and tables 1..12 (`taptill demo --mode table`).

Bills need every denomination product (10.00, 1.00, 0.10, 0.01); table 3 has several orders, table 4 a
gift card and a voided line, table 5 a partial payment (and a deleted one) and deposits, table 6 gives
``Balance``. Every amount has two decimals, so every demo bill can be paid.
"""

from __future__ import annotations

from datetime import date

from terminal.emulator.brink.parties import Deposit, Entry, Order, Party, Payment

SEED_DATE = date(2024, 1, 15)
TABLES = range(1, 13)


def seed_party() -> Party:
    """The party of the seed's example answer (table 5 on 2024-01-15), rendered there byte for byte."""
    steak = Entry(1, "Steak Dinner", "24.99", tax="2.00", item_id=301, note="Medium rare")
    order = Order(99001, [steak], name="Guest 1", number=2001, balance="0.00")
    return Party(50001, 5, SEED_DATE, [order], name="Table 5")


def _items(*lines: tuple[str, str]) -> list[Entry]:
    return [Entry(n, text, price, item_id=400 + n) for n, (text, price) in enumerate(lines, start=1)]


def demo_parties(business_date: date) -> list[Party]:
    """Tables 1..12 on ``business_date``, each with an open bill (amounts in the comments are its due)."""
    d = business_date
    parties = [
        Party(60001, 1, d, [Order(70101, _items(("Pizza Margherita", "9.90"), ("Cola", "1.21")))]),  # 11.11
        Party(
            60002,
            2,
            d,
            [Order(70201, _items(("Schnitzel", "16.90"), ("Bier 0,5", "4.60"), ("Espresso", "2.39")))],
        ),  # 23.89
        Party(
            60003,
            3,
            d,
            [
                Order(70301, _items(("Burger", "13.50"), ("Fries", "4.20")), name="Guest 1"),
                Order(70302, _items(("Salad", "8.75"), ("Water", "2.30")), name="Guest 2"),
                Order(70303, _items(("Tiramisu", "5.60"), ("Wine", "6.44")), name="Guest 3"),
            ],
            size=3,
        ),  # 40.79
        Party(
            60004,
            4,
            d,
            [
                Order(
                    70401,
                    [
                        Entry(1, "Pasta", "12.40", item_id=411),
                        Entry(2, "Gift card", "25.00", item_id=900, gift_card=True),
                        Entry(3, "Wine (sent back)", "7.50", item_id=412, voided=True),
                        Entry(4, "Typo line", "99.99", item_id=413, deleted=True),
                        Entry(5, "Lemonade", "3.21", item_id=414),
                    ],
                )
            ],
        ),  # 40.61
        Party(
            60005,
            5,
            d,
            [
                Order(
                    70501,
                    _items(("Steak", "28.90"), ("Red wine", "14.80"), ("Dessert", "7.63")),
                    payments=[
                        Payment(1, "20.00", 1, d),
                        Payment(2, "5.00", 1, d, deleted=True),
                    ],
                    deposits=[
                        Deposit(1, "10.00", d),
                        Deposit(2, "3.00", d, applied=False),
                        Deposit(3, "4.00", d, deleted=True),
                        Deposit(4, "-4.00", d, reversal=True, original_id=3),
                    ],
                )
            ],
        ),  # 51.33 - 20.00 - 10.00 = 21.33
        Party(60006, 6, d, [Order(70601, _items(("Menu", "31.00"), ("Juice", "3.47")), balance="34.47")]),
    ]
    more = [
        ("Kaffee", "3.30"),
        ("Kuchen", "4.12"),
        ("Tee", "2.90"),
        ("Toast", "5.55"),
        ("Soup", "6.89"),
        ("Platter", "19.99"),
    ]
    for table, (text, price) in zip(range(7, 13), more, strict=True):
        lines = _items((text, price), ("Water", "1.11"), ("Snack", f"{table}.{table:02d}"))
        parties.append(Party(60000 + table, table, d, [Order(70001 + table * 100, lines)]))
    return parties
