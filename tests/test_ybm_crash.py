"""A process serving yourbarmate's webhook killed with SIGKILL while it answers an event: the sender
resends (as yourbarmate does on anything but 200/201), and the event is applied exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from terminal.journal import Journal
from tests.terminal_lab import REPO
from tests.ybm_lab import PASSWORD, PATH, SEED_EXAMPLE, USER

ORDERED = [("gin", "ordered", 8400, "123456789")]


def serve(journal: Path, crashpoint: str | None, port: int = 0) -> tuple[subprocess.Popen[str], int]:
    env = {k: v for k, v in os.environ.items() if k != "TAPTILL_CRASHPOINT"}
    if crashpoint:
        env["TAPTILL_CRASHPOINT"] = crashpoint
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ybm_lab", str(journal), str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"the receiver did not start: {line!r}"
    return proc, int(line)


def send_until_200(journal: Path, port: int, crashpoint: str) -> list[str]:
    """Post the seed's example as yourbarmate would (the receiver restarted when it dies); each answer."""
    said = []
    proc, port = serve(journal, crashpoint, port)
    for _ in range(3):
        try:
            r = httpx.post(
                f"http://127.0.0.1:{port}{PATH}", json=SEED_EXAMPLE, auth=(USER, PASSWORD), timeout=10
            )
            said.append(str(r.json()["status"]))
            if r.status_code == 200:
                break
        except httpx.TransportError as exc:
            said.append(type(exc).__name__)
            assert proc.wait(timeout=10) == -9  # killed where the test asked
            proc, port = serve(journal, None, port)  # systemd restarts it
    proc.kill()
    proc.wait(timeout=10)
    return said


@pytest.mark.parametrize(
    ("crashpoint", "then"), [("ybm_before_commit", "accepted"), ("ybm_after_commit", "duplicate")]
)
def test_a_kill_while_an_event_is_answered_applies_it_once_after_the_resend(
    tmp_path: Path, crashpoint: str, then: str
) -> None:
    journal_path = tmp_path / "journal.sqlite3"
    Journal.open(journal_path).close()
    said = send_until_200(journal_path, 0, crashpoint)
    assert said[-1] == then and len(said) == 2, said
    journal = Journal.open_read_only(journal_path)
    try:
        moves = [tuple(r) for r in journal.query("SELECT product, kind, amount, ref FROM stock_moves")]
        events = journal.query("SELECT idempotency_key FROM ybm_events")
    finally:
        journal.close()
    assert moves == ORDERED
    assert events == [("aJb5iQs18NrZqg3H-tiDq",)]
