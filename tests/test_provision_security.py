"""``taptill-provision`` under attack: server text, secrets in the open, a root that leads out, packaging."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from provisioning.provision import EXIT_CANNOT_WRITE, EXIT_CHANGED
from terminal.config import OfflineConfig, load_config
from terminal.emulator.partybroker import EmulatedDrink, PartybrokerEmulator
from terminal.emulator.wallet import WalletEmulator
from tests.conftest import seed_program
from tests.test_provision import provision

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
    assert data["partybroker"]["drinks"]["espresso"]["title"] == INJECTED
    assert load_config(config).offline == OfflineConfig()  # the default limits, not 99,999,999 cents


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
