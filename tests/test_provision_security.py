"""``taptill-provision`` under attack: server text, secrets in the open, a root that leads out, packaging."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from provisioning.install import CONSTRAINTS, SOURCE_PARTS
from provisioning.provision import EXIT_CANNOT_WRITE, EXIT_CHANGED, EXIT_REFUSED, EXIT_USAGE
from provisioning.report import Report
from terminal.config import OfflineConfig, load_config
from terminal.controller.operators import card_entry, new_operator_key, parse_operator_key
from terminal.emulator.partybroker import EmulatedDrink, PartybrokerEmulator
from terminal.emulator.wallet import WalletEmulator
from terminal.model import printable
from tests.conftest import seed_program
from tests.raw_http import RawHttpServer, http_response
from tests.terminal_lab import REPO, taptill
from tests.test_provision import provision
from tests.test_server_text import CONTROL

EXISTING = ("--taptill-bin", "/opt/taptill/venv/bin/taptill")  # the seeded venv: no pip install
INJECTED = "x\n[offline]\nmax_total_cents = 99999999"


@pytest.fixture
def image(tmp_path: Path, program_image: Path) -> Path:
    """A --root that already holds an up-to-date /opt/taptill/venv."""
    root = tmp_path / "image"
    seed_program(program_image, root)
    return root


def test_a_drink_title_with_newlines_stays_one_value_and_adds_no_table(image: Path) -> None:
    """A Partybroker title that spells a TOML table is written as one escaped string, not as a table."""
    root = image
    drinks = (EmulatedDrink(145, "espresso", INJECTED, 290),)  # mapped by externalId, so its title is written
    with WalletEmulator.demo("doc") as wallet, PartybrokerEmulator(drinks=drinks, password="s3cret") as pb:
        proc = provision(
            root,
            "--reader",
            "sim",
            "--wallet-url",
            wallet.base_url,
            "--products",
            "espresso",
            "--partybroker-url",
            pb.base_url,
            "--party-id",
            pb.party_id,
            "--partybroker-user",
            pb.username,
            token=wallet.api_token,
            env={"TAPTILL_PARTYBROKER_PASSWORD": "s3cret"},
        )
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    config = root / "etc/taptill/config.toml"
    data = tomllib.loads(config.read_text())
    assert "offline" not in data
    # made one printable line where it entered (terminal.model.printable), and a value, not TOML
    assert data["partybroker"]["drinks"]["espresso"]["title"] == " ".join(INJECTED.split())
    assert load_config(config).offline == OfflineConfig()  # the default limits, not 99,999,999 cents


# Escape sequences (CSI, OSC with BEL), a C1 CSI, newlines, a CR and a bidi override in a server's text.
HOSTILE_TITLE = "Espresso\x1b[31m\x1b]0;pwned\x07\n<3>forged line\r\nand\u202e more\x9b2J"


def test_server_text_in_the_report_is_one_plain_line_in_text_and_json(image: Path) -> None:
    """A Partybroker drink title and a wallet product name with escape sequences and newlines: every line
    provisioning prints (the wallet's products, the drinks, the mapping, the diff, the JSON report) holds
    them as one printable line, so they neither clear nor retitle the terminal nor forge a line."""
    drinks = (EmulatedDrink(145, "espresso", HOSTILE_TITLE, 290),)
    products = [("espresso", HOSTILE_TITLE, 250)]
    with (
        WalletEmulator.demo("doc", products=products) as wallet,
        PartybrokerEmulator(drinks=drinks, password="s3cret") as pb,
    ):
        flags = [
            *wallet_flags(wallet),
            *EXISTING,
            "--partybroker-url",
            pb.base_url,
            "--party-id",
            pb.party_id,
            "--partybroker-user",
            pb.username,
        ]
        env = {"TAPTILL_PARTYBROKER_PASSWORD": "s3cret"}
        dry = provision(image, *flags, "--dry-run", token=wallet.api_token, env=env)
        as_json = provision(image, *flags, "--dry-run", "--json", token=wallet.api_token, env=env)
    assert dry.returncode == EXIT_CHANGED, dry.stdout + dry.stderr
    for out in (dry.stdout, dry.stderr, as_json.stdout, as_json.stderr):
        assert not CONTROL.search(out), repr(CONTROL.search(out))
    clean = printable(HOSTILE_TITLE)
    lines = dry.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("<3>", "and", " more"))], lines
    (drinks_line,) = [line for line in lines if line.startswith("partybroker:")]
    (wallet_line,) = [line for line in lines if line.startswith("wallet:")]
    assert clean in drinks_line and clean in wallet_line and clean.startswith("Espresso <3>forged line")
    report = json.loads(as_json.stdout)
    assert report["partybroker"][0]["title"] == clean and report["wallet"]["products"][0]["name"] == clean


def test_a_redirect_naming_escape_sequences_is_one_plain_line_from_provisioning_and_taptill_run(
    tmp_path: Path,
) -> None:
    """The one server text that reached a person unparsed: a redirect's Location header, quoted in the
    one-line refusal (h11 lets C1 controls through a header: \\x9b is CSI on many terminals)."""
    location = "https://elsewhere.example/pos\x9b2J\x9b31mred\x85x"
    with RawHttpServer([http_response(302, b"", location=location)]) as server:
        proc = provision(
            tmp_path / "image", "--reader", "sim", "--wallet-url", server.base_url, token="t0ken"
        )
        config = tmp_path / "config.toml"
        (tmp_path / "wallet.token").write_text("t0ken\n")
        (tmp_path / "wallet.token").chmod(0o600)
        config.write_text(
            f'[terminal]\nproducts = ["espresso"]\ndescription = "Bar"\nstate_dir = "{tmp_path / "state"}"\n'
            f'[wallet]\nbase_url = "{server.base_url}"\ntoken_file = "{tmp_path / "wallet.token"}"\n'
            '[reader]\nkind = "sim"\n[display]\nkind = "none"\n'
        )
        run = taptill("run", "--config", str(config), check=False, timeout=60)
    assert proc.returncode == EXIT_REFUSED, proc.stdout + proc.stderr
    assert run.returncode == 2, run.stdout + run.stderr
    for said in (proc.stderr, run.stderr):
        (line,) = [x for x in said.splitlines() if x.startswith(("taptill-provision:", "taptill:"))]
        assert "redirects to https://elsewhere.example/posred x" in line, said
        assert not CONTROL.search(said), repr(said)


def test_the_report_prints_raw_server_text_as_printable_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """The last line of defence, for text that did not pass a parser: the human lines, the final
    message, the JSON report (json.dumps passes C1 and bidi controls) and a diff keep their line breaks
    but nothing else that is not printable."""
    for as_json in (False, True):
        report = Report(as_json)
        report.line("mapping", {"espresso": HOSTILE_TITLE}, f"espresso → {HOSTILE_TITLE}")
        report.data["diff"] = f"-title = 1\n+title = {HOSTILE_TITLE!a}\u202e\x9b\n"
        report.finish(EXIT_CHANGED, f"provisioned {HOSTILE_TITLE}")
    out = capsys.readouterr().out
    assert not CONTROL.search(out), repr(CONTROL.search(out))
    text, _, rest = out.partition("{")
    assert text.splitlines() == [
        f"mapping:     espresso → {printable(HOSTILE_TITLE)}",
        f"provisioned {printable(HOSTILE_TITLE)}",
    ]
    data = json.loads("{" + rest)
    assert data["mapping"] == {"espresso": printable(HOSTILE_TITLE)}
    assert data["diff"].splitlines() == ["-title = 1", f"+title = {HOSTILE_TITLE!a}"]


# --- item 6: --root stays inside the image ----------------------------------------------------------


def wallet_flags(emulator: WalletEmulator) -> list[str]:
    return ["--reader", "sim", "--wallet-url", emulator.base_url, "--products", "espresso"]


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("link", ["etc/taptill", "etc", "opt"])
def test_an_absolute_symlink_out_of_the_image_is_refused_and_the_host_untouched(
    tmp_path: Path, link: str
) -> None:
    root, host = tmp_path / "image", tmp_path / "host"
    host.mkdir()
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(host)  # absolute, as `ln -s /somewhere img/etc/taptill` makes it
    with WalletEmulator.demo("doc") as emulator:
        proc = provision(root, *wallet_flags(emulator), token=emulator.api_token)
    assert proc.returncode == EXIT_CANNOT_WRITE, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and f"/{link} in --root {root} is a symlink to {host}, outside the image" in lines[0]
    )
    assert files_under(host) == []
    assert emulator.api_token not in proc.stdout + proc.stderr


def test_a_config_symlinked_to_a_host_file_is_neither_shown_nor_replaced(tmp_path: Path) -> None:
    root, host_file = tmp_path / "image", tmp_path / "shadow"
    host_file.write_text('[offline]\nmode = "decline"\n# host-only text\n')
    (root / "etc/taptill").mkdir(parents=True)
    (root / "etc/taptill/config.toml").symlink_to(host_file)
    with WalletEmulator.demo("doc") as emulator:
        proc = provision(root, *wallet_flags(emulator), "--dry-run", token=emulator.api_token)
    assert proc.returncode == EXIT_CANNOT_WRITE, proc.stdout + proc.stderr
    assert "host-only" not in proc.stdout + proc.stderr and "decline" not in proc.stdout
    assert "/etc/taptill/config.toml in --root" in proc.stderr
    assert host_file.read_text().endswith("# host-only text\n")


def test_a_relative_symlink_that_stays_inside_the_image_is_followed(image: Path) -> None:
    (image / "srv/taptill").mkdir(parents=True)
    (image / "etc").mkdir()
    (image / "etc/taptill").symlink_to("../srv/taptill")
    with WalletEmulator.demo("doc") as emulator:
        proc = provision(image, *wallet_flags(emulator), token=emulator.api_token)
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert (image / "srv/taptill/wallet.token").read_text().strip() == emulator.api_token
    assert load_config(image / "srv/taptill/config.toml").terminal.description == "taptill"


# --- item 3: secrets never on a command line or in a logged environment --------------------------------


def test_a_token_from_the_environment_works_but_warns_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "image"
    with WalletEmulator.demo("doc") as emulator:
        proc = provision(
            root, *wallet_flags(emulator), "--dry-run", env={"TAPTILL_WALLET_TOKEN": emulator.api_token}
        )
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, proc.stderr
    assert "$TAPTILL_WALLET_TOKEN" in warnings[0] and "--wallet-token-file FILE" in warnings[0]
    assert emulator.api_token not in proc.stdout + proc.stderr


def test_the_token_on_standard_input_gives_no_warning(tmp_path: Path) -> None:
    root = tmp_path / "image"
    with WalletEmulator.demo("doc") as emulator:
        proc = provision(root, *wallet_flags(emulator), "--dry-run", token=emulator.api_token)
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert "warning" not in proc.stderr


@pytest.mark.parametrize(("mode", "refused"), [(0o644, True), (0o640, True), (0o600, False), (0o400, False)])
def test_a_token_file_open_to_other_users_is_refused_with_the_chmod_line(
    tmp_path: Path, mode: int, refused: bool
) -> None:
    root, token_file = tmp_path / "image", tmp_path / "wallet.token"
    with WalletEmulator.demo("doc") as emulator:
        token_file.write_text(emulator.api_token + "\n")
        token_file.chmod(mode)
        proc = provision(root, *wallet_flags(emulator), "--wallet-token-file", str(token_file), "--dry-run")
    if not refused:
        assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
        return
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"mode {mode:04o}" in lines[0] and f"chmod 600 {token_file}" in lines[0]
    assert not root.exists()


@pytest.mark.parametrize(
    "table",
    ['[wallet]\ntoken = "TOKEN"\n', '[partybroker]\npassword = "pw"\n', '[topup.operators]\nolga = "OP"\n'],
)
def test_an_answers_file_holding_a_secret_must_be_0600(tmp_path: Path, table: str) -> None:
    answers = tmp_path / "answers.toml"
    answers.write_text(table.replace("OP", "hmac-sha256:" + "0" * 64))
    answers.chmod(0o644)
    proc = provision(tmp_path / "image", "--answers", str(answers))
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"answers file {answers} holds [" in lines[0], lines
    assert f"chmod 600 {answers}" in lines[0] and "TOKEN" not in lines[0] and "pw" not in lines[0]


def test_the_readme_install_line_puts_no_secret_in_the_environment_or_argv() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Install on a Raspberry Pi", 1)[1].split("\n## ", 1)[0]
    commands = "\n".join(line for line in section.splitlines() if line.startswith("    "))
    assert "TAPTILL_WALLET_TOKEN=" not in commands and "TAPTILL_PARTYBROKER_PASSWORD=" not in commands
    assert "--wallet-token-file -" in commands


# --- item 9: supply chain and packaging --------------------------------------------------------------


def _extras() -> dict[str, list[str]]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras: dict[str, list[str]] = data["project"]["optional-dependencies"]
    return extras


def _pulled_by(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """The requirement names an extra installs, through taptill[...] self-references."""
    names: set[str] = set()
    for req in extras[extra]:
        if req.startswith("taptill["):
            for inner in req[len("taptill[") : req.index("]")].split(","):
                names |= _pulled_by(inner.strip(), extras)
        else:
            names.add(re.split(r"[<>=;\s\[]", req, maxsplit=1)[0].lower())
    return names


def test_the_hw_extra_puts_no_emulator_or_pygame_on_a_terminal() -> None:
    extras = _extras()
    pulled = _pulled_by("hw", extras)
    assert {"pyscard", "nfcpy", "gpiozero"} <= pulled
    assert not pulled & {"luma.emulator", "pygame"}, pulled
    assert "luma.emulator" in _pulled_by("dev", extras)  # the tests still have it


def test_a_wheel_carries_the_unit_template_and_the_constraints(tmp_path: Path) -> None:
    """A wheel install can provision: the unit and the pinned versions are inside the package."""
    src = tmp_path / "src"
    src.mkdir()
    for part in SOURCE_PARTS:
        path = REPO / part
        if path.is_dir():
            shutil.copytree(path, src / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / part)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("taptill-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        unit = zf.read("provisioning/taptill.service").decode()
        constraints = zf.read("provisioning/constraints.txt").decode()
    assert unit == (REPO / "systemd/taptill.service").read_text()
    assert "\nhttpx==" in constraints and "\ntomlkit==" in constraints


def test_the_venv_provisioning_builds_has_the_constrained_versions(program_image: Path) -> None:
    """Every package in the venv built by provisioning's installer is at its pinned version."""
    pins = {
        name.lower(): version
        for name, _, version in (line.partition("==") for line in CONSTRAINTS.read_text().splitlines())
        if version
    }
    code = "import importlib.metadata as m\nfor d in m.distributions(): print(d.name.lower(), d.version)"
    venv_python = program_image / "opt/taptill/venv/bin/python"
    out = subprocess.run(
        [str(venv_python), "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    installed = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert {"aiohttp", "pillow", "luma.oled", "tomlkit"} <= set(installed)
    assert "httpx" not in installed  # a test and bench tool only (taptill[dev])
    assert {n: v for n, v in installed.items() if n in pins} == {n: pins[n] for n in installed if n in pins}


def test_a_topup_kiosk_is_provisioned_from_the_answers_with_its_operators(
    tmp_path: Path, image: Path
) -> None:
    """Operators come as the config spells them, checked by the config's own [topup] parser, with the key
    they were made under (beside the answers), which goes where the unit passes it to the service."""
    key = tmp_path / "operator.key"
    key.write_text(new_operator_key() + "\n")
    key.chmod(0o600)
    entry = card_entry(parse_operator_key(key.read_text()), "04C0FFEE000001")
    with WalletEmulator.demo("doc") as emulator:  # doc: the terminal may credit
        answers = tmp_path / "answers.toml"
        answers.write_text(
            f'[wallet]\nbase_url = "{emulator.base_url}"\n'
            '[terminal]\nmode = "topup"\ndescription = "Kasse"\n[reader]\nkind = "sim"\n'
            '[topup]\noperator_key_file = "operator.key"\n'
            'buttons = { ten = "topup_10" }\nclear_button = "clear"\n'
            f'[topup.operators]\nolga = "{entry}"\n'
        )
        answers.chmod(0o600)
        proc = provision(image, "--answers", str(answers), *EXISTING, token=emulator.api_token)
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    cfg = load_config(image / "etc/taptill/config.toml")
    assert cfg.terminal.mode == "topup" and cfg.topup.buttons == {"ten": "topup_10"}
    assert len(cfg.topup.operators) == 1
    assert cfg.topup.operator_key_file == Path("/etc/taptill/operator.key")
    assert (image / "etc/taptill/operator.key").read_text() == key.read_text()


def test_a_rerun_over_hand_edits_shows_the_diff_and_keeps_a_0600_backup(image: Path) -> None:
    etc = image / "etc/taptill"
    with WalletEmulator.demo("doc") as emulator:
        flags = [*wallet_flags(emulator), *EXISTING]
        assert provision(image, *flags, token=emulator.api_token).returncode == EXIT_CHANGED
        ours = provision(image, *flags, "--description", "Bar", token=emulator.api_token)
        assert ours.returncode == EXIT_CHANGED and list(etc.glob("*.bak-*")) == []  # its own file: no backup
        config = etc / "config.toml"
        edited = config.read_text().replace('description = "Bar"', 'description = "Bar by hand"  # why')
        config.write_text(edited)
        dry = provision(image, *flags, "--dry-run", token=emulator.api_token)
        assert list(etc.glob("*.bak-*")) == []
        rerun = provision(image, *flags, token=emulator.api_token)
    assert dry.returncode == EXIT_CHANGED and "edited by hand; a run keeps it" in dry.stdout
    assert rerun.returncode == EXIT_CHANGED, rerun.stdout + rerun.stderr
    assert "edited by hand; kept it as config.toml.bak-" in rerun.stdout
    assert '-description = "Bar by hand"  # why\n+description = "taptill"\n' in rerun.stdout
    (backup,) = etc.glob("config.toml.bak-*")
    assert backup.read_text() == edited and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert load_config(config).terminal.description == "taptill"
