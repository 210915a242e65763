"""``taptill-provision`` into a --root tree against the wallet and Partybroker emulators."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioning.install import DEFAULT_PREFIX, venv_python
from provisioning.provision import (
    EXIT_CHANGED,
    EXIT_MISSING,
    EXIT_REFUSED,
    EXIT_UNCHANGED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    SERVER_TIMEOUT_S,
)
from terminal.config import load_config
from terminal.config_section import Section
from terminal.emulator.faults import FaultKind
from terminal.emulator.partybroker import EmulatedDrink, PartybrokerEmulator
from terminal.emulator.wallet import WalletEmulator
from terminal.partybroker.config import parse_partybroker
from terminal.partybroker.outcomes import DrinkRef
from tests.conftest import seed_program
from tests.terminal_lab import MAX, REPO, TerminalProcess, espresso, journal_lines, wait_for
from tests.test_systemd import MAX_EXPOSURE, exposure
from tests.unit_lab import in_image, tool

# Only a guard against a hang: a whole provisioning run took over 60 s beside the suite's other workers
# (load 8+ on 2 cores), so the guard is far from what a slow run takes.
HANG_GUARD_S = 300


def provision(
    root: Path, *args: str, token: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TAPTILL_")}
    full_env.update(env or {})
    # the token on standard input, as the README says: not in argv (ps), nor in the environment
    stdin = ["--wallet-token-file", "-"] if token is not None else []
    return subprocess.run(
        [sys.executable, "-m", "provisioning.provision", "--root", str(root), *args, *stdin],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        cwd=REPO,
        env=full_env,
        input=(token or "") + "\n",
    )


def wallet_flags(emulator: WalletEmulator) -> list[str]:
    return [
        "--reader",
        "sim",
        "--wallet-url",
        emulator.base_url,
        "--products",
        str(espresso(emulator.flavour)),
        "--description",
        "Kaffee",
        "--tag",
        "coffee",
    ]


@pytest.fixture
def image(tmp_path: Path, program_image: Path) -> Path:
    """A --root that already holds an up-to-date /opt/taptill/venv (building one takes seconds)."""
    root = tmp_path / "image"
    seed_program(program_image, root)
    return root


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with (mode, mtime_ns): proves what was (not) written."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.lstat().st_mode, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def test_provisions_a_root_tree_then_has_nothing_to_change(
    image: Path, wallet_server: WalletEmulator
) -> None:
    root = image
    first = provision(root, *wallet_flags(wallet_server), token=wallet_server.api_token)
    assert first.returncode == EXIT_CHANGED, first.stderr
    etc = root / "etc" / "taptill"
    token = etc / "wallet.token"
    assert token.read_text().strip() == wallet_server.api_token
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    cfg = load_config(etc / "config.toml")
    assert [str(p) for p in cfg.terminal.products] == [str(espresso(wallet_server.flavour))]
    assert cfg.terminal.tag == "coffee" and cfg.terminal.description == "Kaffee"
    assert cfg.wallet.base_url == wallet_server.base_url
    assert cfg.wallet.token_file == Path("/etc/taptill/wallet.token")
    assert (cfg.reader.kind, cfg.display.kind) == ("sim", "none")  # nothing plugged in here
    assert "none found" in first.stdout
    assert "Espresso" in first.stdout and "permission " in first.stdout
    unit = root / "etc/systemd/system/taptill.service"
    assert "ExecStart=/opt/taptill/venv/bin/taptill run --config /etc/taptill/config.toml" in unit.read_text()
    assert "unchanged taptill in /opt/taptill/venv" in first.stdout  # the seeded venv is up to date
    wants = root / "etc/systemd/system/multi-user.target.wants/taptill.service"
    assert os.readlink(wants) == "/etc/systemd/system/taptill.service"
    assert "u taptill" in (root / "etc/sysusers.d/taptill.conf").read_text()
    assert wallet_server.api_token not in first.stdout + first.stderr

    before = tree(root)
    second = provision(root, *wallet_flags(wallet_server), token=wallet_server.api_token)
    assert second.returncode == EXIT_UNCHANGED, second.stderr
    assert "nothing to change" in second.stdout
    assert tree(root) == before


def test_a_changed_answer_rewrites_only_the_config(image: Path) -> None:
    root = image
    with WalletEmulator.demo("doc") as emulator:
        assert provision(root, *wallet_flags(emulator), token=emulator.api_token).returncode == EXIT_CHANGED
        token_before = tree(root)["etc/taptill/wallet.token"]
        flags = [*wallet_flags(emulator), "--description", "Espressobar"]
        again = provision(root, *flags, token=emulator.api_token)
    assert again.returncode == EXIT_CHANGED, again.stderr
    assert "update /etc/taptill/config.toml" in again.stdout
    assert "unchanged /etc/taptill/wallet.token" in again.stdout
    assert tree(root)["etc/taptill/wallet.token"] == token_before
    assert load_config(root / "etc/taptill/config.toml").terminal.description == "Espressobar"


def test_bad_token_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    root = tmp_path / "image"
    with WalletEmulator.demo("doc") as emulator:
        proc = provision(root, *wallet_flags(emulator), token="not-the-token")
    assert proc.returncode == EXIT_REFUSED
    assert "refused the API token" in proc.stderr
    assert tree(root) == {}


def test_unreachable_server_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "image"
    with WalletEmulator.demo("doc") as emulator:
        emulator.faults.set_down(True)
        proc = provision(root, *wallet_flags(emulator), token=emulator.api_token)
    assert proc.returncode == EXIT_UNREACHABLE, proc.stdout + proc.stderr
    assert "unreachable" in proc.stderr
    assert tree(root) == {}


def test_a_dripping_server_is_unreachable_at_the_deadline_and_nothing_is_written(tmp_path: Path) -> None:
    root = tmp_path / "image"
    with WalletEmulator.demo("doc") as emulator:
        # 200 ms a byte: the terminal info alone would take over a minute to arrive
        emulator.faults.inject(FaultKind.DRIP_AFTER, ms=200, cap_s=120, method="GET")
        started = time.monotonic()
        proc = provision(root, *wallet_flags(emulator), token=emulator.api_token)
        elapsed = time.monotonic() - started
    assert proc.returncode == EXIT_UNREACHABLE, proc.stdout + proc.stderr
    assert f"no complete answer within {SERVER_TIMEOUT_S:g} s" in proc.stderr
    assert SERVER_TIMEOUT_S <= elapsed <= SERVER_TIMEOUT_S + 15  # slack: a Python start-up, a loaded machine
    assert tree(root) == {}


def test_unknown_product_is_a_usage_error_naming_the_list(tmp_path: Path) -> None:
    root = tmp_path / "image"
    with WalletEmulator.demo("doc") as emulator:
        proc = provision(
            root,
            "--reader",
            "sim",
            "--wallet-url",
            emulator.base_url,
            "--products",
            "champagne",
            token=emulator.api_token,
        )
    assert proc.returncode == EXIT_USAGE
    assert "'champagne'" in proc.stderr and "espresso" in proc.stderr
    assert tree(root) == {}


def test_missing_answer_names_flag_and_variable(tmp_path: Path) -> None:
    proc = provision(tmp_path / "image", "--products", "espresso", token="x")
    assert proc.returncode == EXIT_USAGE
    assert "--wallet-url" in proc.stderr and "TAPTILL_WALLET_URL" in proc.stderr


def test_dry_run_shows_the_diff_without_secrets_and_writes_nothing(image: Path) -> None:
    root = image
    before = tree(root)
    with WalletEmulator.demo("doc") as emulator:
        dry = provision(root, *wallet_flags(emulator), "--dry-run", token=emulator.api_token)
        assert dry.returncode == EXIT_CHANGED, dry.stderr
        assert tree(root) == before
        assert "+++ /etc/taptill/config.toml" in dry.stdout
        assert '+description = "Kaffee"' in dry.stdout
        assert "wallet.token: secret (0600) would be written" in dry.stdout
        assert emulator.api_token not in dry.stdout + dry.stderr
        assert provision(root, *wallet_flags(emulator), token=emulator.api_token).returncode == EXIT_CHANGED
        again = provision(root, *wallet_flags(emulator), "--dry-run", token=emulator.api_token)
    assert again.returncode == EXIT_UNCHANGED
    assert "+++" not in again.stdout


def test_json_output_and_answers_file(tmp_path: Path, image: Path) -> None:
    root = image
    with WalletEmulator.demo("real") as emulator:
        token_file = tmp_path / "token.txt"
        token_file.write_text(emulator.api_token + "\n")
        token_file.chmod(0o600)
        answers = tmp_path / "answers.toml"
        answers.write_text(
            f'[wallet]\nbase_url = "{emulator.base_url}"\ntoken_file = "{token_file}"\n'
            '[terminal]\nproducts = [1, 2]\ndescription = "from the file"\ntag = "bar"\n'
            '[reader]\nkind = "sim"\n'
        )
        # the environment beats the answers file
        proc = provision(root, "--answers", str(answers), "--json", env={"TAPTILL_DESCRIPTION": "from env"})
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["exit_code"] == EXIT_CHANGED
    assert out["wallet"]["permission"] == "debit"
    assert {p["name"] for p in out["wallet"]["products"]} >= {"Espresso", "Cappuccino"}
    assert {f["path"]: f["action"] for f in out["files"]}["/etc/taptill/wallet.token"] == "create"
    assert out["display"] == {"kind": "none", "found": []}
    cfg = load_config(root / "etc/taptill/config.toml")
    assert cfg.terminal.products == (1, 2) and cfg.terminal.description == "from env"


def test_partybroker_drinks_are_listed_and_mapped(image: Path) -> None:
    root = image
    before = tree(root)
    drinks = (
        EmulatedDrink(145, "espresso", "Espresso doppio", 290),  # externalId equals the product id
        EmulatedDrink(146, None, "Cappuccino", 230),  # only the title matches
        EmulatedDrink(147, "345678", "Pils", 210),
    )
    with WalletEmulator.demo("doc") as wallet, PartybrokerEmulator(drinks=drinks, password="s3cret") as pb:
        flags = [
            "--reader",
            "sim",
            "--wallet-url",
            wallet.base_url,
            "--products",
            "espresso,cappuccino",
            "--partybroker-url",
            pb.base_url,
            "--party-id",
            pb.party_id,
            "--partybroker-user",
            pb.username,
        ]
        wrong = provision(root, *flags, token=wallet.api_token, env={"TAPTILL_PARTYBROKER_PASSWORD": "nope"})
        assert wrong.returncode == EXIT_REFUSED and "Partybroker refused" in wrong.stderr
        assert tree(root) == before
        proc = provision(root, *flags, token=wallet.api_token, env={"TAPTILL_PARTYBROKER_PASSWORD": "s3cret"})
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert "3 drinks" in proc.stdout and "Pils" in proc.stdout
    password = root / "etc/taptill/partybroker.password"
    assert password.read_text().strip() == "s3cret" and stat.S_IMODE(password.stat().st_mode) == 0o600
    assert "s3cret" not in proc.stdout + proc.stderr
    dropin = (root / "etc/systemd/system/taptill.service.d/partybroker.conf").read_text()
    assert "LoadCredential=partybroker.password:/etc/taptill/partybroker.password" in dropin
    import tomllib

    data = tomllib.loads((root / "etc/taptill/config.toml").read_text())
    cfg = parse_partybroker(Section("partybroker", data["partybroker"]), Path("/etc/taptill"))
    assert cfg is not None and cfg.party_id == "1234"
    mapped = {k: v.drink for k, v in cfg.drinks.items()}
    assert mapped == {"espresso": DrinkRef(external_id="espresso"), "cappuccino": DrinkRef(id=146)}


def test_the_installed_unit_verifies_and_keeps_its_score(image: Path) -> None:
    """Verified as the booted image has it: ExecStart's venv at /opt/taptill (verify checks it exists)."""
    root = image
    with WalletEmulator.demo("doc") as emulator:
        assert provision(root, *wallet_flags(emulator), token=emulator.api_token).returncode == EXIT_CHANGED
    unit = root / "etc/systemd/system/taptill.service"
    proc = in_image(root, DEFAULT_PREFIX, [tool("systemd-analyze"), "verify", "--man=no", str(unit)])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert exposure(unit) <= MAX_EXPOSURE


@pytest.mark.parametrize("flavour", ["doc", "real"])
def test_the_provisioned_config_runs_a_terminal(tmp_path: Path, image: Path, flavour: str) -> None:
    """The written config starts ``taptill run``: secrets come in as systemd credentials would; only the
    state directory and socket move from the unit's own (/var/lib/taptill, /run/taptill) into tmp_path."""
    root = image
    socket = tmp_path / "run" / "tap.sock"
    with WalletEmulator.demo(flavour) as emulator:  # type: ignore[arg-type]
        proc = provision(root, *wallet_flags(emulator), token=emulator.api_token)
        assert proc.returncode == EXIT_CHANGED, proc.stderr
        written = (root / "etc/taptill/config.toml").read_text()
        assert 'state_dir = "/var/lib/taptill"' in written and 'socket = "/run/taptill/tap.sock"' in written
        config = tmp_path / "config.toml"
        config.write_text(
            written.replace('"/var/lib/taptill"', f'"{tmp_path / "state"}"').replace(
                '"/run/taptill/tap.sock"', f'"{socket}"'
            )
        )
        socket.parent.mkdir()
        credentials = {"CREDENTIALS_DIRECTORY": str(root / "etc/taptill")}
        term = TerminalProcess(config, env=credentials, socket=socket)
        try:
            term.tap(MAX)
            wait_for(lambda: any(s["state"] == "done" for s in journal_lines(config)), what="a settled sale")
        finally:
            assert term.stop() == 0
    assert (tmp_path / "state/journal.sqlite3").exists()


# --- refusals: a terminal that could never sell, answers that are not what they seem ---------------


def test_no_reader_found_is_refused_unless_sim_is_asked_for(tmp_path: Path) -> None:
    root = tmp_path / "image"
    no_pcscd = {"PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm")}  # no lab pcscd can answer
    with WalletEmulator.demo("doc") as emulator:
        flags = wallet_flags(emulator)[2:]  # without --reader sim: auto-detect
        proc = provision(root, *flags, token=emulator.api_token, env=no_pcscd)
    assert proc.returncode == EXIT_MISSING, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no NFC reader found" in lines[0]
    assert "--reader sim" in lines[0] and "tty:AMA0:pn532" in lines[0]
    assert "Traceback" not in proc.stderr
    assert tree(root) == {}


def test_an_explicit_reader_that_is_not_there_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "image"
    no_pcscd = {"PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm")}
    with WalletEmulator.demo("doc") as emulator:
        flags = [*wallet_flags(emulator)[2:], "--reader", "pcsc"]
        proc = provision(root, *flags, token=emulator.api_token, env=no_pcscd)
    assert proc.returncode == EXIT_MISSING, proc.stdout + proc.stderr
    assert "no NFC reader found (pcscd is not running" in proc.stderr
    assert tree(root) == {}


def test_an_oled_asked_for_but_not_found_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "image"
    with WalletEmulator.demo("doc") as emulator:
        proc = provision(root, *wallet_flags(emulator), "--display", "oled", token=emulator.api_token)
    assert proc.returncode == EXIT_MISSING, proc.stdout + proc.stderr
    assert "no OLED found" in proc.stderr and "--display none" in proc.stderr
    assert tree(root) == {}


@pytest.mark.parametrize(
    ("answers", "named"),
    [
        ('[wallet]\nbase_url = "URL"\ntoken_fil = "/etc/token"\n', "[wallet] has unknown key 'token_fil'"),
        ('[wallet]\nbase_url = "URL"\n[termnal]\nproducts = ["espresso"]\n', "unknown table [termnal]"),
        ('wallet = "URL"\n', "[wallet] must be a table"),
    ],
)
def test_answers_file_unknown_keys_are_refused_like_the_config(
    tmp_path: Path, answers: str, named: str
) -> None:
    root = tmp_path / "image"
    path = tmp_path / "answers.toml"
    with WalletEmulator.demo("doc") as emulator:
        path.write_text(answers.replace("URL", emulator.base_url))
        proc = provision(root, "--reader", "sim", "--answers", str(path), token=emulator.api_token)
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and str(path) in lines[0], lines
    assert tree(root) == {}


@pytest.mark.parametrize(
    ("how", "named"),
    [
        ("flag", "--wallet-url or $TAPTILL_WALLET_URL or wallet.base_url"),
        ("answers", "wallet.base_url"),
        ("partybroker", "--partybroker-url or $TAPTILL_PARTYBROKER_URL or partybroker.base_url"),
    ],
)
def test_a_base_url_without_scheme_is_a_usage_error_naming_the_key(
    tmp_path: Path, how: str, named: str
) -> None:
    root = tmp_path / "image"
    bare = "pretix.example/api/v1/organizers/demo/events/demo/wallet"
    answers = tmp_path / "answers.toml"
    answers.write_text(f'[wallet]\nbase_url = "{bare}"\n')
    args = {
        "flag": ["--wallet-url", bare],
        "answers": ["--answers", str(answers)],
        "partybroker": ["--wallet-url", "https://" + bare, "--partybroker-url", "partybroker.example/api"],
    }[how]
    proc = provision(root, "--reader", "sim", "--products", "espresso", *args, token="t")
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "expected an http:// or https:// URL" in lines[0], lines
    assert "unreachable" not in proc.stderr
    assert tree(root) == {}


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (
            ["--prefix", "/home/pi/taptill"],
            "could not run /home/pi/taptill/venv/bin/taptill (ProtectHome=yes",
        ),
        (["--prefix", "/root/taptill"], "ProtectHome=yes hides /root"),
        (["--prefix", "/tmp/taptill"], "PrivateTmp=yes"),
        (["--state-dir", "/home/pi/state"], "journal in /home/pi/state (ProtectHome=yes hides /home)"),
        (
            ["--state-dir", "/srv/taptill"],
            "journal in /srv/taptill (ProtectSystem=strict makes it read-only)",
        ),
        (["--sim-socket", "/tmp/tap.sock"], "could not reach the sim socket /tmp/tap.sock (PrivateTmp=yes"),
        (["--sim-socket", "/srv/tap.sock"], "could not create the sim socket /srv/tap.sock"),
    ],
)
def test_a_unit_that_could_not_start_is_refused_before_anything_is_written(
    tmp_path: Path, flags: list[str], named: str
) -> None:
    root = tmp_path / "image"
    with WalletEmulator.demo("doc") as emulator:
        proc = provision(root, *wallet_flags(emulator), *flags, token=emulator.api_token)
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taptill-provision: the unit could not start: "), lines
    assert named in lines[0], lines
    assert tree(root) == {}


def test_taptill_bin_is_checked_against_the_unit_like_the_venv(image: Path) -> None:
    """An existing install may be named instead of --prefix, but only one the unit could start."""
    root = image
    home_copy = root / "home/pi/taptill/venv"
    shutil.copytree(root / "opt/taptill/venv", home_copy, symlinks=True, copy_function=os.link)
    with WalletEmulator.demo("doc") as emulator:
        flags = wallet_flags(emulator)
        hidden = provision(
            root, *flags, "--taptill-bin", "/home/pi/taptill/venv/bin/taptill", token=emulator.api_token
        )
        binary = provision(
            root, *flags, "--taptill-bin", "/opt/taptill/venv/bin/python", token=emulator.api_token
        )
        fine = provision(
            root, *flags, "--taptill-bin", "/opt/taptill/venv/bin/taptill", token=emulator.api_token
        )
    assert hidden.returncode == EXIT_USAGE, hidden.stderr
    assert "could not run /home/pi/taptill/venv/bin/taptill (ProtectHome=yes hides /home)" in hidden.stderr
    assert binary.returncode == EXIT_MISSING and "is not a taptill script" in binary.stderr, binary.stderr
    assert fine.returncode == EXIT_CHANGED, fine.stderr
    assert "/opt/taptill/venv/bin/taptill (given with --taptill-bin)" in fine.stdout


# --- a terminal that dispenses: [gpio], [select], [topup] from the answers file ---------------------


def dispensing_answers(emulator: WalletEmulator, tables: str) -> str:
    product = espresso(emulator.flavour)
    return (
        f'[wallet]\nbase_url = "{emulator.base_url}"\n'
        f'[terminal]\nmode = "select"\ndescription = "Kaffee"\n[reader]\nkind = "sim"\n'
        + tables.replace("PRODUCT", json.dumps(product))
    )


GPIO_SELECT = (
    "[gpio]\nenabled = true\nrelay_pin = 17\n[gpio.buttons]\nespresso = 5\ncancel = 6\n"
    '[select]\ncancel_button = "cancel"\n[select.buttons]\nespresso = PRODUCT\n'
)


def test_answers_file_provisions_a_select_terminal_whose_relay_and_buttons_work(
    tmp_path: Path, image: Path
) -> None:
    """The venv gets gpiozero (the gpio extra), the unit group gpio, the config [gpio] and [select]."""
    root = image
    with WalletEmulator.demo("doc") as emulator:
        answers = tmp_path / "answers.toml"
        answers.write_text(dispensing_answers(emulator, GPIO_SELECT))
        proc = provision(root, "--answers", str(answers), token=emulator.api_token)
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert "install taptill[gpio] in /opt/taptill/venv" in proc.stdout
    cfg = load_config(root / "etc/taptill/config.toml")
    assert cfg.terminal.mode == "select"
    assert (cfg.gpio.enabled, cfg.gpio.relay_pin, cfg.gpio.buttons) == (
        True,
        17,
        {"espresso": 5, "cancel": 6},
    )
    assert cfg.select.buttons == {"espresso": espresso("doc")} and cfg.select.cancel_button == "cancel"
    unit = (root / "etc/systemd/system/taptill.service").read_text()
    assert "SupplementaryGroups=gpio\n" in unit
    assert "g gpio -" in (root / "etc/sysusers.d/taptill.conf").read_text()
    assert "/dev/gpiochip0 checked when run on the terminal itself" in proc.stdout
    venv = root / "opt/taptill/venv"
    assert json.loads((venv / "taptill-provision.json").read_text())["extras"] == ["gpio"]
    probe = subprocess.run(
        [str(venv / "bin/python"), "-c", "import gpiozero; print(gpiozero.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith(str(venv / "lib")), probe.stdout  # the venv's own, not the system's


def test_a_rerun_keeps_a_table_added_by_hand(image: Path) -> None:
    """Provisioning owns [terminal], [wallet], [reader], [display], [partybroker]; a [gpio] or [offline]
    added by hand stays, and a [gpio] that enables pins brings the gpio group and extra with it."""
    root = image
    existing = ["--taptill-bin", "/opt/taptill/venv/bin/taptill"]  # the seeded venv: no pip install
    with WalletEmulator.demo("doc") as emulator:
        flags = wallet_flags(emulator)
        assert provision(root, *flags, *existing, token=emulator.api_token).returncode == EXIT_CHANGED
        config = root / "etc/taptill/config.toml"
        with config.open("a") as f:
            f.write('\n[gpio]\nenabled=true\nrelay_pin=17\n\n[offline]\nmode = "decline"\n')
        dry = provision(root, *flags, "--dry-run", token=emulator.api_token)
        rerun = provision(root, *flags, *existing, "--description", "Espressobar", token=emulator.api_token)
        again = provision(root, *flags, *existing, "--description", "Espressobar", token=emulator.api_token)
    assert dry.returncode == EXIT_CHANGED, dry.stdout + dry.stderr
    assert "install taptill[gpio] in /opt/taptill/venv" in dry.stdout
    # the hand-written table comes back in provisioning's layout, with the same keys and values
    assert "\n [gpio]\n" in dry.stdout and "\n+enabled = true\n+relay_pin = 17\n" in dry.stdout, dry.stdout
    assert rerun.returncode == EXIT_CHANGED, rerun.stdout + rerun.stderr
    cfg = load_config(config)
    assert cfg.terminal.description == "Espressobar"
    assert (cfg.gpio.enabled, cfg.gpio.relay_pin, cfg.offline.mode) == (True, 17, "decline")
    assert "SupplementaryGroups=gpio\n" in (root / "etc/systemd/system/taptill.service").read_text()
    assert again.returncode == EXIT_UNCHANGED, again.stdout + again.stderr


@pytest.mark.parametrize(
    ("tables", "named"),
    [
        ('[gpio]\nenabled = true\nrelay_pin = "17"\n', "[gpio] relay_pin must be a whole number"),
        ("[gpio]\nenabled = true\nrelay_pn = 17\n", "[gpio] has unknown key 'relay_pn'"),
        ("[gpio.buttons]\nespresso = 99\n", "[gpio.buttons] espresso"),
        ("[gpio]\nrelay_pin = 17\nbuzzer_pin = 17\n", "buzzer_pin uses GPIO17, already used by relay_pin"),
        ("[select]\ncart_timeout_s = 0\n", "[select] cart_timeout_s"),
        ('[topup]\noperators = ["cafe"]\n', "[topup] operators is a list of unsalted SHA-256 card hashes"),
        ('[select]\nbuttons = "espresso"\n', "[select.buttons] must be a table"),
    ],
)
def test_answers_file_config_tables_are_checked_by_the_configs_rules(
    tmp_path: Path, tables: str, named: str
) -> None:
    root = tmp_path / "image"
    answers = tmp_path / "answers.toml"
    with WalletEmulator.demo("doc") as emulator:
        answers.write_text(dispensing_answers(emulator, tables))
        answers.chmod(0o600)  # [topup] operators make it a secret
        proc = provision(root, "--answers", str(answers), token=emulator.api_token)
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"answers file {answers}: " in lines[0] and named in lines[0], lines
    assert tree(root) == {}


def test_select_mode_without_its_buttons_names_the_answers_table(tmp_path: Path) -> None:
    root = tmp_path / "image"
    answers = tmp_path / "answers.toml"
    with WalletEmulator.demo("doc") as emulator:
        answers.write_text(dispensing_answers(emulator, "[gpio]\nenabled = true\nrelay_pin = 17\n"))
        proc = provision(root, "--answers", str(answers), token=emulator.api_token)
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    assert "[select] buttons is empty" in proc.stderr and "check the answers" in proc.stderr
    assert tree(root) == {}


# --- messages that name the real fix ----------------------------------------------------------------


def test_a_hidden_python_is_named_as_the_interpreter_not_the_install_place(tmp_path: Path) -> None:
    """The venv under /opt is fine; the Python it would be built on is what the unit hides."""
    root = tmp_path / "image"
    hidden_python = tmp_path / "pyenv" / "python3"  # under /tmp: PrivateTmp hides it, as ProtectHome /root
    hidden_python.parent.mkdir()
    hidden_python.symlink_to(getattr(sys, "_base_executable", sys.executable))
    with WalletEmulator.demo("doc") as emulator:
        flags = [*wallet_flags(emulator), "--python", str(hidden_python)]
        proc = provision(root, *flags, token=emulator.api_token)
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert f"could not run {hidden_python} (PrivateTmp=yes" in line, line
    assert "that interpreter (--python) is hidden from the service" in line, line
    assert "--python /usr/bin/python3" in line and "(--prefix)" not in line, line
    assert tree(root) == {}


def test_taptill_bin_missing_inside_the_image_says_it_was_looked_up_there(tmp_path: Path) -> None:
    root = tmp_path / "image"
    host_bin = tmp_path / "fresh" / ".venv/bin/taptill"
    host_bin.parent.mkdir(parents=True)
    host_bin.write_text("#!/usr/bin/python3\n")  # exists on this machine, not in the image
    with WalletEmulator.demo("doc") as emulator:
        flags = [*wallet_flags(emulator), "--taptill-bin", str(host_bin)]
        proc = provision(root, *flags, token=emulator.api_token)
    assert proc.returncode == EXIT_MISSING, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert f"--taptill-bin {host_bin} does not exist inside the image" in line, line
    assert f"looked up as {root.resolve()}{host_bin}" in line, line
    assert tree(root) == {}


def test_python_reports_the_interpreter_the_venv_is_built_on(image: Path) -> None:
    root = image
    python = venv_python(None)
    version = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    with WalletEmulator.demo("doc") as emulator:
        text = provision(root, *wallet_flags(emulator), "--dry-run", token=emulator.api_token)
        as_json = provision(root, *wallet_flags(emulator), "--dry-run", "--json", token=emulator.api_token)
    assert text.returncode == EXIT_CHANGED, text.stderr
    assert f"python:      {python} {version} (the venv is built on it)" in text.stdout, text.stdout
    assert json.loads(as_json.stdout)["python"] == {"path": str(python), "version": version}


@pytest.mark.parametrize(
    ("on_disk", "named"),
    [
        ('[gpio]\nrelay_pin = "17"\n', "the tables kept from /etc/taptill/config.toml ([gpio])"),
        ("[gpio\nrelay_pin = 17\n", "/etc/taptill/config.toml cannot be read as TOML"),
        (  # the terminal's own parser checks a kept [ready2order], as `taptill run` would
            "[ready2order]\npayment_method_id = 3\nuser_id = 1\nrequests_per_minute = 600\n",
            "[ready2order] requests_per_minute is 600; ready2order allows 60 a minute",
        ),
    ],
)
def test_a_config_whose_kept_tables_would_not_load_is_named_and_left_alone(
    tmp_path: Path, on_disk: str, named: str
) -> None:
    root = tmp_path / "image"
    config = root / "etc/taptill/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(on_disk)
    before = tree(root)
    with WalletEmulator.demo("doc") as emulator:
        proc = provision(root, *wallet_flags(emulator), token=emulator.api_token)
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines
    assert tree(root) == before
