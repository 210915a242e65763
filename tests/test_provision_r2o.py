"""``taptill-provision --ready2order`` against the wallet emulator and a ready2order stand-in on loopback:
the owner approves (or denies, or lets the link expire) while provisioning waits; the account token is
stored 0600 and never shown; the [ready2order] table maps the wallet's products."""

from __future__ import annotations

import json
import stat
import subprocess
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provisioning.exits import (
    EXIT_CHANGED,
    EXIT_NOT_APPROVED,
    EXIT_REFUSED,
    EXIT_UNCHANGED,
    EXIT_USAGE,
)
from terminal.emulator.wallet import WalletEmulator
from tests.conftest import seed_program
from tests.r2o_grant_lab import DEVELOPER_TOKEN, PAYMENT_METHODS, SEEDED_ACCOUNT_TOKEN, GrantLab, product
from tests.test_provision import provision, tree

EXISTING = ("--taptill-bin", "/opt/taptill/venv/bin/taptill")  # the seeded venv: no pip install
TOKEN_FILE = Path("etc/taptill/ready2order.token")
# The wallet demo's products (doc flavour) as a venue's ready2order account might list them, behind
# 150 others so the list takes two pages of 100.
ACCOUNT_PRODUCTS = [
    *(product(1000 + n, f"Filler {n}", n) for n in range(150)),
    product(111, "Espresso", "2.50", external_reference="espresso"),  # by externalReference
    product(112, "Cappuccino groß", 3, item_number="cappuccino", vat_id=2),  # by item number
    product(113, "LATTE MACCHIATO", 3.5, vat_id=None, vat="10"),  # by name; VAT id from the rate
    product(114, "Wasser", "1.50"),
    product(115, "wasser", "1.50"),  # two by that name: a person must choose
]


@pytest.fixture
def image(tmp_path: Path, program_image: Path) -> Path:
    root = tmp_path / "image"
    seed_program(program_image, root)
    return root


@pytest.fixture
def wallet() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc") as emulator:
        yield emulator


@pytest.fixture
def developer_token_file(tmp_path: Path) -> Path:
    path = tmp_path / "r2o-developer.token"
    path.write_text(DEVELOPER_TOKEN + "\n")
    path.chmod(0o600)
    return path


def r2o_flags(lab: GrantLab, *extra: str) -> list[str]:
    return ["--ready2order-url", lab.base_url, "--ready2order-poll", "0.05", *extra]


def run(
    root: Path, wallet: WalletEmulator, lab: GrantLab, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return provision(
        root,
        *EXISTING,
        "--reader",
        "sim",
        "--wallet-url",
        wallet.base_url,
        "--products",
        "espresso",
        *r2o_flags(lab, *extra),
        token=wallet.api_token,
        env=env,
    )


class Owner(threading.Thread):
    """The account owner on a phone: waits for grant ``nth`` to be asked for, then does ``act`` with it."""

    def __init__(self, lab: GrantLab, act: Callable[[str], object], nth: int = 1) -> None:
        super().__init__(daemon=True)
        self.lab, self.act, self.nth = lab, act, nth
        self.error: BaseException | None = None
        self.result: object = None

    def run(self) -> None:
        try:
            self.result = self.act(self.lab.wait_for_pending(self.nth))
        except BaseException as exc:
            self.error = exc

    def done(self) -> object:
        self.join(timeout=60)
        assert self.error is None, self.error
        return self.result


def test_an_approved_grant_stores_the_token_0600_and_maps_the_products(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    with GrantLab(products=ACCOUNT_PRODUCTS, latency="real") as lab:
        owner = Owner(lab, lab.desk.approve)
        owner.start()
        proc = run(image, wallet, lab, "--ready2order-developer-token-file", str(developer_token_file))
        account_token = owner.done()
        assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
        assert isinstance(account_token, str)

        token = image / TOKEN_FILE
        assert token.read_text() == account_token + "\n"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        out = proc.stdout + proc.stderr
        assert account_token not in out and DEVELOPER_TOKEN not in out
        assert "grantAccessToken=" in out and "no display here" in out
        dropin = image / "etc/systemd/system/taptill.service.d/ready2order.conf"
        assert "LoadCredential=ready2order.token:/etc/taptill/ready2order.token" in dropin.read_text()

        config_text = (image / "etc/taptill/config.toml").read_text()
        assert account_token not in config_text
        r2o = tomllib.loads(config_text)["ready2order"]
        assert r2o == {
            "base_url": lab.base_url,
            "account_token_file": "/etc/taptill/ready2order.token",
            "payment_method_id": 74891,  # "Wallet"
            "user_id": 5678,  # the account's only user
            "training": False,
            "requests_per_minute": 20,
            "products": {
                "espresso": {"product_id": 111, "vat_id": 1},
                "cappuccino": {"product_id": 112, "vat_id": 2},
                "latte": {"product_id": 113, "vat_id": 2},
            },
        }
        assert "espresso → Espresso (id 111, VAT id 1, by externalReference)" in proc.stdout
        assert "cappuccino → Cappuccino groß (id 112, VAT id 2, by item number)" in proc.stdout
        assert "latte → LATTE MACCHIATO (id 113, VAT id 2, by name)" in proc.stdout
        unmapped = next(line for line in proc.stdout.splitlines() if line.startswith("r2o-unmapped:"))
        assert "water (Wasser): 2 ready2order products share its name (ids 114, 115)" in unmapped
        assert "topup_10 (Aufladung 10 €)" in unmapped and "topup_20" in unmapped
        assert lab.requests["GET /v1/products"] == 2  # 155 products, pages of 100
        assert lab.desk.grants_made == 1

        # the same answers again: the stored token works, so no grant, no developer token, nothing changes
        before = tree(image)
        again = run(image, wallet, lab)
        assert again.returncode == EXIT_UNCHANGED, again.stdout + again.stderr
        assert "works; no grant" in again.stdout
        assert lab.desk.grants_made == 1
        assert tree(image) == before

        # a run for another reason, without --ready2order, keeps the mirror's table, token and credential
        other = provision(
            image,
            *EXISTING,
            "--reader",
            "sim",
            "--wallet-url",
            wallet.base_url,
            "--products",
            "latte",
            token=wallet.api_token,
        )
        assert other.returncode == EXIT_CHANGED, other.stdout + other.stderr
        assert tomllib.loads((image / "etc/taptill/config.toml").read_text())["ready2order"] == r2o
        assert (image / TOKEN_FILE).read_text() == account_token + "\n"
        assert (
            dropin.is_file()
            and "unchanged /etc/systemd/system/taptill.service.d/ready2order.conf" in other.stdout
        )


def test_an_expired_link_is_replaced_and_the_second_approved_with_the_other_spelling(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    with GrantLab(products=ACCOUNT_PRODUCTS, approved_word="granted") as lab:

        def let_it_expire(grant: str) -> None:
            lab.clock.advance(601)  # the owner came back after ten minutes

        first = Owner(lab, let_it_expire)
        second = Owner(lab, lab.desk.approve, nth=2)
        first.start()
        second.start()
        proc = run(image, wallet, lab, "--ready2order-developer-token-file", str(developer_token_file))
        first.done()
        account_token = second.done()
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert "the approval link expired" in proc.stdout
    assert proc.stdout.count("grantAccessToken=") == 2  # a new link after the expired one
    assert lab.desk.grants_made == 2
    assert (image / TOKEN_FILE).read_text().strip() == account_token


def test_a_denied_grant_is_refused_and_nothing_is_written(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    before = tree(image)
    with GrantLab(products=ACCOUNT_PRODUCTS) as lab:
        owner = Owner(lab, lab.desk.deny)
        owner.start()
        proc = run(image, wallet, lab, "--ready2order-developer-token-file", str(developer_token_file))
        owner.done()
    assert proc.returncode == EXIT_REFUSED, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "taptill-provision: the ready2order owner denied taptill access; run again to ask anew"
    )
    assert tree(image) == before


def test_nobody_approving_gives_up_after_the_wait_with_one_line(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    before = tree(image)
    with GrantLab(products=ACCOUNT_PRODUCTS) as lab:
        proc = run(
            image,
            wallet,
            lab,
            "--ready2order-developer-token-file",
            str(developer_token_file),
            "--ready2order-wait",
            "1s",
        )
    assert proc.returncode == EXIT_NOT_APPROVED, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("taptill-provision: nobody approved ready2order access within 1 s; run again")
    assert lab.desk.grants_made == 1 and lab.desk.pending()  # still waiting on the phone, unanswered
    assert tree(image) == before


def test_an_account_token_given_as_the_developer_token_is_named(
    image: Path, wallet: WalletEmulator, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.token"
    wrong.write_text(SEEDED_ACCOUNT_TOKEN)
    wrong.chmod(0o600)
    before = tree(image)
    with GrantLab(products=ACCOUNT_PRODUCTS) as lab:
        proc = run(image, wallet, lab, "--ready2order-developer-token-file", str(wrong))
        garbled = run(image, wallet, lab, env={"TAPTILL_R2O_DEVELOPER_TOKEN": "not-a-token"})
    assert proc.returncode == EXIT_REFUSED, proc.stdout + proc.stderr
    assert "refused the developer token (403): that is an account token" in proc.stderr
    assert garbled.returncode == EXIT_REFUSED, garbled.stdout + garbled.stderr
    assert "does not know the developer token (401)" in garbled.stderr
    # a token from the environment works, with a warning that the environment keeps it
    assert "came from $TAPTILL_R2O_DEVELOPER_TOKEN" in garbled.stderr
    assert SEEDED_ACCOUNT_TOKEN not in proc.stdout + proc.stderr
    assert tree(image) == before


def test_a_developer_token_stored_as_the_account_token_is_named_and_replaced(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    stored = image / TOKEN_FILE
    stored.parent.mkdir(parents=True)
    stored.write_text(DEVELOPER_TOKEN + "\n")
    stored.chmod(0o600)
    with GrantLab(products=ACCOUNT_PRODUCTS) as lab:
        without = run(image, wallet, lab)
        owner = Owner(lab, lab.desk.approve)
        owner.start()
        proc = run(image, wallet, lab, "--ready2order-developer-token-file", str(developer_token_file))
        account_token = owner.done()
    for p in (without, proc):
        assert "refused the account token (403): that is a developer token" in p.stdout
    assert without.returncode == EXIT_USAGE
    assert "--ready2order-developer-token-file" in without.stderr.strip().splitlines()[-1]
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert stored.read_text().strip() == account_token


def test_a_missing_payment_method_is_named_and_the_approval_is_not_lost(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    no_wallet_method = [m for m in PAYMENT_METHODS if m["payment_name"] != "Wallet"]
    with GrantLab(products=ACCOUNT_PRODUCTS, payment_methods=no_wallet_method) as lab:
        owner = Owner(lab, lab.desk.approve)
        owner.start()
        proc = run(image, wallet, lab, "--ready2order-developer-token-file", str(developer_token_file))
        account_token = owner.done()
        assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            "taptill-provision: ready2order has no payment method named 'Wallet' (it has 'Barzahlung'); "
            "taptill creates none: create one named 'Wallet' in ready2order (marked as paid), or pass "
            "--ready2order-payment-method NAME"
        )
        assert lab.requests["POST /v1/paymentMethods"] == 0  # nothing created behind the owner's back
        assert not (image / "etc/taptill/config.toml").exists()
        # the approval was kept: the next run (with another method) needs no new grant
        assert (image / TOKEN_FILE).read_text().strip() == account_token
        assert stat.S_IMODE((image / TOKEN_FILE).stat().st_mode) == 0o600
        again = run(image, wallet, lab, "--ready2order-payment-method", "barzahlung", "--json")
        assert again.returncode == EXIT_CHANGED, again.stdout + again.stderr
        assert lab.desk.grants_made == 1
        report = json.loads(again.stdout)
        assert report["r2o-payment"] == 74890
        assert account_token not in again.stdout + again.stderr
    data = tomllib.loads((image / "etc/taptill/config.toml").read_text())
    assert data["ready2order"]["payment_method_id"] == 74890


def test_a_dry_run_asks_for_no_grant_and_writes_nothing(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    before = tree(image)
    with GrantLab(products=ACCOUNT_PRODUCTS) as lab:
        proc = run(
            image, wallet, lab, "--ready2order-developer-token-file", str(developer_token_file), "--dry-run"
        )
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert "a dry run asks for no grant" in proc.stdout
    assert lab.desk.grants_made == 0
    assert tree(image) == before
