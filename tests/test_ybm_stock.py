"""The stock ledger's figures from events, arrivals, sales and counts (ordered -> received -> sold ->
counted), and ``taptill stock`` with its one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from terminal.config import Config, load_config
from terminal.journal import Journal
from terminal.ops import stock
from terminal.yourbarmate.config import StockProduct
from terminal.yourbarmate.parse import parse_body
from terminal.yourbarmate.stock import Applied, Figures, StockLedger, connect, stock_figures
from tests.terminal_lab import taptill
from tests.ybm_lab import PRODUCTS, ReceiverLab, cancel_event, item, request_event

CONFIG = """
[terminal]
products = ["gin", "helles", "nuts", "crisps"]
description = "Bar"
state_dir = "{state}"
[wallet]
base_url = "http://127.0.0.1:9/wallet"
[yourbarmate]
password_file = "ybm.password"
low_servings = 10
[yourbarmate.products]
"2" = {{ product = "gin", serving_ml = 40 }}
"17" = {{ product = "helles", serving_ml = 500 }}
"30" = {{ product = "nuts", serving_g = 50 }}
"40" = {{ product = "crisps", serving = 1 }}
"""


def config_file(folder: Path) -> Path:
    path = folder / "config.toml"
    path.write_text(CONFIG.format(state=folder))
    return path


def figures(journal_path: Path) -> dict[str, Figures]:
    journal = Journal.open_read_only(journal_path)
    try:
        return {f.product: f for f in stock_figures(journal.query, PRODUCTS, 10)}
    finally:
        journal.close()


def sell(journal_path: Path, *products: str, declined: bool = False) -> None:
    journal = Journal.open(journal_path)
    try:
        if declined:
            journal.record_decline(
                token_id="C", products=list(products), amount_cents=-100, description="x", reason="offline"
            )
        else:
            journal.record_sale(
                token_id="C",
                products=list(products),
                amount_cents=-100,
                description="x",
                tag=None,
                offline=False,
            )
    finally:
        journal.close()


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return load_config(config_file(tmp_path))


def test_ordered_then_received_then_sold_then_counted(tmp_path: Path, cfg: Config) -> None:
    lines: list[str] = []
    with ReceiverLab(tmp_path) as lab:
        lab.post(request_event("r1", "D1", [item("2", 12, 7, "dl"), item("17", 2, 30, "l")]))
        lab.post(request_event("r2", "D2", [item("2", 6, 7, "dl")]))
        lab.post(cancel_event("c2", "D2"))
        gin = figures(lab.journal_path)["gin"]
        assert (gin.ordered, gin.on_hand, gin.sold, gin.sold_out) == (8400, 0, 0, True)

        stock.receive(cfg, "D1", lines.append)
        assert lines[-1] == "received delivery D1: gin +8400 ml, helles +60000 ml"
        sell(lab.journal_path, "gin", "gin", "helles")  # a double gin and a beer
        sell(lab.journal_path, "gin", declined=True)  # declined: nothing poured
        now = figures(lab.journal_path)
        assert (now["gin"].ordered, now["gin"].on_hand, now["gin"].sold) == (0, 8400 - 80, 80)
        assert now["gin"].servings_left == 208 and not now["gin"].low
        assert (now["helles"].on_hand, now["helles"].servings_left) == (59_500, 119)

        stock.set_count(cfg, "gin", "0.3l", lines.append)  # staff counted what is left
        sell(lab.journal_path, "gin")
        after = figures(lab.journal_path)["gin"]
        assert (after.counted, after.sold, after.on_hand, after.servings_left) == (300, 40, 260, 6)
        assert after.low and not after.sold_out
        for _ in range(6):
            sell(lab.journal_path, "gin")
        assert figures(lab.journal_path)["gin"].sold_out  # 20 ml left: less than one serving

        with pytest.raises(stock.StockCommandError, match="received already"):
            stock.receive(cfg, "D1", lines.append)
        with pytest.raises(stock.StockCommandError, match="cancelled"):
            stock.receive(cfg, "D2", lines.append)
        with pytest.raises(stock.StockCommandError, match="no delivery D9"):
            stock.receive(cfg, "D9", lines.append)


def test_a_return_of_empties_changes_nothing_on_hand(tmp_path: Path, cfg: Config) -> None:
    with ReceiverLab(tmp_path) as lab:
        lab.post(request_event("r1", "R1", [item("17", 4, 30, "l")], kind="RETURN"))
        assert lab.moves() == []
        with pytest.raises(stock.StockCommandError, match="return of empties"):
            stock.receive(cfg, "R1", print)


def test_taptill_stock_shows_json_and_refuses_in_one_line(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    with ReceiverLab(tmp_path) as lab:
        lab.post(request_event("r1", 77, [item("30", 3, 2.5, "kg"), item("40", 24, 1, "quantity")]))
    taptill("stock", "receive", "77", "--config", str(config))
    taptill("stock", "--config", str(config), "set", "crisps", "20")
    data = json.loads(taptill("stock", "--json", "--config", str(config)).stdout)
    by = {p["product"]: p for p in data["products"]}
    assert (by["nuts"]["on_hand"], by["nuts"]["servings_left"], by["nuts"]["measure"]) == (7500, 150, "g")
    assert (by["crisps"]["on_hand"], by["crisps"]["counted"]) == (20, 20)
    assert data["deliveries"] == [
        {
            "delivery_id": "77",
            "type": "DELIVERY",
            "requested_at": data["deliveries"][0]["requested_at"],
            "state": "received",
        }
    ]
    table = taptill("stock", "--config", str(config)).stdout
    assert "nuts" in table and "7500 g" in table
    for args, said in [
        (("set", "gin", "3kg"), "is not a volume"),
        (("set", "rum", "1l"), "in no [yourbarmate.products] entry"),
        (("set", "gin", "lots"), "is not an amount"),
        (("set", "gin", "-1l"), "'-1l' is below zero"),  # reaches our parser, not argparse's "required"
        (("set", "crisps", "2.5"), "not a whole number of pieces"),
        (("set", "gin", "0.0004l"), "would be recorded as 0"),
        (("receive", "404"), "no delivery 404 was requested"),
    ]:
        proc = taptill("stock", *args, "--config", str(config), check=False)
        assert proc.returncode == 1 and said in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_taptill_status_counts_the_webhook_and_warns_of_low_and_sold_out(tmp_path: Path, cfg: Config) -> None:
    config = config_file(tmp_path)
    with ReceiverLab(tmp_path) as lab:
        lab.post(request_event("r1", "D1", [item("2", 1, 3, "dl")]))
        lab.post(request_event("r1", "D1", [item("2", 1, 3, "dl")]))
        lab.post(None, raw=b"{broken")
        lab.post(None, auth=("ybm", "guess"), raw=b"{}")
        stock.receive(cfg, "D1", print)
        stock.set_count(cfg, "helles", "30l", print)
    data = json.loads(taptill("status", "--json", "--config", str(config)).stdout)["yourbarmate"]
    counts = {k: data[k] for k in ("accepted", "duplicate", "quarantined", "refused_auth", "too_large")}
    assert counts == {"accepted": 1, "duplicate": 1, "quarantined": 1, "refused_auth": 1, "too_large": 0}
    assert data["quarantine_total"] == 1 and data["running"] is False
    assert "LOW: gin, 7 serving(s) left" in data["warnings"]
    assert "SOLD OUT: nuts, 0 serving(s) left" in data["warnings"]
    assert not any("helles" in w for w in data["warnings"])  # 60 servings
    text = taptill("status", "--config", str(config)).stdout
    assert "yourbarmate:     1 event(s) accepted, 1 duplicate(s), 1 quarantined" in text


def test_taptill_stock_lists_each_delivery_once_open_ones_newest_first(tmp_path: Path, cfg: Config) -> None:
    config = config_file(tmp_path)
    with ReceiverLab(tmp_path) as lab:
        lab.post(request_event("r1", 100, [item("40", 24, 1, "quantity")]))
        lab.post(request_event("r2", 200, [item("40", 12, 1, "quantity")]))
        lab.post(request_event("r2-again", 200, [item("40", 12, 1, "quantity")]))  # sent again, new key
        lab.post(request_event("r3", 300, [item("40", 6, 1, "quantity")]))
        lab.post(request_event("r4", 400, [item("40", 6, 1, "quantity")]))
        lab.post(cancel_event("c4", 400))
        stock.receive(cfg, "100", print)
    lines = taptill("stock", "--config", str(config)).stdout.splitlines()
    listed = [line.split(" (")[0] for line in lines if line.startswith("delivery ")]
    assert listed == ["delivery 300", "delivery 200"]  # open, newest first, 200 once
    assert "2 received or cancelled deliveries not listed: taptill stock --all" in lines
    (crisps,) = [line for line in lines if line.startswith("crisps")]
    assert "24 pieces" in crisps and "pcs" not in crisps  # as `taptill status` spells it
    every = taptill("stock", "--all", "--config", str(config)).stdout.splitlines()
    listed = [line.split(" (")[0] for line in every if line.startswith("delivery ")]
    assert listed == ["delivery 400", "delivery 300", "delivery 200", "delivery 100"]
    assert not any("not listed" in line for line in every)
    data = json.loads(taptill("stock", "--json", "--config", str(config)).stdout)
    assert [d["delivery_id"] for d in data["deliveries"]] == ["400", "300", "200", "100"]


def test_a_body_quarantined_by_our_config_is_replayed_once_after_the_fix(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    with ReceiverLab(tmp_path) as lab:  # gin counted in ml, as the config file says too
        lab.post(request_event("k-gin", "G1", [item("2", 3, 1, "kg")]))  # the supplier sells it by weight
        lab.post(None, raw=b"{broken")
        assert lab.moves() == []
    listed = taptill("stock", "--quarantine", "--config", str(config)).stdout.splitlines()
    assert listed[0].startswith("#2 ") and "body is not UTF-8 JSON" in listed[0]
    assert listed[1].startswith("#1 ") and "k-gin" in listed[1] and "counted in ml" in listed[1]
    assert listed[2] == "after fixing [yourbarmate.products]: taptill stock replay ID applies one"
    status = json.loads(taptill("status", "--json", "--config", str(config)).stdout)["yourbarmate"]
    assert status["quarantine_waiting"] == 2
    assert any(w.startswith("QUARANTINE: 2 webhook body(ies) not applied") for w in status["warnings"])
    doctor = json.loads(taptill("doctor", "--json", "--config", str(config), check=False).stdout)
    (check,) = [c for c in doctor if c["name"] == "ybm-quarantine"]
    assert check["status"] == "WARN" and "2 webhook body(ies)" in check["detail"], check

    still = taptill("stock", "replay", "1", "--config", str(config), check=False)
    assert still.returncode == 1 and "#1 still fails: " in still.stderr and "counted in ml" in still.stderr
    assert len(still.stderr.strip().splitlines()) == 1
    config.write_text(config.read_text().replace('"gin", serving_ml = 40', '"gin", serving_g = 40'))
    done = taptill("stock", "replay", "1", "--config", str(config))
    assert done.stdout.strip() == "#1 applied: request-delivery G1"
    again = taptill("stock", "replay", "#1", "--config", str(config))
    assert again.stdout.strip() == "#1 was applied already (request-delivery G1, key k-gin); nothing changed"
    journal = Journal.open_read_only(lab.journal_path)
    try:
        moves = journal.query("SELECT product, kind, amount, ref FROM stock_moves", ())
    finally:
        journal.close()
    assert [tuple(m) for m in moves] == [("gin", "ordered", 3000, "G1")]  # once
    for args, said in [
        (("replay", "9"), "no quarantined body #9"),
        (("replay", "x"), "is not a quarantine id"),
    ]:
        proc = taptill("stock", *args, "--config", str(config), check=False)
        assert proc.returncode == 1 and said in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    left = taptill("stock", "--quarantine", "--config", str(config)).stdout.splitlines()
    assert [line.split(" ")[0] for line in left[:-1]] == ["#2"]
    every = taptill("stock", "--quarantine", "--all", "--config", str(config)).stdout.splitlines()
    assert every[1].startswith("#1 ") and every[1].endswith("(applied)")


def test_a_count_before_any_sale_counts_every_later_sale_across_a_clock_step(
    tmp_path: Path, cfg: Config
) -> None:
    with ReceiverLab(tmp_path) as lab:
        stock.set_count(cfg, "gin", "1l", print)  # no sale journaled yet
        sell(lab.journal_path, "gin")
        journal = Journal.open(lab.journal_path)
        try:  # the clock stepped back before that sale: it carries a time before the count's
            journal.execute_all([("UPDATE sales SET created_at = '2000-01-01T00:00:00.000+00:00'", ())])
        finally:
            journal.close()
        gin = figures(lab.journal_path)["gin"]
        assert (gin.counted, gin.sold, gin.on_hand) == (1000, 40, 960)


def test_a_resent_event_is_a_duplicate_even_when_its_mapping_changed_since(tmp_path: Path) -> None:
    with ReceiverLab(tmp_path) as lab:
        lab.post(request_event("r1", "D1", [item("2", 12, 7, "dl")]))
        ledger = StockLedger(connect(lab.journal_path), {"2": StockProduct("gin", 40, "g")})
        try:  # staff moved gin to grams meanwhile; yourbarmate resends (the 200 was lost)
            event = parse_body(json.dumps(request_event("r1", "D1", [item("2", 12, 7, "dl")])).encode())
            assert ledger.apply(event, "{}").applied is Applied.DUPLICATE
        finally:
            ledger.close()
