"""Card UIDs normalised once (uppercase hex, 4/7/8/10 bytes) and cents formatted per locale."""

from __future__ import annotations

import pytest

from terminal.money import format_cents
from terminal.uid import InvalidUid, normalise_uid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("04a1b2c3d4e5f6", "04A1B2C3D4E5F6"),
        ("04:A1:B2:C3:D4:E5:F6", "04A1B2C3D4E5F6"),
        ("04-a1-b2-c3-d4-e5-f6", "04A1B2C3D4E5F6"),
        (" 04 a1 b2 c3 d4 e5 f6\n", "04A1B2C3D4E5F6"),
        ("0xDEADBEEF", "DEADBEEF"),
        ("0XdeadBEEF", "DEADBEEF"),
        ("deadbeef", "DEADBEEF"),
        ("0102030405060708", "0102030405060708"),
        ("01020304050607080910", "01020304050607080910"),
        (b"\xde\xad\xbe\xef", "DEADBEEF"),
        (bytearray(b"\x04\xa1\xb2\xc3\xd4\xe5\xf6"), "04A1B2C3D4E5F6"),
    ],
)
def test_valid_uids_normalise_to_uppercase_hex(raw: str | bytes, expected: str) -> None:
    assert normalise_uid(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "0x",
        "DEADBEE",  # odd number of digits
        "DEADBE",  # 3 bytes
        "0405060708",  # 5 bytes
        "040506070809",  # 6 bytes
        "04A1B2C3D4E5F6A1B2",  # 9 bytes
        "04A1B2C3D4E5F6A1B2C3D4",  # 11 bytes
        "DEADBEEG",
        "DE.AD.BE.EF",
        "DEAD_BEEF",
        "ＤＥＡＤＢＥＥＦ",  # fullwidth letters are not what a reader sends
        "\ufb00\ufb00\ufb00\ufb00",  # "ﬀ" upper-cases to "FF": still not hex
        "٠٤٠٤٠٤٠٤",  # Arabic-Indic digits
        b"",
        b"\x01\x02\x03",
        "DEADBEEF\n001122",  # a newline is not a separator: 7 bytes split in two lines
        "04\tA1B2C3D4E5F6",
        "DEAD\x00BEEF",
        "DEADBEEF\u2028001122",
    ],
)
def test_anything_else_is_an_invalid_uid(raw: str | bytes) -> None:
    with pytest.raises(InvalidUid):
        normalise_uid(raw)


def test_invalid_uid_messages_are_short_and_one_line() -> None:
    with pytest.raises(InvalidUid) as info:
        normalise_uid("Z" * 10_000)
    assert len(str(info.value)) < 120 and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("cents", "locale", "currency", "expected"),
    [
        (0, "de", "EUR", "0,00 €"),
        (5, "de", "EUR", "0,05 €"),
        (250, "de", "EUR", "2,50 €"),
        (-250, "de", "EUR", "-2,50 €"),
        (123456789, "de", "EUR", "1.234.567,89 €"),
        (290, "en", "EUR", "€2.90"),
        (-1, "en", "USD", "-$0.01"),
        (123456789, "en_GB", "GBP", "£1,234,567.89"),
        (1000, "de", "chf", "10,00 CHF"),
        (1000, "de", "SEK", "10,00 SEK"),
    ],
)
def test_format_cents(cents: int, locale: str, currency: str, expected: str) -> None:
    assert format_cents(cents, locale, currency) == expected


@pytest.mark.parametrize("cents", [-(10**12), -101, -100, -99, -1, 0, 1, 99, 100, 101, 10**12])
def test_format_cents_round_trips_to_the_same_integer(cents: int) -> None:
    for locale in ("de", "en"):
        text = format_cents(cents, locale, "XYZ").replace("XYZ", "").strip()
        digits = "".join(ch for ch in text if ch.isdigit())
        assert int(digits) * (-1 if text.startswith("-") else 1) == cents
