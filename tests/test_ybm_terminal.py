"""yourbarmate's stock inside ``taptill run`` (issue 15), end to end: the sender emulator posts deliveries to
the webhook the terminal serves in its own loop, staff receive them, sales at the real wallet server's
latency subtract their servings, and the tap after the last serving is declined "sold out" with no money
moved; duplicates, wrong credentials and bad bodies change nothing; a kill -9 while an event is answered
applies it exactly once after yourbarmate's resend."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from terminal.emulator.wallet.server import WalletEmulator
from terminal.emulator.yourbarmate.bad_bodies import bad_bodies
from terminal.emulator.yourbarmate.events import item, request_delivery
from terminal.emulator.yourbarmate.sender import Sender, Sent
from terminal.journal import Journal
from tests.terminal_lab import TerminalProcess, taptill, wait_for, write_config

USER, PASSWORD = "ybm", "webhook-s3cret"
PATH = "/hooks/yourbarmate"
RICH = "04A1B2C3D4E5F6"
HELLES = 1  # the wallet product (pretix ids are integers)
PRICE = 450
PRODUCTS = ((HELLES, "Helles", PRICE),)
KEG = item("17", "Helles", size=2, unit="l", vessel_type="KEG")  # 2000 ml: four servings of 500 ml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ybm_table(folder: Path, port: int) -> str:
    password = folder / "yourbarmate.password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    return (
        f'\n[yourbarmate]\nlisten = "127.0.0.1:{port}"\npath = "{PATH}"\nusername = "{USER}"\n'
        f'password_file = "{password}"\nlow_servings = 2\n'
        f'[yourbarmate.products]\n"17" = {{ product = "{HELLES}", serving_ml = 500 }}\n'
    )


@pytest.fixture
def wallet() -> Iterator[WalletEmulator]:
    with WalletEmulator("real", products=PRODUCTS, wallets={RICH: 100_000}, latency="real") as server:
        yield server


def send(port: int, job: Any) -> Any:
    """Run ``job(sender)`` with a yourbarmate sender to the terminal on ``port`` (its own event loop)."""

    async def run() -> Any:
        url = f"http://127.0.0.1:{port}{PATH}"
        async with Sender(url, USER, PASSWORD, max_attempts=40, backoff_s=0.1, backoff_cap_s=0.5) as sender:
            return await job(sender)

    return asyncio.run(run())


def stock(config: Path) -> dict[str, Any]:
    figures = json.loads(taptill("stock", "--json", "--config", str(config)).stdout)
    (helles,) = figures["products"]
    return dict(helles)


def status_of(config: Path, ready: Any) -> dict[str, Any]:
    """``taptill status --json``'s yourbarmate part once ``ready(it)`` (the counts reach the journal
    within a second of each event)."""
    seen: list[dict[str, Any]] = []

    def stored() -> bool:
        data = json.loads(taptill("status", "--json", "--config", str(config)).stdout)
        seen[:] = [data["yourbarmate"]]
        return bool(ready(seen[0]))

    wait_for(stored, what="the webhook's counts in taptill status")
    return seen[0]


def doctor_lines(config: Path) -> dict[str, str]:
    """``taptill doctor``'s lines by check name."""
    out = taptill("doctor", "--config", str(config), check=False).stdout
    return {line.split()[1]: line for line in out.splitlines() if len(line.split()) > 1}


def tap(term: TerminalProcess) -> str:
    return term.send(f"tap-wait {RICH}")


def test_deliveries_become_servings_and_the_tap_after_the_last_is_declined_sold_out(
    tmp_path: Path, wallet: WalletEmulator
) -> None:
    port = free_port()
    config = write_config(tmp_path, wallet, products=[HELLES], extra=ybm_table(tmp_path, port))
    term = TerminalProcess(config)
    try:
        assert f"yourbarmate webhook listens on 127.0.0.1:{port}{PATH}" in term.log()
        # Nothing counted or received yet: nothing to pour, so nothing is charged.
        assert tap(term).startswith("declined: sold out"), term.log()
        keg = request_delivery(1001, [KEG])
        sent: list[Sent] = send(port, lambda s: s.send_duplicate(keg, 2))
        assert [s.status for s in sent] == [200, 200]
        assert stock(config)["ordered"] == 2000  # the duplicate added nothing

        # Wrong credentials and every kind of bad body: refused or quarantined, the stock untouched.
        async def spoil(s: Sender) -> list[Sent]:
            other = request_delivery(1002, [KEG])
            out = [await s.send_wrong_credentials(other, max_attempts=1)]
            for bad in bad_bodies(other):
                out.append(await s.send_bad(bad, max_attempts=1))
            return out

        spoilt = send(port, spoil)
        assert spoilt[0].status == 401
        assert all(s.status != 500 for s in spoilt), [(s.label, s.status) for s in spoilt]
        assert stock(config)["ordered"] == 2000
        assert tap(term).startswith("declined: sold out")  # ordered is not on hand

        taptill("stock", "receive", "1001", "--config", str(config))  # staff: the keg arrived
        wait_for(lambda: "stock: sold out nothing" in term.log(), what="the terminal to see the keg")
        answers = [tap(term) for _ in range(4)]
        assert all(a.startswith("approved") for a in answers), answers
        assert tap(term).startswith("declined: sold out"), "the fifth serving was sold"
        webhook = status_of(config, lambda w: w["accepted"] == 1)
        assert webhook["listening"] == f"http://127.0.0.1:{port}{PATH}"
        assert (webhook["duplicate"], webhook["refused_auth"], webhook["too_large"]) == (1, 1, 1)
        assert webhook["quarantined"] >= 5 and webhook["quarantine_total"] == webhook["quarantined"]
        assert webhook["warnings"][0] == f"SOLD OUT: {HELLES}, 0 serving(s) left"
        (waiting,) = webhook["warnings"][1:]  # the bad bodies wait in quarantine for a person
        assert waiting.startswith(
            f"QUARANTINE: {webhook['quarantine_waiting']} webhook body(ies) not applied"
        )
        shown = taptill("status", "--config", str(config)).stdout
        assert f"stock {HELLES}: 0 ml on hand, 0 serving(s) left, 0 ml ordered  SOLD OUT" in shown
        doctor = doctor_lines(config)
        assert doctor["ybm-listen"].startswith("OK") and "serves the webhook" in doctor["ybm-listen"]
        assert doctor["stock"].startswith("WARN") and f"SOLD OUT {HELLES}" in doctor["stock"]
        assert doctor["ybm-secret"].startswith("OK")
    finally:
        assert term.stop() == 0
    assert doctor_lines(config)["ybm-listen"] == f"OK   ybm-listen  127.0.0.1:{port} is free for the webhook"
    figures = stock(config)
    assert (figures["on_hand"], figures["sold"], figures["sold_out"]) == (0, 2000, True)
    assert wallet.balance(RICH) == 100_000 - 4 * PRICE
    assert len(wallet.transactions()) == 4


def test_a_press_of_a_sold_out_product_says_so_and_exits_1(tmp_path: Path, wallet: WalletEmulator) -> None:
    select = f'[select]\nbuttons = {{ b1 = "{HELLES}" }}\ncancel_button = "cancel"\n'
    extra = select + ybm_table(tmp_path, free_port())
    config = write_config(tmp_path, wallet, products=[], mode="select", extra=extra)
    term = TerminalProcess(config)
    try:
        gone = taptill("press", "b1", "--config", str(config), check=False)
        assert (gone.returncode, gone.stdout) == (
            1,
            "declined: sold out: fewer servings in stock than the tap pours (taptill stock)\n",
        )
        taptill("stock", "set", str(HELLES), "1l", "--config", str(config))
        wait_for(lambda: "stock: sold out nothing" in term.log(), what="the terminal to see the count")
        added = taptill("press", "b1", "--config", str(config), check=False)
        assert (added.returncode, added.stdout) == (0, "ok: b1 pressed, cart 1 item(s), total 4,50 €\n")
        emptied = taptill("press", "cancel", "--config", str(config), check=False)
        assert (emptied.returncode, emptied.stdout) == (0, "ok: cancel pressed\n")  # the board again
    finally:
        assert term.stop() == 0
    assert wallet.transactions() == []


def events_of(config: Path, key: str) -> int:
    """How many rows the journal holds for yourbarmate event ``key`` (read-only, the terminal may run)."""
    journal = Journal.open_read_only(config.parent / "state" / "journal.sqlite3")
    try:
        return int(journal.query("SELECT COUNT(*) FROM ybm_events WHERE idempotency_key = ?", (key,))[0][0])
    finally:
        journal.close()


@pytest.mark.parametrize(("point", "committed"), [("ybm_before_commit", 0), ("ybm_after_commit", 1)])
def test_a_kill_while_an_event_is_answered_applies_it_once_after_the_sender_resends(
    tmp_path: Path, wallet: WalletEmulator, point: str, committed: int
) -> None:
    port = free_port()
    config = write_config(tmp_path, wallet, products=[HELLES], extra=ybm_table(tmp_path, port))
    keg = request_delivery(2001, [KEG])
    first = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": point})
    result: list[Sent] = []
    sender = threading.Thread(target=lambda: result.append(send(port, lambda s: s.send(keg))))
    sender.start()
    assert first.wait_dead() == -9  # killed where the test asked, the event unanswered
    assert events_of(config, keg["idempotency_key"]) == committed
    second = TerminalProcess(config)  # systemd starts it again; yourbarmate resends meanwhile
    try:
        sender.join(timeout=30)
        assert not sender.is_alive()
        (sent,) = result
        assert sent.delivered and len(sent.attempts) >= 2, sent
        assert sent.attempts[0].status is None  # the first got no answer: the process died
        assert stock(config)["ordered"] == 2000  # once, not twice
    finally:
        assert second.stop() == 0
    assert events_of(config, keg["idempotency_key"]) == 1


def test_an_address_in_use_is_one_line_at_start_and_nothing_is_sold(
    tmp_path: Path, wallet: WalletEmulator
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        config = write_config(tmp_path, wallet, products=[HELLES], extra=ybm_table(tmp_path, port))
        proc = taptill("run", "--config", str(config), check=False)
    assert proc.returncode != 0
    problem = [line for line in proc.stderr.splitlines() if f"127.0.0.1:{port}" in line]
    assert len(problem) == 1 and "cannot listen there" in problem[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert "taptill ready" not in proc.stderr + proc.stdout
    assert wallet.transactions() == []


def test_a_missing_password_file_is_one_line_at_start(tmp_path: Path, wallet: WalletEmulator) -> None:
    table = ybm_table(tmp_path, free_port())
    (tmp_path / "yourbarmate.password").unlink()
    proc = taptill("run", "--config", str(write_config(tmp_path, wallet, extra=table)), check=False)
    assert proc.returncode != 0
    assert "yourbarmate.password" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_two_quick_taps_of_two_beers_each_with_three_servings_left_sell_one_and_decline_one(
    tmp_path: Path,
) -> None:
    other = "04B0B0B0B0B0B0"
    with WalletEmulator(
        "real", products=PRODUCTS, wallets={RICH: 100_000, other: 100_000}, latency="real"
    ) as wallet:
        port = free_port()
        config = write_config(tmp_path, wallet, products=[HELLES, HELLES], extra=ybm_table(tmp_path, port))
        term = TerminalProcess(config)
        try:
            taptill("stock", "set", str(HELLES), "1.5l", "--config", str(config))  # three servings
            wait_for(lambda: "stock: sold out nothing" in term.log(), what="the terminal to see the count")
            answers: dict[str, str] = {}
            taps = [
                threading.Thread(target=lambda uid=uid: answers.update({uid: term.send(f"tap-wait {uid}")}))
                for uid in (RICH, other)
            ]
            for t in taps:
                t.start()
            for t in taps:
                t.join(timeout=30)
        finally:
            assert term.stop() == 0
        sold = wallet.transactions()
    assert sorted(a.split()[0] for a in answers.values()) == ["approved", "declined:"], answers
    assert next(a for a in answers.values() if a.startswith("declined")).startswith("declined: sold out")
    assert len(sold) == 1 and sold[0].amount == -2 * PRICE
    figures = stock(config)
    assert (figures["sold"], figures["on_hand"], figures["servings_left"]) == (1000, 500, 1)
