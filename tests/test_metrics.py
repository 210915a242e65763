"""The Prometheus endpoint ([metrics], issue 16): a real ``taptill run`` scraped over HTTP while taps run
against the wallet emulator, its text read by prometheus_client's parser and checked by promtool; its
authentication and limits; the config's rules; and the dashboard and alert rules shipped for a fleet."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from terminal import __version__
from terminal.config import ConfigError, parse_config
from terminal.effects import Charge, Effect, Show
from terminal.emulator.wallet import WalletEmulator
from terminal.metrics.collector import EXPORTED, LiveState, ScrapeCollector
from terminal.metrics.endpoint import MAX_CONNECTIONS, MetricsEndpoint
from terminal.metrics.journal_figures import JournalFigures
from terminal.metrics.taps import TapCounts, decision, share
from terminal.model import ProductId
from terminal.net.inbound import HEAD_DEADLINE_S
from terminal.screens import BalanceScreen, KioskLockedScreen, KioskScreen, PinScreen
from terminal.service.loop_lag import LagStats
from terminal.service.secret import Secret
from tests.inbound_lab import closed_by_server, drip_until_cut, idle_connections, still_open, wait_until
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

T = TypeVar("T")
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
    reasons = [dict(labels)["reason"] for name, labels in back if name == "taptill_decisions_total"]
    assert reasons and all(reasons), reasons  # every decision says why
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


# --- the endpoint held open by a flood (terminal.net.inbound) ---------------------------------------


def with_endpoint(client: Callable[[MetricsEndpoint], T], *, head_deadline_s: float | None = None) -> T:
    """``client(endpoint)`` run in a thread against a real MetricsEndpoint serving in this loop."""

    async def render() -> bytes:
        return b"taptill_taps_total 0\n"

    async def main() -> T:
        served = MetricsEndpoint("127.0.0.1", 0, render, Secret(TOKEN))
        if head_deadline_s is not None:
            served.guard.head_deadline_s = head_deadline_s
        await served.start()
        try:
            return await asyncio.to_thread(client, served)
        finally:
            await served.stop()

    return asyncio.run(main())


@pytest.mark.parametrize("path", ["/metrics", "/nothing"])
def test_answers_name_no_server_software_or_version(path: str) -> None:
    def ask(served: MetricsEndpoint) -> httpx.Response:
        with httpx.Client(timeout=10.0) as http:
            return http.get(
                f"http://127.0.0.1:{served.port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
            )

    answer = with_endpoint(ask)
    assert answer.status_code == (200 if path == "/metrics" else 404)
    assert answer.headers["server"] == "taptill"


def test_idle_connections_beyond_the_cap_are_closed_at_once_and_a_scrape_still_answers() -> None:
    def flood(served: MetricsEndpoint) -> None:
        held = idle_connections(served.port, MAX_CONNECTIONS)
        extra = idle_connections(served.port, 10)
        try:
            assert all(closed_by_server(sock) for sock in extra)
            assert all(still_open(sock) for sock in held)  # the head deadline (set long here) cut none
            assert (served.guard.open, served.guard.turned_away) == (MAX_CONNECTIONS, 10)
            held.pop().close()  # one connection fewer: room for the scraper
            wait_until(lambda: served.guard.open < MAX_CONNECTIONS, "the closed connection to be let go")
            assert scrape(f"http://127.0.0.1:{served.port}/metrics") == "taptill_taps_total 0\n"
        finally:
            for sock in held + extra:
                sock.close()

    with_endpoint(flood, head_deadline_s=600.0)  # only the cap acts, however slow the machine


def test_a_client_dripping_its_request_head_is_cut_off_by_the_head_deadline() -> None:
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"a" * 400  # 200 s at this pace

    def drip(served: MetricsEndpoint) -> tuple[float, MetricsEndpoint]:
        return drip_until_cut(served.port, head), served

    took, served = with_endpoint(drip)
    # Not before the deadline; well before the head's 200 s and aiohttp's 30 s idle limit of before.
    assert HEAD_DEADLINE_S <= took < HEAD_DEADLINE_S + 15
    assert served.guard.cut_off == 1  # the server cut it for its head (not the client, not a reset)


def test_aiohttp_never_logs_the_bytes_of_a_request(caplog: pytest.LogCaptureFixture) -> None:
    """An Authorization header too long (and one with a control character): aiohttp's parser quotes the
    header in its exception, which aiohttp.server logs with the traceback; the filter leaves the type."""
    marker = "bearer-marker-3c9d2e"
    caplog.set_level(logging.DEBUG)

    def send(served: MetricsEndpoint) -> list[bytes]:
        answers = []
        for header in (marker + "Q" * 9000, marker + "\x01"):
            with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
                sock.sendall(
                    f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {header}\r\n\r\n".encode()
                )
                answers.append(sock.recv(100))
        return answers

    answers = with_endpoint(send)
    assert all(a.startswith(b"HTTP/1.0 400") or a.startswith(b"HTTP/1.1 400") for a in answers), answers
    logged = caplog.text + "".join(str(r.exc_info) for r in caplog.records)
    assert marker not in logged
    assert "LineTooLong" in logged and "BadHttpMessage" in logged  # still said, without the bytes


def test_a_flood_of_idle_connections_leaves_a_running_terminal_its_descriptors(
    tmp_path: Path, real_wallet: WalletEmulator
) -> None:
    """The field's fault: a terminal with a small descriptor limit and hundreds of idle connections to its
    metrics port still sells online, and its metrics answer once the flood is gone."""
    config = metrics_config(tmp_path, real_wallet, 'listen = "127.0.0.1:0"\ntoken_file = "metrics.token"')
    term = TerminalProcess(config, prefix=["prlimit", "--nofile=200", "--"])
    try:
        url = endpoint(term)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        flood = idle_connections(port, 300)
        try:
            line = term.send(f"tap-wait {MAX}")
            assert line == "approved 2,50 €, balance 17,50 €", (
                line
            )  # online, not offline for want of a socket
        finally:
            for sock in flood:
                sock.close()
        wait_for(lambda: scrape_status(url) == 200, what="a scrape once the flood is gone", timeout=30)
    finally:
        assert term.stop() == 0
    assert len(real_wallet.transactions()) == 1


def scrape_status(url: str) -> int:
    try:
        return httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10.0).status_code
    except httpx.TransportError:
        return 0


# --- what a scrape says before anything happened -------------------------------------------------------


def scrape_of(live: LiveState, counts: TapCounts | None = None) -> Samples:
    """The text one scrape renders from ``live`` (and ``counts``), read back by the parser."""
    registry = CollectorRegistry(auto_describe=False)
    figures = JournalFigures(readable=True, read_at=datetime.now(UTC), size_bytes=4096)
    registry.register(ScrapeCollector(counts or TapCounts(), live, figures))
    text = generate_latest(registry).decode()
    promtool_metrics(text)
    return samples(text)


def live_state(**changes: object) -> LiveState:
    stats = LagStats(0, 0.0, None, None, None, 0.0)
    base = LiveState(
        version="t",
        server_online=True,
        token_refused=False,
        last_contact_s=None,
        reader_online=True,
        lag_ms={"p50": 0.0, "p99": 0.0, "max": 0.0},
        lag=stats,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_reader_up_is_0_until_the_reader_has_reported() -> None:
    before = scrape_of(live_state(reader_online=None))
    assert ("taptill_reader_up", frozenset()) in before  # present, not left out
    assert value(before, "taptill_reader_up") == 0
    assert value(scrape_of(live_state(reader_online=False)), "taptill_reader_up") == 0
    assert value(scrape_of(live_state(reader_online=True)), "taptill_reader_up") == 1


def test_loop_lag_is_exported_in_seconds_as_its_name_says() -> None:
    found = scrape_of(live_state(lag_ms={"p50": 2.0, "p99": 250.0, "max": 1500.0}))
    assert value(found, "taptill_event_loop_lag_seconds", stat="p50") == 0.002
    assert value(found, "taptill_event_loop_lag_seconds", stat="p99") == 0.25
    assert value(found, "taptill_event_loop_lag_seconds", stat="max") == 1.5


@pytest.mark.parametrize(
    ("effects", "said"),
    [
        ([], ("ignored", "no_screen")),
        ([Show(BalanceScreen(1750))], ("balance", "empty_cart")),
        ([Show(KioskLockedScreen())], ("operator", "locked")),
        ([Show(PinScreen())], ("operator", "pin_asked")),
        ([Show(KioskScreen())], ("operator", "unlocked")),
    ],
)
def test_every_decision_has_a_reason(effects: list[Effect], said: tuple[str, str]) -> None:
    assert decision(effects) == said
    counts = TapCounts()
    counts.tapped(effects)
    found = scrape_of(live_state(), counts)
    assert value(found, "taptill_decisions_total", outcome=said[0], reason=said[1]) == 1
