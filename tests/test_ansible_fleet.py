"""The Ansible role provisions a fleet: real ansible-playbook on three local hosts, each a --root tree."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from terminal.config import load_config
from terminal.emulator.wallet import WalletEmulator
from tests.conftest import seed_program
from tests.terminal_lab import REPO, espresso
from tests.test_provision import tree

ANSIBLE = REPO / "provisioning" / "ansible"
BIN = Path(sys.executable).parent  # ansible-core is in the dev extra, beside this Python
HOSTS = ("bar-1", "bar-2", "coffee-1")
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
VAULT_PASSWORD = "festival-vault-password"


def ansible_env(home: Path) -> dict[str, str]:
    """This environment without ANSIBLE_* and TAPTILL_*, and Ansible's config, state and temp files in
    ``home``: no ~/.ansible, no ansible.cfg from a working directory, no prompt (CI has no stdin)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "TAPTILL_"))}
    home.mkdir(parents=True, exist_ok=True)
    (home / "ansible.cfg").write_text("")
    env.update(
        ANSIBLE_CONFIG=str(home / "ansible.cfg"),
        ANSIBLE_HOME=str(home / "home"),
        ANSIBLE_LOCAL_TEMP=str(home / "local"),
        ANSIBLE_REMOTE_TEMP=str(home / "remote"),
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        LC_ALL="C.UTF-8",  # Ansible refuses to start in a locale whose encoding is not UTF-8 (LC_ALL=C)
    )
    return env


@dataclass(frozen=True)
class Fleet:
    """An inventory of local hosts, a vault password file and every Ansible directory inside ``home``."""

    home: Path
    wallet: WalletEmulator

    def root(self, host: str) -> Path:
        return self.home / "hosts" / host

    @property
    def stage(self) -> Path:
        return self.home / "stage"

    def env(self) -> dict[str, str]:
        env = ansible_env(self.home / "ansible")
        env.update(
            ANSIBLE_VAULT_PASSWORD_FILE=str(self.home / "vault-password"),
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
            # provisioning from this checkout (the venv's editable install may be another one)
            PYTHONPATH=str(REPO),
        )
        return env

    def vault(self, relative: str, data: dict[str, str]) -> None:
        """A vars file encrypted by the real ansible-vault (JSON is YAML)."""
        path = self.home / "inventory" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        done = subprocess.run(
            [str(BIN / "ansible-vault"), "encrypt", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env(),
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        assert path.read_text().startswith("$ANSIBLE_VAULT;")

    def playbook(self, *args: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        done = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(self.home / "inventory" / "hosts.yml"),
                str(ANSIBLE / "playbook.yml"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=self.home,
            env=self.env(),
            stdin=subprocess.DEVNULL,
        )
        print(f"ansible-playbook {' '.join(args)}: {time.monotonic() - started:.1f} s")
        return done

    def trees(self) -> dict[str, dict[str, tuple[int, int]]]:
        return {h: tree(self.root(h)) for h in HOSTS}


def recap(run: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """PLAY RECAP: host → {ok, changed, unreachable, failed}."""
    rows = {
        m[0]: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m[1:]), strict=True))
        for m in RECAP.findall(run.stdout.split("PLAY RECAP", 1)[-1])
    }
    assert set(rows) == set(HOSTS), run.stdout + run.stderr
    return rows


@pytest.fixture
def fleet(tmp_path: Path, program_image: Path) -> Iterator[Fleet]:
    with WalletEmulator.demo("doc") as wallet:
        fleet = Fleet(tmp_path, wallet)
        product = espresso(wallet.flavour)
        (tmp_path / "vault-password").write_text(VAULT_PASSWORD + "\n")
        (tmp_path / "vault-password").chmod(0o600)
        fleet.stage.mkdir(mode=0o700)
        hosts: dict[str, dict[str, object]] = {
            "bar-1": {"taptill_host_answers": {"terminal": {"description": "Bar 1", "tag": "beer"}}},
            "bar-2": {"taptill_host_answers": {"terminal": {"description": "Bar 2", "tag": "beer"}}},
            # nested tables ([gpio.buttons], [select.buttons]) go through the role's TOML rendering
            "coffee-1": {
                "taptill_host_answers": {
                    "terminal": {"description": 'Kaffee "Süd"', "tag": "coffee", "mode": "select"},
                    "gpio": {"enabled": False, "relay_pin": 17, "buttons": {"espresso": 5, "cancel": 13}},
                    "select": {"cancel_button": "cancel", "buttons": {"espresso": product}},
                }
            },
        }
        for host, host_vars in hosts.items():
            seed_program(program_image, fleet.root(host))  # taptill already installed: no pip install
            host_vars["taptill_root"] = str(fleet.root(host))
        inventory = {
            "all": {
                "children": {
                    "terminals": {
                        "hosts": hosts,
                        "vars": {
                            "ansible_connection": "local",
                            "taptill_become": False,
                            "taptill_provision_command": [sys.executable, "-m", "provisioning.provision"],
                            "taptill_stage_parent": str(fleet.stage),
                            "taptill_wallet_token": "{{ vault_wallet_token }}",
                            "taptill_event_answers": {
                                "wallet": {"base_url": wallet.base_url},
                                "reader": {"kind": "sim"},
                                "display": {"kind": "none"},
                            },
                            "taptill_group_answers": {"terminal": {"products": [product]}},
                        },
                    }
                }
            }
        }
        (tmp_path / "inventory").mkdir()
        (tmp_path / "inventory" / "hosts.yml").write_text(json.dumps(inventory, indent=1))
        fleet.vault("group_vars/terminals/vault.yml", {"vault_wallet_token": wallet.api_token})
        yield fleet


def test_a_fleet_is_provisioned_then_unchanged_and_one_wrong_token_fails_that_host_alone(
    fleet: Fleet,
) -> None:
    token = fleet.wallet.api_token
    seeded = fleet.trees()

    check = fleet.playbook("--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert all(r["changed"] == 1 and r["failed"] == 0 for r in recap(check).values()), check.stdout
    assert check.stdout.count("dry run: ") == len(HOSTS)  # each host's summary: what would change
    assert fleet.trees() == seeded  # --check is provisioning's dry run: nothing written
    assert list(fleet.stage.iterdir()) == []

    # provisioning refuses a token file other users could read: this run also proves the staged one's 0600
    first = fleet.playbook()
    assert first.returncode == 0, first.stdout + first.stderr
    assert all(r["changed"] == 1 and r["failed"] == 0 for r in recap(first).values()), first.stdout
    assert first.stdout.count("provisioned: ") == len(HOSTS)
    for host in HOSTS:
        etc = fleet.root(host) / "etc" / "taptill"
        cfg = load_config(etc / "config.toml")
        assert cfg.wallet.base_url == fleet.wallet.base_url
        assert [str(p) for p in cfg.terminal.products] == [str(espresso(fleet.wallet.flavour))]
        assert cfg.wallet.token_file == Path("/etc/taptill/wallet.token")
        secret = etc / "wallet.token"
        assert secret.read_text().strip() == token
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        unit = fleet.root(host) / "etc" / "systemd" / "system" / "taptill.service"
        assert "ExecStart=/opt/taptill/venv/bin/taptill run" in unit.read_text()
    coffee = load_config(fleet.root("coffee-1") / "etc" / "taptill" / "config.toml")
    assert (coffee.terminal.description, coffee.terminal.mode) == ('Kaffee "Süd"', "select")
    assert coffee.gpio.buttons == {"espresso": 5, "cancel": 13}
    assert load_config(fleet.root("bar-2") / "etc" / "taptill" / "config.toml").terminal.tag == "beer"
    assert list(fleet.stage.iterdir()) == []  # the staged secrets are gone

    provisioned = fleet.trees()
    second = fleet.playbook()
    assert second.returncode == 0, second.stdout + second.stderr
    assert {h: (r["changed"], r["failed"]) for h, r in recap(second).items()} == {h: (0, 0) for h in HOSTS}
    assert second.stdout.count("nothing to change") == len(HOSTS)
    assert fleet.trees() == provisioned

    fleet.vault("host_vars/coffee-1/vault.yml", {"vault_wallet_token": "not-the-token"})
    wrong = fleet.playbook()
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr  # ansible-playbook: a host failed
    rows = recap(wrong)
    assert rows["coffee-1"]["failed"] == 1
    assert all(rows[h]["failed"] == 0 and rows[h]["changed"] == 0 for h in ("bar-1", "bar-2"))
    failed = [line for line in wrong.stdout.splitlines() if line.startswith("fatal: [coffee-1]")]
    assert len(failed) == 1 and "taptill-provision: " in failed[0] and "refused" in failed[0], wrong.stdout
    assert fleet.trees() == provisioned  # the failed host kept its working token; nothing else moved
    assert list(fleet.stage.iterdir()) == []

    for run in (check, first, second, wrong):
        assert token not in run.stdout + run.stderr


def test_the_example_inventory_is_twenty_terminals_with_answers_per_group(tmp_path: Path) -> None:
    env = ansible_env(tmp_path)
    listed = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(ANSIBLE / "inventory.example.yml"), "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert listed.returncode == 0, listed.stderr
    inventory = json.loads(listed.stdout)
    groups = {g: inventory[g]["hosts"] for g in ("beer", "cocktails", "coffee")}
    assert {g: len(h) for g, h in groups.items()} == {"beer": 12, "cocktails": 4, "coffee": 4}
    assert sorted(inventory["terminals"]["children"]) == ["beer", "cocktails", "coffee"]
    hostvars = inventory["_meta"]["hostvars"]
    assert hostvars["coffee-03"]["taptill_group_answers"]["terminal"]["mode"] == "select"
    assert hostvars["bar-south-06"]["taptill_group_answers"]["terminal"]["tag"] == "beer"
    for host in hostvars.values():
        # the role refuses secrets in the answers; the example shows where they go instead
        answers = json.dumps([host.get(f"taptill_{n}_answers") for n in ("event", "group", "host")])
        assert "token" not in answers and "password" not in answers
        assert host["taptill_wallet_token"].startswith("{{ vault_")


def test_a_token_in_the_answers_or_no_provisioning_on_the_host_stops_that_host_in_one_line(
    tmp_path: Path,
) -> None:
    common: dict[str, object] = {
        "ansible_connection": "local",
        "taptill_become": False,
        "taptill_wallet_token": "vaulted",
    }
    hosts: dict[str, dict[str, object]] = {
        # a secret among the answers would land in an answers file and Ansible's output: refused
        "careless": {**common, "taptill_host_answers": {"wallet": {"token": "leaked-token-value"}}},
        "bare": {**common, "taptill_provision_command": [str(tmp_path / "no" / "taptill-provision")]},
    }
    for name, host in hosts.items():
        host["taptill_root"] = str(tmp_path / "hosts" / name)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"terminals": {"hosts": hosts}}}}))
    env = ansible_env(tmp_path / "ansible")
    env.update(ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    run = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(ANSIBLE / "playbook.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    fatal = {
        line.split("]", 1)[0].removeprefix("fatal: ["): line
        for line in run.stdout.splitlines()
        if line.startswith("fatal: [")
    }
    assert set(fatal) == {"careless", "bare"}, run.stdout
    assert "from ansible-vault, not token/password/developer_token in the" in fatal["careless"]
    assert f"cannot run {tmp_path}/no/taptill-provision" in fatal["bare"]
    assert "set taptill_provision_command" in fatal["bare"]
    assert "leaked-token-value" not in run.stdout + run.stderr
    assert not (tmp_path / "hosts").exists()  # nothing provisioned
