"""The Prometheus endpoint ([metrics], issue 16): a real ``taptill run`` scraped over HTTP while taps run
against the wallet emulator, its text read by prometheus_client's parser and checked by promtool; its
authentication and limits; the config's rules; and the dashboard and alert rules shipped for a fleet."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from terminal import __version__
from terminal.config import ConfigError, parse_config
from terminal.effects import Charge
from terminal.emulator.wallet import WalletEmulator
from terminal.metrics.collector import EXPORTED
from terminal.metrics.taps import share
from terminal.model import ProductId
from tests.terminal_lab import (
    ERIKA,
    MAX,
    REPO,
    STRANGER,
    TerminalProcess,
    journal_lines,
    settled,
    wait_for,
    write_config,
)

MONITORING = REPO / "provisioning" / "monitoring"
TOKEN = "metrics-bearer-7f3a9c1e5b"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def real_wallet() -> Iterator[WalletEmulator]:
    """The real server's flavour, answering as slowly as a real pretix (POST 150-400 ms)."""
    with WalletEmulator.demo("real", latency="real") as emulator:
        yield emulator


def metrics_config(directory: Path, wallet: WalletEmulator, table: str) -> Path:
    token = directory / "metrics.token"
    token.touch(mode=0o600)
    token.write_text(TOKEN + "\n")
    return write_config(directory, wallet, extra=f"\n[metrics]\n{table}\n")


def endpoint(term: TerminalProcess) -> str:
    found = re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", term.log())
    assert found, term.log()
    return found.group(1)


def scrape(url: str, token: str | None = TOKEN) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(url, headers=headers, timeout=10.0)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text


def samples(text: str) -> Samples:
    """Every sample by (name, labels), as prometheus_client's own parser reads the text."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def promtool_metrics(text: str) -> None:
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_running_terminal_exports_its_taps_sales_backlog_and_state(
    tmp_path: Path, real_wallet: WalletEmulator
) -> None:
    config = metrics_config(tmp_path, real_wallet, 'listen = "127.0.0.1:0"\ntoken_file = "metrics.token"')
    before_start = time.time()
    term = TerminalProcess(config)
    try:
        url = endpoint(term)
        first = samples(scrape(url))
        assert value(first, "taptill_taps_total") == 0
        lines = [term.send(f"tap-wait {uid}") for uid in (MAX, ERIKA, STRANGER)]
        assert [line.split()[0] for line in lines] == ["approved", "approved", "declined:"], lines
        wait_for(lambda: settled(config, 3), what="the two sales to be booked")
        online_text = scrape(url)
        online = samples(online_text)

        real_wallet.faults.set_down(True)  # the server goes away: the next sale waits in the outbox
        offline_line = term.send(f"tap-wait {MAX}")
        assert offline_line.startswith("approved"), offline_line
        offline = samples(scrape(url))
        real_wallet.faults.set_down(False)
        wait_for(lambda: settled(config, 4), what="the offline sale to be delivered")
        back = samples(scrape(url))
    finally:
        assert term.stop() == 0
    product = "1"  # the real flavour's espresso
    assert value(online, "taptill_taps_total") == 3
    assert value(online, "taptill_decisions_total", outcome="approved", reason="online") == 2
    assert value(online, "taptill_decisions_total", outcome="declined", reason="unknown_card") == 1
    assert value(online, "taptill_sales_total", product=product, kind="debit") == 2
    sold = [-s["amount_cents"] for s in journal_lines(config) if s["state"] == "done"]
    assert value(back, "taptill_sales_cents_total", product=product, kind="debit") == sum(sold) == 3 * 250
    assert value(online, "taptill_outbox_pending", destination="wallet") == 0
    assert value(online, "taptill_wallet_server_up") == 1
    assert value(online, "taptill_reader_up") == 1
    assert before_start <= value(online, "taptill_wallet_last_contact_timestamp_seconds") <= time.time()
    assert value(online, "taptill_build_info", version=__version__) == 1
    assert value(online, "taptill_journal_readable") == 1
    assert value(online, "taptill_journal_size_bytes") > 0

    assert value(offline, "taptill_decisions_total", outcome="approved", reason="offline") == 1
    assert value(offline, "taptill_outbox_pending", destination="wallet") == 1
    assert value(offline, "taptill_outbox_oldest_age_seconds", destination="wallet") >= 0
    assert value(offline, "taptill_wallet_server_up") == 0
    assert value(back, "taptill_outbox_pending", destination="wallet") == 0
    assert value(back, "taptill_wallet_server_up") == 1
    assert value(back, "taptill_taps_total") == 4
    assert {name for name, _ in back} <= EXPORTED
    promtool_metrics(online_text)


def test_the_endpoint_asks_for_the_token_takes_no_body_and_serves_one_path(
    tmp_path: Path, real_wallet: WalletEmulator
) -> None:
    config = metrics_config(tmp_path, real_wallet, 'listen = "127.0.0.1:0"\ntoken_file = "metrics.token"')
    term = TerminalProcess(config)
    try:
        url = endpoint(term)
        with httpx.Client(timeout=10.0) as http:
            bare = http.get(url)
            assert bare.status_code == 401
            assert bare.headers["www-authenticate"].startswith("Bearer")
            assert http.get(url, headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
            assert http.get(url, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
            good = {"Authorization": f"Bearer {TOKEN}"}
            assert http.request("GET", url, headers=good, content=b"x" * 10).status_code == 413
            big = http.request("GET", url, headers=good, content=b"x" * 2_000_000)
            assert big.status_code == 413
            assert http.post(url, headers=good, content=b"").status_code == 405
            assert http.get(url.replace("/metrics", "/"), headers=good).status_code == 404
            assert http.get(url + "/x", headers=good).status_code == 404
            assert http.get(url, headers=good).status_code == 200  # still serving after all that
    finally:
        assert term.stop() == 0
    assert TOKEN not in term.log()


def test_metrics_are_off_by_default_and_nothing_listens(tmp_path: Path, real_wallet: WalletEmulator) -> None:
    term = TerminalProcess(write_config(tmp_path, real_wallet))
    try:
        assert term.send(f"tap-wait {MAX}").startswith("approved")
        assert listening_sockets(term.proc.pid) == set()
    finally:
        assert term.stop() == 0
    assert "metrics at" not in term.log()


def listening_sockets(pid: int) -> set[int]:
    """Inodes of the TCP sockets (v4 and v6) process ``pid`` holds in the LISTEN state."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            held.add(int(target[8:-1]))
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening.add(int(fields[9]))
    return held & listening


BASE = {
    "terminal": {"products": ["espresso"], "description": "Kaffee"},
    "wallet": {"base_url": "http://127.0.0.1:9/wallet"},
}


def with_metrics(table: dict[str, object]) -> dict[str, object]:
    return {**BASE, "metrics": table}


def test_config_metrics_absent_means_off_and_loopback_needs_no_token() -> None:
    assert parse_config(dict(BASE)).metrics is None
    assert parse_config(with_metrics({})).metrics is None
    local = parse_config(with_metrics({"listen": "127.0.0.1:9464"})).metrics
    assert local is not None and (local.host, local.port, local.token_file) == ("127.0.0.1", 9464, None)
    six = parse_config(with_metrics({"listen": "[::1]:9464"})).metrics
    assert six is not None and six.loopback
    remote = parse_config(with_metrics({"listen": "0.0.0.0:9464", "token_file": "/etc/taptill/m.token"}))
    assert remote.metrics is not None and remote.metrics.token_file == Path("/etc/taptill/m.token")


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ({"listen": "0.0.0.0:9464"}, "[metrics] listen '0.0.0.0:9464' is reachable from other machines"),
        ({"listen": "10.0.0.5:9464"}, "needs token_file"),
        ({"listen": "9464"}, "[metrics] listen is '9464'; expected HOST:PORT"),
        ({"listen": "127.0.0.1:99999"}, "expected HOST:PORT"),
        ({"token_file": "/etc/taptill/m.token"}, "[metrics] has token_file but no listen"),
        ({"listen": "127.0.0.1:9464", "port": 1}, "[metrics] has unknown key 'port'"),
    ],
)
def test_config_metrics_errors_are_one_line(table: dict[str, object], said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(with_metrics(table))
    assert said in str(refused.value)
    assert "\n" not in str(refused.value)


@given(
    amount=st.integers(min_value=-100_000, max_value=100_000),
    prices=st.lists(
        st.one_of(st.none(), st.integers(min_value=-5000, max_value=5000)), min_size=1, max_size=6
    ),
)
def test_a_sales_money_is_shared_out_to_the_cent(amount: int, prices: list[int | None]) -> None:
    products = tuple(f"p{i}" for i in range(len(prices)))
    charge = Charge(uid="04", products=products, amount_cents=amount, online=True, balance_before=None)
    listed: dict[ProductId, int | None] = dict(zip(products, prices, strict=True))
    parts = share(charge, lambda product: listed.get(product))
    assert sum(parts) == abs(amount)
    assert all(p >= 0 for p in parts)


def test_a_cart_is_shared_by_the_catalog_prices() -> None:
    charge = Charge(
        uid="04", products=("beer", "nuts", "beer"), amount_cents=-1050, online=True, balance_before=0
    )
    prices: dict[ProductId, int] = {"beer": 450, "nuts": 150}
    assert share(charge, lambda product: prices.get(product)) == [450, 150, 450]


def test_the_alert_rules_pass_promtool_and_fire_for_a_terminal_in_trouble() -> None:
    """alerts_test.yml: backlog over 10 min, reader offline, held sales, server offline; not for bar2."""
    checked = subprocess.run(
        ["promtool", "check", "rules", str(MONITORING / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    tested = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=MONITORING,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def names_in(text: str) -> set[str]:
    return set(re.findall(r"\btaptill_[a-z0-9_]+", text)) - {"taptill_fleet"}


def test_the_dashboard_and_alerts_use_only_metrics_the_terminal_exports() -> None:
    dashboard = json.loads((MONITORING / "grafana-fleet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set().union(*(names_in(e) for e in exprs))
    assert used, "the dashboard queries no taptill metric"
    assert used <= EXPORTED, used - EXPORTED
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "instance")
    assert names_in(variable["definition"]) <= EXPORTED
    table = next(p for p in dashboard["panels"] if p["type"] == "table")
    assert all("by (instance)" in t["expr"] for t in table["targets"])  # one row per terminal
    alerts = (MONITORING / "alerts.yml").read_text()
    assert names_in(alerts) <= EXPORTED, names_in(alerts) - EXPORTED
