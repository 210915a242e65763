"""``taptill report`` and ``taptill journal --csv`` on a journal written through the journal's own API:
period boundaries, an empty period, CSV and JSON read back, filters, the chart as a real PNG."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from terminal.cli import main
from terminal.config import load_config
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal, SaleRecord
from terminal.report.chart import INSTALL_HINT
from terminal.report.export import CSV_FIELDS
from terminal.report.period import PeriodError, parse_time, period
from terminal.wallet.catalog import CACHE_KEY
from tests.terminal_lab import ERIKA, MAX, REPO, write_config

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
    sale = journal.record_sale(
        token_id=str(kw.pop("uid", MAX)),
        products=products,
        amount_cents=cents,
        description="Bar",
        tag=None,
        offline=bool(kw.pop("offline", False)),
        dispense=cents < 0,
    )
    _at(journal, sale, minutes)
    return sale


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
    journal.mark_rejected(rejected.id, "bad_product: 400: Insufficient balance")
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
            "products",
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
    assert data["rejected"] == [{"reason": "400: Insufficient balance", "count": 1, "cents": 250}]
    assert data["declined"] == [{"reason": "offline: balance too low", "count": 1}]  # 20:00 is out
    assert data["not_served"] == {"count": 1, "cents": 600}
    assert data["wallet"] == {"net_cents": 1000 - 250 - 600, "transactions": 3}
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
    assert (data["products"], data["hours"], data["wallet"]) == ([], [], {"net_cents": 0, "transactions": 0})


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
    assert by_kind[("rejected", "400: Insufficient balance")]["cents"] == "250"
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
