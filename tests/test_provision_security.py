"""``taptill-provision`` under attack: server text, secrets in the open, a root that leads out, packaging."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from terminal.config import OfflineConfig, load_config
from terminal.emulator.partybroker import EmulatedDrink, PartybrokerEmulator
from terminal.emulator.wallet import WalletEmulator
from tests.conftest import seed_program
from tests.test_provision import EXIT_CHANGED, provision

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
