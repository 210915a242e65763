"""Answers and faults that once stopped the terminal: each must leave it selling (found in review)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hw.display.null import NullDisplay
from hw.gpio.outputs import LogOutputs
from terminal.config import OfflineConfig
from terminal.controller import Controller, ControllerSettings, Phase
from terminal.device_loop import DeviceLoop
from terminal.effects import Show
from terminal.emulator.faults import FaultKind
from terminal.emulator.terminal_config import write_terminal_config
from terminal.emulator.wallet import WalletEmulator
from terminal.events import CardPresented, CardRemoved, ServerChanged, TokenChanged
from terminal.journal import Journal
from terminal.model import Product
from terminal.service.secret import Secret
from terminal.wallet.client import WalletClient
from terminal.wallet.health import ServerHealth
from terminal.wallet.sale_sender import MIN_PAUSE_S, SaleSender
from tests.terminal_lab import ERIKA, MAX, TerminalProcess, journal_lines, settled, wait_for

HUGE = b'{"data": {"token_id": "04A1B2C3D4E5F6", "balance": 1' + b"0" * 5000 + b"}}"


class _HugeNumber(BaseHTTPRequestHandler):
    """A wallet server whose every answer holds a 5001-digit balance (Python refuses to parse it)."""

    def _answer(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(HUGE)))
        self.end_headers()
        self.wfile.write(HUGE)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def huge_server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _HugeNumber)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/api"
    finally:
        srv.shutdown()
        srv.server_close()


def test_the_controller_is_told_of_server_changes_not_of_repeats(tmp_path: Path) -> None:
    # A tap reports the server state three times; only a change may cost a trip round the loop.
    async def main() -> list[ServerChanged]:
        journal = Journal.open(tmp_path / "j.sqlite3")
        client = WalletClient("http://127.0.0.1:9/api", Secret("t"), timeout_s=1.0)
        health = ServerHealth()
        loop = DeviceLoop(
            controller=Controller(
                ControllerSettings(products=("espresso",), offline=OfflineConfig(), screen_hold_s=0.0),
                (Product("espresso", "Espresso", 250),),
            ),
            journal=journal,
            client=client,
            sender=SaleSender(journal, client, health, dedupes=True),
            health=health,
            display=NullDisplay(),
            outputs=LogOutputs(),
            description="x",
            tag=None,
            tap_budget_s=0.8,
        )
        loop.attach()
        try:
            for _ in range(3):
                loop.server_changed()
            health.mark_down("bench")  # a change: told
            loop.server_changed()
            health.mark_up()
            journal.record_sale(
                token_id=MAX,
                products=["espresso"],
                amount_cents=-250,
                description="x",
                tag=None,
                offline=True,
            )
            loop.server_changed()  # online again and one sale unconfirmed: told once
            loop.server_changed()
            await asyncio.sleep(0.05)
            told = []
            while not loop.queue.empty():
                event = loop.queue.get_nowait()
                assert isinstance(event, ServerChanged)
                told.append(event)
            return told
        finally:
            await client.aclose()
            journal.close()

    told = asyncio.run(main())
    assert [(e.online, e.unconfirmed) for e in told] == [(True, 0), (False, 0), (True, 1)]


def test_a_token_accepted_again_goes_from_out_of_service_straight_to_the_price_board(tmp_path: Path) -> None:
    """Refused: the token's state first (no offline board before out of service); accepted again: the
    server's state first, so the screen never shows the offline board the refusal left behind."""

    async def main() -> tuple[list[object], list[str]]:
        journal = Journal.open(tmp_path / "j.sqlite3")
        client = WalletClient("http://127.0.0.1:9/api", Secret("t"), timeout_s=1.0)
        health = ServerHealth()
        controller = Controller(
            ControllerSettings(products=("espresso",), offline=OfflineConfig(), screen_hold_s=0.0),
            (Product("espresso", "Espresso", 250),),
        )
        loop = DeviceLoop(
            controller=controller,
            journal=journal,
            client=client,
            sender=SaleSender(journal, client, health, dedupes=True),
            health=health,
            display=NullDisplay(),
            outputs=LogOutputs(),
            description="x",
            tag=None,
            tap_budget_s=0.8,
        )
        loop.attach()
        try:
            loop.server_changed()
            health.mark_token_refused("Invalid token.")
            loop.server_changed()
            health.mark_up()
            loop.server_changed()
            await asyncio.sleep(0.05)
            told: list[object] = []
            shown: list[str] = []
            while not loop.queue.empty():
                event = loop.queue.get_nowait()
                told.append(event)
                assert isinstance(event, ServerChanged | TokenChanged)
                for effect in controller.handle(event):
                    if isinstance(effect, Show):
                        shown.append(effect.screen.text().title)
            return told, shown
        finally:
            await client.aclose()
            journal.close()

    told, shown = asyncio.run(main())
    assert told == [
        ServerChanged(True, 0),
        TokenChanged(True),
        ServerChanged(False, 0),
        ServerChanged(True, 0),
        TokenChanged(False),
    ]
    assert "OFFLINE" not in shown, shown
    assert shown[-1] == "Tap your card", shown


def test_an_unparseable_answer_ends_the_tap_and_the_next_tap_is_served(
    tmp_path: Path, huge_server: str
) -> None:
    async def main() -> list[Phase]:
        journal = Journal.open(tmp_path / "j.sqlite3")
        client = WalletClient(huge_server, Secret("t"), timeout_s=1.0)
        health = ServerHealth()
        controller = Controller(
            ControllerSettings(products=("espresso",), offline=OfflineConfig(), screen_hold_s=0.0),
            (Product("espresso", "Espresso", 250),),
        )
        loop = DeviceLoop(
            controller=controller,
            journal=journal,
            client=client,
            sender=SaleSender(journal, client, health, dedupes=True),
            health=health,
            display=NullDisplay(),
            outputs=LogOutputs(),
            description="x",
            tag=None,
            tap_budget_s=0.8,
        )
        loop.attach()
        phases = []
        try:
            for uid in (MAX, ERIKA):
                await loop.dispatch(CardPresented(uid))
                await loop.dispatch(CardRemoved())
                phases.append(controller.phase)
        finally:
            await client.aclose()
            journal.close()
        return phases

    assert asyncio.run(main()) == [Phase.RESULT, Phase.RESULT]


def test_the_outbox_outlives_an_unparseable_answer(tmp_path: Path, huge_server: str) -> None:
    async def main() -> tuple[bool, int]:
        journal = Journal.open(tmp_path / "j.sqlite3")
        journal.record_sale(
            token_id=MAX, products=[1], amount_cents=-250, description="K", tag=None, offline=True
        )
        client = WalletClient(huge_server, Secret("t"), timeout_s=1.0)
        sender = SaleSender(journal, client, ServerHealth(), dedupes=False, probe_interval_s=0.1)
        stop = asyncio.Event()
        task = asyncio.ensure_future(sender.run(stop))
        await asyncio.sleep(1.5)
        alive = not task.done()
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()
        left = journal.unconfirmed_count()
        journal.close()
        return alive, left

    alive, left = asyncio.run(main())
    assert alive, "the outbox task died"
    assert left == 1, "an answer that is not the API's must not settle the sale"


@contextlib.contextmanager
def _tiny_tmpfs(path: Path) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_pauses_the_outbox_without_starving_the_loop(tmp_path: Path) -> None:
    with _tiny_tmpfs(tmp_path / "state") as state, WalletEmulator.demo("doc") as emu:
        journal = Journal.open(state / "j.sqlite3")
        journal.record_sale(
            token_id=MAX, products=["espresso"], amount_cents=-250, description="K", tag=None, offline=True
        )
        journal.query("PRAGMA wal_checkpoint(TRUNCATE)")
        with open(state / "filler", "wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"x" * 65536)
                filler.flush()

        async def main() -> tuple[int, float]:
            client = WalletClient(emu.base_url, Secret(emu.api_token), timeout_s=1.0)
            sender = SaleSender(journal, client, ServerHealth(), dedupes=True)
            beats: list[float] = []

            async def heartbeat() -> None:
                while True:
                    beats.append(time.monotonic())
                    await asyncio.sleep(0.05)

            hb = asyncio.ensure_future(heartbeat())
            stop = asyncio.Event()
            run = asyncio.ensure_future(sender.run(stop))
            await asyncio.sleep(1.0)
            stop.set()
            asked = time.monotonic()
            await asyncio.wait_for(run, 10)
            stopped_in = time.monotonic() - asked
            hb.cancel()
            await client.aclose()
            return len(beats), stopped_in

        beats, stopped_in = asyncio.run(main())
        journal.close()
    assert beats >= 5, f"the event loop was starved: {beats} heartbeats in a second"
    assert stopped_in < 6.0


WALLET_TIMEOUT_S = 1.5  # [wallet] timeout_s: also the probe's deadline (it takes min(5 s, timeout_s))
PROBE_S = 0.2  # [offline] probe_interval_s


def test_a_dripping_server_sends_the_terminal_offline_and_it_is_back_soon_after_recovery(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    """Field report: a proxy dripping a byte every half second kept the probe hanging for minutes."""
    config = write_terminal_config(
        tmp_path, wallet_server, timeout_s=WALLET_TIMEOUT_S, probe_interval_s=PROBE_S
    )
    term = TerminalProcess(config)
    try:
        term.tap(MAX)  # online: the card's balance is known for the offline decision
        wait_for(lambda: settled(config, 1), what="the first sale")
        # Every answer to a GET now trickles in at 4 bytes a second: a terminal info takes over a minute.
        wallet_server.faults.inject(FaultKind.DRIP_AFTER, ms=250, cap_s=120, method="GET")
        term.tap(MAX)  # the lookup drips past the tap budget: decided offline
        wait_for(lambda: len(journal_lines(config)) == 2, what="the offline sale")
        # Probes keep running into the drip and end at their deadline, one after another.
        wait_for(lambda: wallet_server.faults.applied().get("drip_after", 0) >= 4, 30, "probes to end")
        assert len(wallet_server.transactions()) == 1
        wallet_server.faults.set_rules([])  # the server recovers; a probe under way is still dripped on
        recovered = time.monotonic()
        wait_for(lambda: len(wallet_server.transactions()) == 2, 60, "the offline sale to be delivered")
        back_after = time.monotonic() - recovered
        term.tap(MAX)
        wait_for(lambda: settled(config, 3), what="the third sale")
    finally:
        assert term.stop() == 0
    _, offline, online = journal_lines(config)
    assert offline["offline"] is True and offline["state"] == "done"
    assert online["offline"] is False and online["state"] == "done"  # the next tap is decided online
    assert [t.amount for t in wallet_server.transactions()] == [-250, -250, -250]
    assert wallet_server.balance(MAX) == 1250
    # At worst the probe under way runs to its deadline, then the outbox pauses and probes again.
    bound = WALLET_TIMEOUT_S + PROBE_S + MIN_PAUSE_S
    assert back_after <= bound + 5.0, f"back online {back_after:.1f} s after recovery (bound {bound:.1f} s)"


def test_a_client_dripping_its_command_does_not_hold_the_sim_reader(tmp_path: Path) -> None:
    """The same flaw on the tap socket: a per-read timeout let a slow client block every other tap."""
    with WalletEmulator.demo("doc") as emulator:
        term = TerminalProcess(write_terminal_config(tmp_path, emulator))
        stop, connected, cut = threading.Event(), threading.Event(), threading.Event()

        def drip() -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(str(term.socket))
                connected.set()
                try:
                    for byte in f"tap {ERIKA}".encode():  # a byte every 0.5 s and never the newline
                        sock.sendall(bytes([byte]))
                        if stop.wait(0.5):
                            return
                    sock.settimeout(30)
                    sock.recv(1)  # the reader ends the connection at its deadline
                except OSError:
                    pass
                cut.set()

        dripper = threading.Thread(target=drip, daemon=True)
        try:
            dripper.start()
            assert connected.wait(10)
            term.tap(MAX)  # each client is served on its own: answered while the drip goes on
            answered_while_dripping = not cut.is_set()
            wait_for(lambda: settled(term.config, 1), what="the sale")
            wait_for(cut.is_set, timeout=30, what="the reader to end the dripping connection")
        finally:
            stop.set()
            dripper.join(timeout=5)
            assert term.stop() == 0
    assert [line["token_id"] for line in journal_lines(term.config)] == [MAX]  # the drip tapped nothing
    # Order, not time: the tap was answered before the dripping client was cut off at its deadline (one
    # blocking accept loop answered only after it), and the drip was cut, not kept for ever.
    assert answered_while_dripping
