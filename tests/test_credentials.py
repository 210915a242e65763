"""Every secret the config can name reaches the service one way: a root-only 0600 file that the unit passes
as a systemd credential. The list of secrets is found, not written down here: the config parser's keys,
the keys provisioning writes, and every place the terminal reads a secret (so a new one cannot be missed).
"""

from __future__ import annotations

import ast
import importlib
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomlkit

from provisioning.provision import EXIT_CHANGED, EXIT_USAGE
from provisioning.render import ConfigChoices, Ready2OrderChoices, config_toml, ready2order_table
from terminal.controller.operators import card_entry, new_operator_key, parse_operator_key
from terminal.emulator.partybroker import EmulatedDrink, PartybrokerEmulator
from terminal.emulator.wallet import WalletEmulator
from terminal.service.credentials import (
    BRINK_ACCESS_TOKEN,
    BRINK_LOCATION_TOKEN,
    METRICS_TOKEN,
    OPERATOR_KEY,
    SERVICE_SECRETS,
    YOURBARMATE_PASSWORD,
    ServiceSecret,
    loaded,
    service_source,
)
from terminal.service.unit_file import installed_unit, service_options
from tests.conftest import seed_program
from tests.terminal_lab import REPO
from tests.test_config_reference import accepted
from tests.test_provision import provision, tree

SECRET_KEY = "_file"  # a key that names a secret's file: token_file, password_file, operator_key_file, …
SOURCES = ("terminal", "provisioning", "hw")
OPERATOR = "0000BEEF"


def keys_the_config_parser_takes() -> set[tuple[str, str]]:
    return {(t, k) for t, keys in accepted().items() if "." not in t for k in keys if k.endswith(SECRET_KEY)}


def keys_provisioning_writes() -> set[tuple[str, str]]:
    """Every table provisioning can write, ready2order's too."""
    choices = ConfigChoices(
        state_dir="/var/lib/taptill",
        products=["espresso"],
        description="Kaffee",
        tag=None,
        mode="topup",
        wallet_url="https://wallet.example/api",
        reader_kind="sim",
        reader_name=None,
        sim_socket="/run/taptill/tap.sock",
        display_kind="none",
        oled_port=None,
        oled_address=None,
        partybroker_url="https://pb.example/api",
        party_id="1",
        partybroker_user="bar",
        ready2order=Ready2OrderChoices("https://api.ready2order.com/v1", 1, "Wallet", 1, False, 20),
    )
    data = tomllib.loads(config_toml(choices, {"topup": {"operator_key_file": "/etc/taptill/operator.key"}}))
    return {(t, k) for t, table in data.items() for k in table if k.endswith(SECRET_KEY)}


def credentials_the_code_reads() -> set[ServiceSecret]:
    """The credential of every ``read_secret(path, X.credential)`` in the program. A credential given
    any other way (a string of its own) fails here: the one table is the only place a secret is named."""
    found: set[ServiceSecret] = set()
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.py")):
            tree_ = ast.parse(path.read_text(encoding="utf-8"))
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for node in ast.walk(tree_):
                if not isinstance(node, ast.Call):
                    continue
                called = getattr(node.func, "id", getattr(node.func, "attr", None))
                assert called != "ServiceSecret" or module == "terminal.service.credentials", (
                    f"{module} makes a ServiceSecret of its own; add it to SERVICE_SECRETS"
                )
                if called != "read_secret":
                    continue
                arg = node.args[1]
                where = f"{module}:{node.lineno}"
                assert isinstance(arg, ast.Attribute) and arg.attr == "credential", f"{where} names its own"
                if isinstance(arg.value, ast.Name):
                    value = getattr(importlib.import_module(module), arg.value.id, None)
                    if value is not None:  # a module's constant; otherwise a parameter holding one
                        assert isinstance(value, ServiceSecret), where
                        found.add(value)
    return found


def test_every_secret_the_config_can_name_is_in_the_one_table_the_unit_is_wired_from() -> None:
    table = {(s.table, s.key) for s in SERVICE_SECRETS}
    named = keys_the_config_parser_takes() | keys_provisioning_writes()
    assert named == table, f"a secret's key is not in terminal.service.credentials: {named - table}"
    assert credentials_the_code_reads() <= set(SERVICE_SECRETS)
    assert len({s.credential for s in SERVICE_SECRETS}) == len(SERVICE_SECRETS)


@pytest.fixture
def image(tmp_path: Path, program_image: Path) -> Path:
    root = tmp_path / "image"
    seed_program(program_image, root)
    return root


def former_ready2order_run(root: Path) -> None:
    """What an earlier `taptill-provision --ready2order` left: the [ready2order] table and its token."""
    etc = root / "etc/taptill"
    etc.mkdir(parents=True)
    r2o = Ready2OrderChoices("https://api.ready2order.com/v1", 7, "Wallet", 3, True, 20)
    doc = tomlkit.document()
    doc.add("ready2order", ready2order_table(r2o))
    (etc / "config.toml").write_text(tomlkit.dumps(doc))
    token = etc / "ready2order.token"
    token.write_text("r2o-account-token\n")
    token.chmod(0o600)


def former_brink_table(root: Path) -> None:
    """A ``[brink]`` table added to the config by hand, with its two token files (root's, 0600)."""
    etc = root / "etc/taptill"
    with (etc / "config.toml").open("a") as config:
        config.write(
            '\n[brink]\nurl = "https://x.parpos.com/Ordering.svc"\n'
            f'access_token_file = "{BRINK_ACCESS_TOKEN.path}"\n'
            f'location_token_file = "{BRINK_LOCATION_TOKEN.path}"\n'
        )
    for secret in (BRINK_ACCESS_TOKEN, BRINK_LOCATION_TOKEN):
        token = root / secret.path.relative_to("/")
        token.write_text(f"{secret.credential}-value\n")
        token.chmod(0o600)


def former_yourbarmate_table(root: Path) -> None:
    """A ``[yourbarmate]`` table added to the config by hand, with its webhook password (root's, 0600)."""
    with (root / "etc/taptill/config.toml").open("a") as config:
        config.write(f'\n[yourbarmate]\npassword_file = "{YOURBARMATE_PASSWORD.path}"\n')
    password = root / YOURBARMATE_PASSWORD.path.relative_to("/")
    password.write_text("ybm-webhook-password\n")
    password.chmod(0o600)


def former_metrics_table(root: Path) -> None:
    """A ``[metrics]`` table added to the config by hand, with its bearer token (root's, 0600)."""
    with (root / "etc/taptill/config.toml").open("a") as config:
        config.write(f'\n[metrics]\nlisten = "0.0.0.0:9464"\ntoken_file = "{METRICS_TOKEN.path}"\n')
    token = root / METRICS_TOKEN.path.relative_to("/")
    token.write_text("metrics-bearer-token\n")
    token.chmod(0o600)


def kiosk_answers(folder: Path, wallet: WalletEmulator, key: str) -> Path:
    """An answers file for a kiosk whose [topup] names ``key`` (where `taptill operator add --config
    ANSWERS` keeps the operator key), with no operators yet."""
    answers = folder / "answers.toml"
    answers.write_text(
        f'[wallet]\nbase_url = "{wallet.base_url}"\n'
        '[terminal]\nmode = "topup"\ndescription = "Kasse"\n[reader]\nkind = "sim"\n'
        f'[topup]\noperator_key_file = "{key}"\nbuttons = {{ ten = "topup_10" }}\nclear_button = "clear"\n'
    )
    answers.chmod(0o600)
    return answers


def operator_add(answers: Path, name: str, uid: str) -> None:
    """`taptill operator add NAME --config ANSWERS`, and its line under [topup.operators] there."""
    proc = subprocess.run(
        [sys.executable, "-m", "terminal", "operator", "add", name, "--config", str(answers)],
        input=uid + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=True,
    )
    text = answers.read_text()
    head = "" if "[topup.operators]" in text else "[topup.operators]\n"
    answers.write_text(text + head + proc.stdout)


def test_provisioning_passes_every_secret_as_a_credential_and_a_kiosk_set_up_from_its_answers(
    image: Path, tmp_path: Path
) -> None:
    """A terminal naming every secret: the wallet token and the Partybroker password from their answers,
    a ready2order token an earlier run stored, and a kiosk's operator key, made on the spot by
    `taptill operator add --config ANSWERS` as the README's kiosk steps say; and PAR Brink's two tokens,
    one table's two secrets in one drop-in."""
    former_ready2order_run(image)
    former_brink_table(image)
    former_yourbarmate_table(image)
    former_metrics_table(image)
    password = tmp_path / "pb.password"
    password.write_text("s3cret\n")
    password.chmod(0o600)
    drinks = (EmulatedDrink(145, "espresso", "Espresso", 290),)
    with WalletEmulator.demo("doc") as wallet, PartybrokerEmulator(drinks=drinks, password="s3cret") as pb:
        answers = kiosk_answers(tmp_path, wallet, "operator.key")
        operator_add(answers, "olga", OPERATOR)
        source_key = tmp_path / "operator.key"
        assert stat.S_IMODE(source_key.stat().st_mode) == 0o600
        proc = provision(
            image,
            "--answers",
            str(answers),
            "--partybroker-url",
            pb.base_url,
            "--party-id",
            pb.party_id,
            "--partybroker-user",
            pb.username,
            "--partybroker-password-file",
            str(password),
            token=wallet.api_token,
        )
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    config = (image / "etc/taptill/config.toml").read_text()
    data = tomllib.loads(config)
    unit = installed_unit(image)
    assert unit is not None
    passed = loaded(service_options(unit))
    for secret in SERVICE_SECRETS:
        file = image / secret.path.relative_to("/")
        assert data[secret.table][secret.key] == str(secret.path), secret
        assert passed[secret.credential] == secret.path, secret
        assert (stat.S_IMODE(file.stat().st_mode), file.stat().st_uid) == (0o600, 0), secret
        # two tables may share a key's name (password_file): the line naming this secret's file
        (line,) = [
            x for x in config.splitlines() if x.startswith(f"{secret.key} = ") and str(secret.path) in x
        ]
        assert f"the service reads it as $CREDENTIALS_DIRECTORY/{secret.credential}" in line, line
    assert (image / OPERATOR_KEY.path.relative_to("/")).read_text() == source_key.read_text()
    key = parse_operator_key(source_key.read_text())
    assert data["topup"]["operators"]["olga"] == card_entry(key, OPERATOR)
    assert (
        "LoadCredential=topup.operator_key:/etc/taptill/operator.key"
        in (image / "etc/systemd/system/taptill.service.d/topup.conf").read_text()
    )
    brink = (image / "etc/systemd/system/taptill.service.d/brink.conf").read_text()
    assert "LoadCredential=brink.access_token:/etc/taptill/brink.access_token\n" in brink
    assert "LoadCredential=brink.location_token:/etc/taptill/brink.location_token\n" in brink


@pytest.mark.parametrize("case", ["another key", "no key", "open key"])
def test_a_kiosk_whose_service_could_not_get_the_operators_key_is_refused_before_anything_is_written(
    image: Path, tmp_path: Path, case: str
) -> None:
    with WalletEmulator.demo("doc") as wallet:
        answers = kiosk_answers(tmp_path, wallet, "operator.key")
        operator_add(answers, "olga", OPERATOR)
        key = tmp_path / "operator.key"
        if case == "another key":  # the key replaced after olga's line was made
            key.write_text(new_operator_key() + "\n")
        elif case == "no key":  # the answers name the terminal's own key, which it does not have
            answers.write_text(answers.read_text().replace('"operator.key"', '"/etc/taptill/operator.key"'))
        else:
            key.chmod(0o644)
        proc = provision(image, "--answers", str(answers), token=wallet.api_token)
    said = {
        "another key": "[topup.operators] olga: made under another operator key than this terminal's",
        "no key": "[topup] operator_key_file names /etc/taptill/operator.key, which does not exist under",
        "open key": f"holds the operator key but is mode 0644, open to other users; run: chmod 600 {key}",
    }[case]
    assert proc.returncode == EXIT_USAGE and said in proc.stderr, proc.stdout + proc.stderr
    assert tree(image / "etc") == {}  # nothing written


# --- where a check finds the secret the service gets -------------------------------------------------


def unit_tree(root: Path, config: Path, *credentials: str) -> None:
    """An installed taptill.service under ``root`` running ``config`` as user taptill, passing
    ``credentials`` (NAME:FILE) as LoadCredential= lines of a drop-in."""
    unit = root / "etc/systemd/system/taptill.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(
        f"[Service]\nExecStart=/opt/taptill/venv/bin/taptill run --config {config}\nUser=taptill\n"
    )
    dropin = root / "etc/systemd/system/taptill.service.d/topup.conf"
    dropin.parent.mkdir(exist_ok=True)
    dropin.write_text("[Service]\n" + "".join(f"LoadCredential={c}\n" for c in credentials))


def test_the_secret_is_looked_for_where_the_unit_passes_it_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, key, other = tmp_path / "config.toml", tmp_path / "operator.key", tmp_path / "other.key"
    for f in (key, other):
        f.write_text(new_operator_key() + "\n")
        f.chmod(0o600)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    root = tmp_path / "root"

    no_unit = service_source(OPERATOR_KEY, key, config, root)
    unit_tree(root, tmp_path / "another.toml", f"topup.operator_key:{other}")
    another_config = service_source(OPERATOR_KEY, key, config, root)
    unit_tree(root, config)
    not_passed = service_source(OPERATOR_KEY, key, config, root)
    unit_tree(root, config, f"topup.operator_key:{other}")
    elsewhere = service_source(OPERATOR_KEY, key, config, root)
    unit_tree(root, config, f"topup.operator_key:{key}")
    passed = service_source(OPERATOR_KEY, key, config, root)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "topup.operator_key").write_text(key.read_text())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    inside = service_source(OPERATOR_KEY, key, config, root)

    assert (no_unit.path, no_unit.problem) == (key, None)  # a checkout: the file the config names
    assert (another_config.path, another_config.problem) == (key, None)
    assert not_passed.problem == (
        f"/etc/systemd/system/taptill.service passes no credential topup.operator_key, and its user "
        f"taptill cannot read {key}: the service would not start; run taptill-provision again (it adds "
        f"LoadCredential=topup.operator_key:{key})"
    )
    assert elsewhere.path == other and elsewhere.problem == (
        f"[topup] operator_key_file names {key}, but the unit passes {other} as credential "
        "topup.operator_key; run taptill-provision again, or make both name the same file"
    )
    assert (passed.path, passed.problem, passed.credential) == (key, None, False)
    assert passed.where == f"{key} (the unit's topup.operator_key credential)"
    assert (inside.path, inside.credential) == (credentials / "topup.operator_key", True)
    assert os.environ["CREDENTIALS_DIRECTORY"] == str(credentials)


def test_a_kept_secret_open_to_others_is_refused_not_passed_on(image: Path) -> None:
    """A ready2order token an earlier run stored, since made readable by all: passing it to the service
    would bless a leaked secret, so provisioning names the chmod instead."""
    former_ready2order_run(image)
    token = image / "etc/taptill/ready2order.token"
    token.chmod(0o644)
    before = tree(image / "etc")
    with WalletEmulator.demo("doc") as wallet:
        flags = ["--reader", "sim", "--wallet-url", wallet.base_url, "--products", "espresso"]
        proc = provision(image, *flags, token=wallet.api_token)
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    assert (
        "/etc/taptill/ready2order.token ([ready2order] account_token_file) is mode 0644, open to other "
        f"users; run: chmod 600 {token}"
    ) in proc.stderr
    assert tree(image / "etc") == before
