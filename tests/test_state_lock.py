"""One terminal per state directory: a second ``taptill run`` (or ``taptill recover``) on it refuses in one
line naming the PID that holds it and touches nothing; the lock dies with a killed terminal."""

from __future__ import annotations

import stat
from pathlib import Path

from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import ERIKA, MAX, TerminalProcess, journal_lines, taptill, wait_for, write_config


def _listing(state: Path) -> dict[str, tuple[int, int]]:
    """Every file in the state directory with its inode and size: what a refused command must not change."""
    return {p.name: (p.stat().st_ino, p.stat().st_size) for p in state.iterdir() if p.name != "tap.sock"}


def test_a_second_run_on_the_same_state_dir_refuses_and_the_first_keeps_selling(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        state = tmp_path / "state"
        first = TerminalProcess(config)
        try:
            socket_inode = first.socket.stat().st_ino
            first.tap(MAX)
            wait_for(lambda: len(emulator.transactions()) == 1, what="the first terminal's sale")
            wait_for(lambda: journal_lines(config)[-1]["state"] == "done", what="the sale journaled done")
            files = _listing(state)

            second = taptill("run", "--config", str(config), check=False)
            recover = taptill("recover", "--config", str(config), check=False)

            holder = f"another taptill run (PID {first.proc.pid}) is using {state}; stop it first"
            assert second.returncode == 1
            assert second.stderr.splitlines() == [f"taptill: {holder}"]
            assert recover.returncode == 1 and recover.stderr.splitlines() == [f"taptill: {holder}"]
            assert first.socket.stat().st_ino == socket_inode, "the socket is the first terminal's still"
            assert _listing(state) == files
            first.tap(ERIKA)
            wait_for(lambda: len(emulator.transactions()) == 2, what="a tap after the refused second run")
        finally:
            assert first.stop() == 0
        lock = state / "taptill.lock"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert lock.read_text() == f"{first.proc.pid} run\n"
    assert [t.token_id for t in emulator.transactions()] == [MAX, ERIKA]


def test_the_lock_dies_with_a_killed_terminal(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        first = TerminalProcess(config)
        first.kill()  # SIGKILL: no clean-up at all; the socket file and the lock file stay behind
        assert first.socket.exists()
        assert (tmp_path / "state" / "taptill.lock").read_text() == f"{first.proc.pid} run\n"
        again = TerminalProcess(config)
        try:
            again.tap(MAX)
            wait_for(lambda: len(emulator.transactions()) == 1, what="a sale after the restart")
        finally:
            assert again.stop() == 0


def test_a_terminal_with_another_state_dir_does_not_take_a_live_socket(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path / "a", emulator)
        first = TerminalProcess(config)
        try:
            socket_inode = first.socket.stat().st_ino
            other = write_config(tmp_path / "b", emulator)
            other.write_text(
                other.read_text().replace('socket = "state/tap.sock"', f'socket = "{first.socket}"')
            )

            second = taptill("run", "--config", str(other), check=False)

            assert second.returncode == 2
            assert (
                f"taptill: another terminal listens on {first.socket}; give this one its own" in second.stderr
            )
            assert "Traceback" not in second.stderr
            assert first.socket.stat().st_ino == socket_inode
            first.tap(MAX)
            wait_for(lambda: len(emulator.transactions()) == 1, what="a tap on the first terminal")
        finally:
            assert first.stop() == 0
        assert not first.socket.exists(), "the first terminal removes its own socket when it stops"
