"""A terminal with no product list (a wrong slug, a failing server, nothing cached) is out of service in
guest words until one loads; its log and `taptill doctor` say what the server answered."""

from __future__ import annotations

from pathlib import Path

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import MAX, TerminalProcess, journal_lines, taptill, wait_for, write_config

OUT_OF_SERVICE = "┌─ Out of service"


def test_a_wrong_event_slug_without_a_cache_is_out_of_service_and_names_the_slugs(tmp_path: Path) -> None:
    with WalletEmulator.demo("real") as server:
        config = write_config(tmp_path, server, display="console")
        text = config.read_text()
        assert "/events/demo/" in text
        config.write_text(text.replace("/events/demo/", "/events/dmeo/"))
        term = TerminalProcess(config)
        try:
            wait_for(lambda: OUT_OF_SERVICE in term.log(), what="the out-of-service screen")
            tap = taptill("tap", "--config", str(config), MAX, check=False)
            asked = server.stats()["requests_by_route"].get("terminal", 0)
            doctor = taptill("doctor", "--config", str(config), check=False)
        finally:
            assert term.stop() == 0
    log = term.log()
    assert "Please ask staff" in log
    assert "Tap your card" not in log and "OFFLINE" not in log and "Product unavailable" not in log, log
    (said,) = [line for line in log.splitlines() if "no product list" in line]
    assert "answers with an error (server error 500: check organizer and event slugs in base_url" in said
    assert "out of service until it lists the products" in said
    assert "unreachable" not in log, log
    assert tap.returncode == 1 and tap.stdout.strip() == "declined: out of service (Please ask staff)", tap
    assert journal_lines(config) == [], "a tap without prices reached the journal"
    assert asked >= 1
    server_line = next(ln for ln in doctor.stdout.splitlines() if ln.split()[1:2] == ["server"])
    assert doctor.returncode == 1 and server_line.startswith("FAIL"), doctor.stdout
    assert "check organizer and event slugs" in server_line, server_line


def test_the_terminal_keeps_asking_and_sells_once_the_product_list_loads(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as server:
        server.faults.inject(FaultKind.ERROR500_BEFORE, route="terminal")
        config = write_config(tmp_path, server, display="console")
        term = TerminalProcess(config)
        try:
            wait_for(lambda: OUT_OF_SERVICE in term.log(), what="the out-of-service screen")
            server.faults.clear()
            wait_for(lambda: "product list loaded" in term.log(), timeout=40, what="the list to load")
            wait_for(lambda: "Tap your card" in term.log(), what="the price board")
            term.tap(MAX)
            wait_for(lambda: len(server.transactions()) == 1, what="a sale once the list loaded")
        finally:
            assert term.stop() == 0
    log = term.log()
    after = log[log.index("product list loaded") :]
    assert OUT_OF_SERVICE not in after and "OFFLINE" not in after, after
    assert "Traceback" not in log
