"""The Partybroker emulator itself: moving prices, logouts after 3 silent intervals, Premium, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.partybroker import EmulatedDrink, PartybrokerEmulator

pytestmark = pytest.mark.partybroker

AUTH = ("taptill", "demo")
REPO = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[PartybrokerEmulator]:
    with PartybrokerEmulator(price_interval_s=60, clock=clock) as e:
        yield e


@pytest.fixture
def http(emu: PartybrokerEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{emu.base_url}/{emu.party_id}", auth=AUTH, timeout=5) as c:
        yield c


def prices(http: httpx.Client) -> dict[int, int]:
    r = http.get("/drinks")
    assert r.status_code == 200
    return {d["id"]: d["price"] for d in r.json()}


def test_prices_rise_with_each_unit_sold_up_to_the_cap(emu: PartybrokerEmulator, http: httpx.Client) -> None:
    r = http.post("/drinks", json=[{"id": 147, "quantity": 3}])
    assert r.status_code == 200
    assert r.json() == [{"id": 147, "externalId": "345678", "title": "Pils", "price": 240, "currency": "EUR"}]
    http.post("/drinks", json=[{"id": 147, "quantity": 1000}])
    assert prices(http)[147] == 420  # twice the starting price
    assert emu.units_sold()[147] == 1003


def test_prices_fall_once_per_interval_down_to_the_floor(
    emu: PartybrokerEmulator, http: httpx.Client, clock: FakeClock
) -> None:
    clock.now += 59.9
    assert prices(http)[145] == 290
    clock.now += 0.2
    assert prices(http)[145] == 280
    clock.now += 60 * 3
    assert prices(http)[145] == 250
    clock.now += 60 * 100
    assert prices(http)[145] == 145  # half the starting price


def test_set_price_moves_the_market(emu: PartybrokerEmulator, http: httpx.Client) -> None:
    emu.set_price(146, 199)
    assert prices(http)[146] == 199
    with pytest.raises(KeyError):
        emu.set_price(999, 1)


def test_a_client_silent_for_3_intervals_is_logged_out_and_back_on_its_next_call(
    emu: PartybrokerEmulator, http: httpx.Client, clock: FakeClock
) -> None:
    prices(http)
    clock.now += 3 * 60 - 0.1
    assert emu.logouts == 0
    prices(http)  # contact resets the silence
    clock.now += 3 * 60 - 0.1
    assert emu.logouts == 0
    clock.now += 0.2
    assert emu.logouts == 1
    assert emu.logout_log()[0].username == "taptill"
    assert prices(http)  # the document gives a logged-out client no other answer: it is served
    stats = emu.stats()
    assert stats["logins"] == 2 and stats["logouts"] == 1


def test_wrong_credentials_do_not_count_as_contact(emu: PartybrokerEmulator, clock: FakeClock) -> None:
    with httpx.Client(auth=("taptill", "nope")) as c:
        r = c.get(f"{emu.base_url}/{emu.party_id}/drinks")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    assert emu.stats()["logins"] == 0


def test_without_premium_only_the_first_three_drinks_exist(clock: FakeClock) -> None:
    with PartybrokerEmulator(premium=False, clock=clock) as emu, httpx.Client(auth=AUTH) as c:
        url = f"{emu.base_url}/{emu.party_id}/drinks"
        assert [d["id"] for d in c.get(url).json()] == [145, 146, 147]
        r = c.post(url, json=[{"id": 145, "quantity": 1}, {"externalId": "456789", "quantity": 1}])
        assert r.status_code == 404
        assert emu.units_sold() == {145: 0, 146: 0, 147: 0, 148: 0}  # all or nothing
        emu.premium = True
        assert [d["id"] for d in c.get(url).json()] == [145, 146, 147, 148]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b"[]",
        b'[{"quantity": 1}]',
        b'[{"id": 145, "quantity": 0}]',
        b'[{"id": 145, "quantity": true}]',
        b'[{"id": 145}]',
        b"[1]",
    ],
)
def test_bad_sales_are_400_and_book_nothing(
    emu: PartybrokerEmulator, http: httpx.Client, body: bytes
) -> None:
    r = http.post("/drinks", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert "error" in r.json()
    assert sum(emu.units_sold().values()) == 0


def test_custom_drinks_and_string_prices(clock: FakeClock) -> None:
    drinks = [EmulatedDrink(1, None, "Espresso", 150, min_cents=100, max_cents=200)]
    with PartybrokerEmulator(drinks=drinks, prices_as_strings=True, rise_cents=30, clock=clock) as emu:
        with httpx.Client(auth=AUTH) as c:
            r = c.post(f"{emu.base_url}/1234/drinks", json=[{"id": 1, "quantity": 3}])
        assert r.json()[0]["price"] == "200"
        assert r.json()[0]["externalId"] is None


def test_fault_configuration_over_http(emu: PartybrokerEmulator, http: httpx.Client) -> None:
    root = emu.base_url.removesuffix("/api")
    r = httpx.post(f"{root}/_emulator/faults", json={"add": [{"kind": "error500_before", "times": 1}]})
    assert r.status_code == 200
    assert http.get("/drinks").status_code == 500
    assert http.get("/drinks").status_code == 200
    assert httpx.post(f"{root}/_emulator/faults", json={"add": [{"kind": "nope"}]}).status_code == 400
    stats = httpx.get(f"{root}/_emulator/stats").json()
    assert stats["faults"] == {FaultKind.ERROR500_BEFORE.value: 1}
    assert stats["requests"] == 2


def test_down_switch_drops_every_call(emu: PartybrokerEmulator, http: httpx.Client) -> None:
    emu.faults.set_down(True)
    with pytest.raises(httpx.TransportError):
        http.get("/drinks")
    emu.faults.set_down(False)
    assert http.get("/drinks").status_code == 200


def test_cli_prints_its_url_and_serves_until_sigterm(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("cli-pass\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "terminal.emulator.partybroker",
            "--port",
            "0",
            "--password-file",
            str(password),
            "--no-premium",
            "--prices-as-strings",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        assert line["url"].startswith("http://127.0.0.1:") and line["premium"] is False
        r = httpx.get(f"{line['url']}/{line['party_id']}/drinks", auth=("taptill", "cli-pass"), timeout=5)
        assert [d["price"] for d in r.json()] == ["290", "230", "210"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        assert json.loads(proc.stderr.read().strip().splitlines()[-1])["requests"] == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
