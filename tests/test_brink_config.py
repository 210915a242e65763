"""``[brink]`` in the config, and the business date a wall time belongs to."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.brink.business_date import business_date, parse_day_start
from terminal.config import ConfigError, parse_config

BASE: dict[str, Any] = {
    "terminal": {"products": ["espresso"], "description": "Kaffee"},
    "wallet": {"base_url": "http://127.0.0.1:9/wallet"},
}


def brink(**table: object) -> Any:
    return parse_config(
        {**BASE, "brink": {"url": "https://x.parpos.com/Ordering.svc", **table}}, Path("/etc/t/c.toml")
    )


def test_the_table_is_optional_and_read_with_its_defaults() -> None:
    assert parse_config(dict(BASE)).brink is None
    cfg = brink(access_token_file="brink.access", location_token_file="/etc/taptill/brink.location").brink
    assert cfg.url == "https://x.parpos.com/Ordering.svc"
    assert cfg.access_token_file == Path("/etc/t/brink.access")
    assert cfg.location_token_file == Path("/etc/taptill/brink.location")
    assert (cfg.timeout_s, cfg.business_day_starts, cfg.max_answer_bytes) == (5.0, dt.time(6), 1024 * 1024)
    assert brink(url="http://127.0.0.1:8080/Ordering.svc").brink.url.startswith("http://127.0.0.1")
    assert brink(
        url="http://localhost:8080/Ordering.svc", business_day_starts="04:30"
    ).brink.business_day_starts == dt.time(4, 30)


@pytest.mark.parametrize(
    ("table", "said"),
    [
        (
            {"url": "http://pos.example/Ordering.svc"},
            "[brink] url is http:// to pos.example: the access and location tokens would travel unencrypted; "
            "use the https:// Ordering.svc URL PAR gave you",
        ),
        (
            {"business_day_starts": "6:00"},
            "[brink] business_day_starts: '6:00' is not a time of day as HH:MM (24 h), e.g. \"06:00\"",
        ),
        ({"business_day_starts": "24:00"}, "[brink] business_day_starts: '24:00' is not a time"),
        ({"timeout_s": 600}, "[brink] timeout_s is 600; expected at most 60.0"),
        ({"max_answer_kib": 1}, "[brink] max_answer_kib is 1; expected at least 16"),
        (
            {"token_file": "x"},
            "[brink] has unknown key 'token_file'; known keys are: access_token_file, business_day_starts, "
            "location_token_file, max_answer_kib, timeout_s, url",
        ),
    ],
)
def test_mistakes_are_one_line_saying_how_to_fix(table: dict[str, object], said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        brink(**table)
    assert str(refused.value).startswith(said)
    assert "\n" not in str(refused.value)


def test_a_missing_url_is_named() -> None:
    with pytest.raises(ConfigError, match=r"\[brink\] url is missing"):
        parse_config({**BASE, "brink": {"timeout_s": 5}})


def test_the_business_day_runs_past_midnight() -> None:
    six = dt.time(6)
    assert business_date(dt.datetime(2024, 1, 16, 1, 30), six) == dt.date(2024, 1, 15)
    assert business_date(dt.datetime(2024, 1, 16, 5, 59, 59), six) == dt.date(2024, 1, 15)
    assert business_date(dt.datetime(2024, 1, 16, 6, 0), six) == dt.date(2024, 1, 16)
    assert business_date(dt.datetime(2024, 3, 1, 0, 0), six) == dt.date(2024, 2, 29)
    aware = dt.datetime(2024, 1, 16, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    assert business_date(aware, six) == dt.date(2024, 1, 15)  # its own wall clock, never converted
    assert business_date(dt.datetime(2024, 1, 16, 0, 0), dt.time(0)) == dt.date(2024, 1, 16)


@given(
    st.datetimes(min_value=dt.datetime(2000, 1, 2), max_value=dt.datetime(2100, 1, 1)),
    st.times().map(lambda t: t.replace(second=0, microsecond=0)),
)
def test_the_business_date_is_the_wall_time_shifted_back_by_the_day_start(
    when: dt.datetime, starts: dt.time
) -> None:
    shift = dt.timedelta(hours=starts.hour, minutes=starts.minute)
    got = business_date(when, starts)
    assert got == (when - shift).date()
    assert got in (when.date(), when.date() - dt.timedelta(days=1))
    assert (got == when.date()) == (when.time() >= starts)


@given(st.integers(0, 23), st.integers(0, 59))
def test_every_hh_mm_reads_back(hour: int, minute: int) -> None:
    assert parse_day_start(f"{hour:02d}:{minute:02d}") == dt.time(hour, minute)
