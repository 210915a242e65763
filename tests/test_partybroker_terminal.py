"""Partybroker inside a running terminal: sales reported, the session kept alive, the price shown charged."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.partybroker import EmulatedDrink, PartybrokerEmulator
from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import TerminalProcess, journal_lines, settled, taptill, wait_for, write_config

pytestmark = pytest.mark.partybroker

RICH = "04F00DF00DF00D"
WEISSBIER = 145
LADDER_PRODUCTS = [
    ("espresso", "Espresso", 250),
    ("beer_s", "Bier", 250),
    ("beer_m", "Bier", 290),
    ("beer_l", "Bier", 330),
]


@pytest.fixture
def party() -> Iterator[PartybrokerEmulator]:
    drinks = (
        EmulatedDrink(WEISSBIER, "123456", "Weißbier", 290, min_cents=200, max_cents=400),
        EmulatedDrink(146, "POS_222", "Helles", 230),
    )
    with PartybrokerEmulator(drinks=drinks, price_interval_s=0.25, rise_cents=0, fall_cents=0) as emu:
        yield emu


def _pb_config(
    directory: Path, party: PartybrokerEmulator, *, ladder: bool = False, interval: float = 0.25
) -> str:
    password = directory / "partybroker.password"
    directory.mkdir(parents=True, exist_ok=True)
    password.write_text("demo")
    password.chmod(0o600)
    mapping = (
        f'beer = {{ id = {WEISSBIER}, ladder = ["beer_s", "beer_m", "beer_l"] }}'
        if ladder
        else f"espresso = {{ id = {WEISSBIER} }}"
    )
    return f"""
[partybroker]
base_url = "{party.base_url}"
party_id = "{party.party_id}"
username = "{party.username}"
password_file = "partybroker.password"
price_interval_s = {interval}
charge = "{"ladder" if ladder else "wallet"}"
[partybroker.drinks]
{mapping}
"""


def _console(config: Path) -> None:
    text = config.read_text().replace('kind = "none"', 'kind = "console"')
    config.write_text(text)


def _tap_and_settle(term: TerminalProcess, uid: str, count: int) -> None:
    term.tap(uid)
    wait_for(lambda: settled(term.config, count), what=f"sale {count} to settle")


def _status(config: Path) -> dict[str, object]:
    return dict(json.loads(taptill("status", "--json", "--config", str(config)).stdout))


def test_twenty_sales_are_twenty_units(tmp_path: Path, party: PartybrokerEmulator) -> None:
    with WalletEmulator.demo("doc") as wallet:
        wallet.add_wallet(RICH, 100_000)
        config = write_config(tmp_path, wallet, extra=_pb_config(tmp_path, party))
        term = TerminalProcess(config)
        try:
            for n in range(1, 21):
                _tap_and_settle(term, RICH, n)
            wait_for(lambda: party.units_sold().get(WEISSBIER, 0) >= 20, what="20 units at the party")
            time.sleep(0.5)  # nothing more may arrive
        finally:
            term.stop()
    assert party.units_sold().get(WEISSBIER) == 20
    pb = _status(config)["partybroker"]
    assert isinstance(pb, dict)
    assert pb["reported_units"] == 20 and pb["ambiguous_reports"] == 0 and pb["pending_reports"] == 0


def test_with_faults_the_count_stays_within_the_ambiguous_bound(
    tmp_path: Path, party: PartybrokerEmulator
) -> None:
    party.faults.reseed(7)
    for kind in (
        FaultKind.DROP_AFTER,
        FaultKind.ERROR500_BEFORE,
        FaultKind.RATE_LIMIT_429,
        FaultKind.DROP_BEFORE,
    ):
        party.faults.inject(kind, probability=0.2, method="POST")
    with WalletEmulator.demo("doc") as wallet:
        wallet.add_wallet(RICH, 100_000)
        config = write_config(tmp_path, wallet, extra=_pb_config(tmp_path, party))
        term = TerminalProcess(config)
        try:
            for n in range(1, 21):
                _tap_and_settle(term, RICH, n)
            wait_for(
                lambda: _status(config)["partybroker"]["pending_reports"] == 0,  # type: ignore[index]
                timeout=30,
                what="every report to be settled",
            )
        finally:
            term.stop()
    pb = _status(config)["partybroker"]
    assert isinstance(pb, dict)
    units = party.units_sold().get(WEISSBIER, 0)
    ambiguous = int(pb["ambiguous_units"])
    assert 20 - ambiguous <= units <= 20, (units, pb)
    assert pb["reported_units"] + ambiguous + 0 >= units
    assert sum(party.faults.applied().values()) > 0, "no fault fired: the test proves nothing"


def _report_reasons(config: Path) -> list[str]:
    """Why each Partybroker report waits (the outbox's reason), read from the journal file itself."""
    db = sqlite3.connect(f"file:{config.parent / 'state' / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT reason FROM outbox WHERE destination = 'partybroker'").fetchall()
    finally:
        db.close()
    return [str(r[0]) for r in rows]


def test_reports_refused_before_reaching_the_party_are_sent_again_and_arrive(tmp_path: Path) -> None:
    """429s and a party refusing connections provably applied nothing: every report is sent again, and
    the party's own count (not the terminal's) says each of them arrived, once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])  # fixed, so the party comes back where the terminal looks
    drinks = (EmulatedDrink(WEISSBIER, "123456", "Weißbier", 290),)
    party = PartybrokerEmulator(
        port=port, drinks=drinks, price_interval_s=0.25, rise_cents=0, fall_cents=0
    ).start()
    try:
        party.faults.inject(FaultKind.RATE_LIMIT_429, method="POST", times=2, retry_after=1)
        with WalletEmulator.demo("doc") as wallet:
            wallet.add_wallet(RICH, 100_000)
            config = write_config(tmp_path, wallet, extra=_pb_config(tmp_path, party))
            term = TerminalProcess(config)
            try:
                for n in range(1, 4):
                    _tap_and_settle(term, RICH, n)
                wait_for(lambda: party.faults.applied().get("rate_limit_429") == 2, what="both 429s")
                party.stop()  # connections refused from now on
                for n in range(4, 7):
                    _tap_and_settle(term, RICH, n)
                wait_for(
                    lambda: any("cannot connect" in r for r in _report_reasons(config)),
                    what="a report refused a connection",
                )
                party.start()
                wait_for(
                    lambda: _status(config)["partybroker"]["pending_reports"] == 0,  # type: ignore[index]
                    timeout=40,
                    what="every report to be settled",
                )
            finally:
                term.stop()
        assert party.units_sold() == {WEISSBIER: 6}
    finally:
        party.stop()
    pb = _status(config)["partybroker"]
    assert isinstance(pb, dict)
    assert (pb["reported_units"], pb["ambiguous_reports"], pb["dropped_reports"]) == (6, 0, 0), pb


def test_the_session_survives_a_quiet_night(tmp_path: Path) -> None:
    # Half-second intervals: a logout needs 1.5 s of silence, which a loaded CI machine never causes.
    with (
        PartybrokerEmulator(price_interval_s=0.5) as party,
        WalletEmulator.demo("doc") as wallet,
    ):
        config = write_config(tmp_path, wallet, extra=_pb_config(tmp_path, party, interval=0.5))
        term = TerminalProcess(config)
        try:
            time.sleep(0.5 * 8)  # 8 price intervals without a single sale
            night_over = time.monotonic()
        finally:
            term.stop()
        # Only a logout of the running terminal counts: once stopping (which a loaded machine may take
        # seconds over) it is silent, and the emulator logs out a silent client 3 intervals after its
        # last call. The emulator's clock is this process's monotonic clock.
        assert [out for out in party.logout_log() if out.at <= night_over] == []
        assert party.stats()["requests"] >= 6  # type: ignore[operator]


def test_idle_screen_shows_the_prices_of_the_last_post(tmp_path: Path) -> None:
    drinks = (EmulatedDrink(WEISSBIER, "123456", "Weißbier", 290, min_cents=200, max_cents=400),)
    # A long interval: only the sale's own POST answer can change the price shown.
    with (
        PartybrokerEmulator(drinks=drinks, price_interval_s=60, rise_cents=40, fall_cents=0) as party,
        WalletEmulator("doc", products=LADDER_PRODUCTS, wallets={RICH: 100_000}) as wallet,
    ):
        config = write_config(
            tmp_path, wallet, products=["beer"], extra=_pb_config(tmp_path, party, ladder=True, interval=60)
        )
        _console(config)
        term = TerminalProcess(config)
        try:
            wait_for(lambda: "Weißbier 2,90 €" in term.log(), what="the first market price on screen")
            _tap_and_settle(term, RICH, 1)
            wait_for(lambda: "Weißbier 3,30 €" in term.log(), what="the POST's new price on screen")
        finally:
            term.stop()
        assert party.prices()[WEISSBIER] == 330


def test_ladder_charges_the_price_on_screen_across_a_price_change(
    tmp_path: Path, party: PartybrokerEmulator
) -> None:
    with WalletEmulator("doc", products=LADDER_PRODUCTS, wallets={RICH: 100_000}) as wallet:
        config = write_config(
            tmp_path, wallet, products=["beer"], extra=_pb_config(tmp_path, party, ladder=True)
        )
        _console(config)
        term = TerminalProcess(config)
        try:
            wait_for(lambda: "Weißbier 2,90 €" in term.log(), what="the market price on screen")
            _tap_and_settle(term, RICH, 1)
            party.set_price(WEISSBIER, 345)
            wait_for(lambda: "Weißbier 3,30 €" in term.log(), what="the new step on screen")
            _tap_and_settle(term, RICH, 2)
            party.set_price(WEISSBIER, 260)
            wait_for(
                lambda: "Weißbier 2,50 €" in term.log().split("3,30")[-1], what="the lower step on screen"
            )
            _tap_and_settle(term, RICH, 3)
        finally:
            term.stop()
        ledger = [(t.products, t.amount) for t in wallet.transactions()]
    assert ledger == [(["beer_m"], -290), (["beer_l"], -330), (["beer_s"], -250)]
    assert [s["products"] for s in journal_lines(config)] == [["beer_m"], ["beer_l"], ["beer_s"]]


def test_a_drink_the_party_does_not_list_is_warned_about_and_never_reported(tmp_path: Path) -> None:
    drinks = (
        EmulatedDrink(145, "123456", "Weißbier", 290),
        EmulatedDrink(146, "234567", "Helles", 230),
        EmulatedDrink(147, "345678", "Pils", 210),
        EmulatedDrink(148, "456789", "Radler", 250),  # the fourth: invisible without Premium
    )
    with (
        PartybrokerEmulator(drinks=drinks, price_interval_s=0.25, premium=False) as party,
        WalletEmulator.demo("doc") as wallet,
    ):
        wallet.add_wallet(RICH, 100_000)
        extra = _pb_config(tmp_path, party).replace(
            f"espresso = {{ id = {WEISSBIER} }}", "espresso = { id = 148 }"
        )
        config = write_config(tmp_path, wallet, extra=extra)
        term = TerminalProcess(config)
        try:
            wait_for(lambda: "Premium" in term.log(), what="the start-up warning")
            _tap_and_settle(term, RICH, 1)
            wait_for(
                lambda: _status(config)["partybroker"]["dropped_reports"] == 1,  # type: ignore[index]
                what="the report to be dropped, not retried",
            )
            status_text = taptill("status", "--config", str(config)).stdout
        finally:
            term.stop()
        assert party.units_sold() == {} or sum(party.units_sold().values()) == 0
        assert "warning:" in status_text and "148" in status_text and "Premium" in status_text
        assert [t.amount for t in wallet.transactions()] == [-250], "the sale itself goes through"


def test_a_ladder_sale_takes_its_serving_from_the_drink_poured_not_the_step_booked(
    tmp_path: Path, party: PartybrokerEmulator
) -> None:
    password = tmp_path / "yourbarmate.password"
    password.write_text("webhook-s3cret\n")
    password.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    stock = (
        f'\n[yourbarmate]\nlisten = "127.0.0.1:{port}"\npassword_file = "{password}"\n'
        '[yourbarmate.products]\n"17" = { product = "beer", serving_ml = 500 }\n'
    )
    with WalletEmulator("doc", products=LADDER_PRODUCTS, wallets={RICH: 100_000}) as wallet:
        config = write_config(
            tmp_path, wallet, products=["beer"], extra=_pb_config(tmp_path, party, ladder=True) + stock
        )
        term = TerminalProcess(config)
        try:
            taptill("stock", "set", "beer", "1l", "--config", str(config))  # two servings of beer
            wait_for(lambda: "stock: sold out nothing" in term.log(), what="the terminal to see the count")
            answers = [term.send(f"tap-wait {RICH}") for _ in range(3)]
        finally:
            term.stop()
        ledger = [t.products for t in wallet.transactions()]
    assert [a.split()[0] for a in answers] == ["approved", "approved", "declined:"], answers
    assert answers[2].startswith("declined: sold out")
    assert ledger == [["beer_m"], ["beer_m"]]  # the wallet booked the step both times …
    figures = json.loads(taptill("stock", "--json", "--config", str(config)).stdout)["products"]
    assert [(f["product"], f["sold"], f["on_hand"]) for f in figures] == [("beer", 1000, 0)]  # … beer went
