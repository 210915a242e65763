"""Every message a person reads says what is wrong and what to do, in one line, and says it at start."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from terminal.ops.doctor import diagnose
from tests.raw_http import RawHttpServer, http_response
from tests.terminal_lab import (
    MAX,
    TerminalProcess,
    journal_lines,
    kiosk_operators,
    taptill,
    wait_for,
    write_config,
)

OPERATOR = "04C0FFEE000001"


def one_line(stderr: str) -> str:
    """The single line of ``stderr``, which must be nothing else (no traceback)."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def last_line(stderr: str) -> str:
    """What ``taptill run`` says last (its log goes to stderr before it), with no traceback anywhere."""
    assert "Traceback" not in stderr, stderr
    return stderr.splitlines()[-1]


def read_only(path: Path) -> list[str]:
    """A prefix that runs a command with ``path`` bind-mounted read-only in a mount namespace of its own
    (the machine's mounts stay untouched): a state or output folder on a read-only file system."""
    return ["unshare", "--mount", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(path)]


def server_check(config: Path) -> tuple[str, str]:
    (check,) = [c for c in diagnose(config) if c.name == "server"]
    return check.status, check.detail


def test_gif_into_a_missing_folder_is_refused_before_anything_runs(tmp_path: Path) -> None:
    gif = tmp_path / "missing" / "demo.gif"
    demo = taptill("demo", "--out", str(tmp_path / "out"), "--gif", str(gif), check=False)
    assert demo.returncode == 2 and demo.stdout == ""  # no scenario played for a recording to be lost
    line = one_line(demo.stderr)
    assert line == (
        f"taptill: --gif {gif}: folder {gif.parent} does not exist; create it (mkdir -p) or choose another"
    )
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        run = taptill("run", "--config", str(config), "--gif", str(gif), check=False)
        folder = taptill("run", "--config", str(config), "--gif", str(tmp_path), check=False)
    assert run.returncode == 2 and one_line(run.stderr) == line
    assert not (tmp_path / "state").exists(), "the terminal started before the check"
    assert folder.returncode == 2
    assert one_line(folder.stderr).startswith(f"taptill: --gif {tmp_path} is a folder; give a file name")


def test_demo_out_on_a_file_or_a_read_only_folder(tmp_path: Path) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n")
    on_file = taptill("demo", "--out", str(afile), check=False)
    assert on_file.returncode == 2 and afile.read_text() == "mine\n"
    assert one_line(on_file.stderr) == (
        f"taptill: --out {afile} is a file, not a folder; give a folder (it is created if missing)"
    )
    locked = tmp_path / "locked"
    locked.mkdir()
    on_ro = taptill("demo", "--out", str(locked / "demo"), check=False, prefix=read_only(locked))
    assert on_ro.returncode == 2, on_ro.stderr
    assert one_line(on_ro.stderr) == (
        f"taptill: --out {locked / 'demo'} cannot be written (Read-only file system); "
        "choose a writable folder"
    )
    gif_ro = taptill("demo", "--gif", str(locked / "x.gif"), check=False, prefix=read_only(locked))
    assert gif_ro.returncode == 2 and "Read-only file system" in one_line(gif_ro.stderr)


def test_select_buttons_naming_an_unknown_product_are_refused_at_start(tmp_path: Path) -> None:
    extra = '[select]\nbuttons = { b1 = "espresso", b2 = "champagne" }\ncancel_button = "cancel"\n'
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator, products=[], mode="select", extra=extra)
        run = taptill("run", "--config", str(config), check=False, timeout=60)
        doctor = server_check(config)
    assert run.returncode == 2
    line = last_line(run.stderr)
    assert line.startswith(
        "taptill: [select] buttons b2 = 'champagne' names a product the wallet server does not offer; "
        "it offers: espresso (Espresso)"
    ), line
    assert "[terminal] products" not in run.stderr and "taptill ready" not in run.stderr
    assert doctor[0] == "FAIL" and "[select] buttons b2 = 'champagne'" in doctor[1]


def test_a_tap_product_the_server_does_not_offer_is_refused_at_start(tmp_path: Path) -> None:
    """Field check: tap mode started "ready" with an empty price line and every tap unavailable."""
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator, products=[99])
        run = taptill("run", "--config", str(config), check=False, timeout=60)
        doctor = server_check(config)
    assert run.returncode == 2
    assert last_line(run.stderr).startswith(
        "taptill: [terminal] products has 99, which the wallet server does not offer; it offers: espresso "
        "(Espresso), cappuccino (Cappuccino), "
    )
    assert "taptill ready" not in run.stderr
    assert doctor[0] == "FAIL" and "configured product(s) 99 not on the server's list" in doctor[1]


def test_a_button_the_cached_product_list_lacks_is_refused_at_an_offline_start(tmp_path: Path) -> None:
    """The server is down at start: the cached list is what the buttons are checked against."""
    good = '[select]\nbuttons = { b1 = "espresso" }\ncancel_button = "cancel"\n'
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator, products=[], mode="select", extra=good)
        term = TerminalProcess(config)
        try:
            wait_for(lambda: "taptill ready" in term.log(), what="a start that caches the product list")
        finally:
            assert term.stop() == 0
        config.write_text(config.read_text().replace('b1 = "espresso"', 'b1 = "espresso", b2 = "champagne"'))
        emulator.faults.set_down(True)
        run = taptill("run", "--config", str(config), check=False, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "starting on the cached product list" in run.stderr
    assert last_line(run.stderr).startswith(
        "taptill: [select] buttons b2 = 'champagne' names a product the wallet server does not offer"
    )
    assert "taptill ready" not in run.stderr


def test_a_topup_button_on_a_debit_product_is_refused_at_start(tmp_path: Path) -> None:
    key_line, operators = kiosk_operators(tmp_path, {"olga": OPERATOR})
    extra = f"""
[topup]
{key_line}
buttons = {{ ten = "topup_10", coffee = "espresso" }}
{operators}"""
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator, products=[], mode="topup", extra=extra)
        run = taptill("run", "--config", str(config), check=False, timeout=60)
        doctor = server_check(config)
    assert run.returncode == 2
    assert last_line(run.stderr) == (
        "taptill: [topup] buttons coffee = 'espresso' is 'Espresso', a product sold (price 250 cents), "
        "not a top-up; map it to a credit product (negative price)"
    )
    assert doctor[0] == "FAIL" and "[topup] buttons coffee = 'espresso'" in doctor[1]


def test_doctor_on_a_read_only_state_directory_says_read_only(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        state = tmp_path / "state"
        state.mkdir()
        proc = taptill("doctor", "--config", str(config), check=False, prefix=read_only(state))
    (disk,) = [line for line in proc.stdout.splitlines() if line.split()[1:2] == ["disk"]]
    assert proc.returncode == 1
    assert disk.startswith("FAIL") and f"{state} is on a read-only file system" in disk
    assert "MB free" not in disk and "SD card" not in disk


def test_a_redirect_to_https_names_the_url_for_base_url(tmp_path: Path) -> None:
    with RawHttpServer([b""]) as server, WalletEmulator.demo("doc") as emulator:
        port = server.base_url.split(":")[2].split("/")[0]
        moved = f"https://127.0.0.1:{port}/wallet"
        server.answers = [http_response(301, b"", content_type="text/html", Location=f"{moved}/pos/terminal")]
        config = write_config(tmp_path, emulator)
        text = config.read_text().replace(emulator.base_url, server.base_url)
        config.write_text(text)
        run = taptill("run", "--config", str(config), check=False, timeout=60)
        doctor = server_check(config)
    want = f'{server.base_url} redirects to {moved}; put base_url = "{moved}" in [wallet]'
    assert run.returncode == 2 and last_line(run.stderr) == f"taptill: the wallet server {want}"
    assert "trailing slash" not in run.stdout + run.stderr
    assert doctor == ("FAIL", want)


def test_a_server_error_on_every_call_suggests_the_slugs(tmp_path: Path) -> None:
    with WalletEmulator.demo("real") as emulator:  # a pretix URL: /api/v1/organizers/<o>/events/<e>/…
        emulator.faults.inject(FaultKind.ERROR500_BEFORE)
        config = write_config(tmp_path, emulator)
        doctor = server_check(config)
        term = TerminalProcess(config)
        term.stop()
        said = f"server error 500: check organizer and event slugs in base_url ({emulator.base_url})"
    assert doctor == ("FAIL", f"the wallet server answers terminal info with {said}")
    assert re.search(rf"WARNING .*wallet server answers with an error \({re.escape(said)}\)", term.log())


def test_a_token_file_that_is_a_directory_says_so(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        token = tmp_path / "wallet.token"
        token.unlink()
        token.mkdir(mode=0o755)
        run = taptill("run", "--config", str(config), check=False, timeout=60)
        doctor = [c for c in diagnose(config) if c.name == "secrets"]
    said = f"secret file {token} is a directory; point the key at the file in it that holds the secret"
    assert run.returncode == 2 and one_line(run.stderr) == f"taptill: {said}"
    assert [(c.status, c.detail) for c in doctor] == [("FAIL", said)]


def test_a_uid_that_is_not_utf8_is_named_as_such(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        # b"\xff\xfe" on the command line (Python passes these surrogates on as those bytes)
        tap = taptill("tap", "--config", str(config), "\udcff\udcfe", check=False)
        key = taptill("settle", "--config", str(config), "k\udcff", "--booked", check=False)
        button = taptill("press", "--config", str(config), "\udcff", check=False)
    assert tap.returncode == 2
    assert one_line(tap.stderr) == (
        "taptill: UID b'\\xff\\xfe' is not UTF-8 text; give the card UID in hex, e.g. 04A1B2C3D4E5F6"
    )
    assert key.returncode == 2
    assert one_line(key.stderr) == "taptill: KEY b'k\\xff' is not UTF-8 text; type it again"
    assert button.returncode == 2 and "is not UTF-8 text" in one_line(button.stderr)


def test_a_file_where_a_folder_must_be_is_named(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    gif = taptill("demo", "--gif", str(afile / "x.gif"), check=False)
    out = taptill("demo", "--out", str(afile / "sub" / "out"), check=False)
    assert gif.returncode == 2 and one_line(gif.stderr) == (
        f"taptill: --gif {afile / 'x.gif'}: {afile} is a file, not a folder; choose a path in a folder"
    )
    assert out.returncode == 2 and one_line(out.stderr) == (
        f"taptill: --out {afile / 'sub' / 'out'}: {afile} is a file, not a folder; "
        "give a folder (it is created if missing)"
    )
    assert afile.read_text() == "mine\n"


def test_tap_remove_takes_no_uid_and_no_terminal_has_its_own_exit_code(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        remove = taptill("tap", "--config", str(config), "--remove", "04A1B2C3D4E5F6", check=False)
        nobody = taptill("tap", "--config", str(config), "04A1B2C3D4E5F6", check=False)
        nobody_press = taptill("press", "--config", str(config), "b1", check=False)
    assert remove.returncode == 2 and one_line(remove.stderr) == (
        "taptill: tap --remove takes no UID (it takes away the card held on the reader); "
        "drop '04A1B2C3D4E5F6'"
    )
    assert nobody.returncode == 3 and one_line(nobody.stderr).startswith("taptill: no terminal listening on")
    assert nobody_press.returncode == 3
    usage = taptill("--help").stdout
    assert "3 no terminal listening" in " ".join(usage.split()), usage


def test_a_stop_says_outputs_released_once(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        term = TerminalProcess(write_config(tmp_path, emulator))
        wait_for(lambda: "taptill ready" in term.log(), what="the terminal to start")
        assert term.stop() == 0
    assert term.log().count("outputs released") == 1, term.log()


@pytest.mark.parametrize("flavour", ["real"])  # no deduplication: an ambiguous sale waits its window
def test_a_queued_sale_says_queued_and_only_an_offline_one_says_offline(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    # The field: a sale left ambiguous, the same card's next tap queued behind it while the server is up,
    # and the guest told "offline" though the journal says offline: false.
    term = TerminalProcess(write_config(tmp_path, wallet_server, display="console"))
    cfg = str(term.config)
    try:
        wallet_server.faults.inject(FaultKind.DROP_AFTER, times=1, method="POST", route="transaction")
        lost = taptill("tap", MAX, "--config", cfg, check=False)  # booked, its answer lost: ambiguous
        # The dropped connection opens the circuit breaker until the next probe answers; the next tap is
        # meant for a server that is up again (else it is decided offline, as it should be), so it waits
        # for that instead of racing the probe (it passed under load only, where `taptill` starts slowly).
        if "deciding taps offline" in term.log():
            wait_for(lambda: "wallet server reachable again" in term.log(), what="the probe")
        behind = taptill("tap", MAX, "--config", cfg, check=False)  # queued behind it, the server up
        wallet_server.faults.set_down(True)
        offline = taptill("tap", MAX, "--config", cfg, check=False)
        log = term.log()
    finally:
        term.stop()
    for queued in (lost, behind):
        assert queued.returncode == 0, queued.stderr
        assert queued.stdout.endswith(
            " (estimated); queued behind an earlier sale or an answer on its way: booked shortly\n"
        ), queued.stdout
    assert (offline.returncode, offline.stdout) == (
        0,
        "approved 2,50 €; offline: booked when the server is back\n",
    )
    assert [s["offline"] for s in journal_lines(term.config)] == [False, False, True]
    # The screen: what the console display drew for each, in order.
    said = [line for line in log.splitlines() if "Booked shortly" in line or "Balance updates later" in line]
    assert ["Booked shortly" in s for s in said] == [True, True, False], said


def test_a_tap_whose_terminal_is_killed_while_it_waits_says_so_in_one_line(tmp_path: Path) -> None:
    """Field check: `taptill tap` printed an empty line (exit 1) when the terminal died mid-tap."""
    with WalletEmulator.demo("doc") as emulator:
        emulator.faults.inject(FaultKind.LATENCY, ms=3000, method="POST", times=1)
        config = write_config(tmp_path, emulator)
        term = TerminalProcess(config)
        try:
            tap = subprocess.Popen(
                [sys.executable, "-m", "terminal", "tap", "--config", str(config), MAX],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            wait_for(
                lambda: emulator.stats()["requests_by_route"].get("transaction", 0) >= 1,
                what="the debit to reach the server",
            )
            term.kill()
            out, err = tap.communicate(timeout=30)
        finally:
            term.kill()
    assert tap.returncode == 1 and out == "", (out, err)
    assert one_line(err) == (
        "taptill: the terminal stopped before it answered; taptill queue shows whether the tap was "
        "journaled (start it again with taptill run)"
    )


def test_a_client_that_hangs_up_without_a_command_is_not_answered_or_warned_about(tmp_path: Path) -> None:
    """A probe of the tap socket (connect, close) is no command: the log once said 'did nothing for a
    command' and then warned of a broken pipe."""
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        term = TerminalProcess(config)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(str(term.socket))
            term.tap(MAX)
            wait_for(lambda: len(emulator.transactions()) == 1, what="the tap after the probe to be charged")
        finally:
            log = term.log()
            term.kill()
    assert "did nothing for" not in log and "went away" not in log, log  # nor its broken pipe
