"""``taptill-provision --ready2order`` against the wallet and ready2order emulators on loopback: the owner
approves (or denies, or lets the link expire) while provisioning waits; the account token is stored 0600
and never shown; the [ready2order] table maps the wallet's products, loads in the terminal's config and
mirrors a sale of ``taptill run``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from provisioning.exits import (
    EXIT_CHANGED,
    EXIT_NOT_APPROVED,
    EXIT_REFUSED,
    EXIT_UNCHANGED,
    EXIT_USAGE,
)
from terminal.config import load_config
from terminal.emulator.ready2order import EmulatedProduct, Ready2OrderEmulator
from terminal.emulator.ready2order.server import DEMO_ACCOUNT_TOKEN, DEMO_DEVELOPER_TOKEN
from terminal.emulator.wallet import WalletEmulator
from terminal.ready2order.config import ProductMapping
from tests.conftest import seed_program
from tests.r2o_lab import UNLIMITED, wait_for_pending
from tests.terminal_lab import MAX, REPO, TerminalProcess, journal_lines, wait_for
from tests.test_provision import provision, tree

EXISTING = ("--taptill-bin", "/opt/taptill/venv/bin/taptill")  # the seeded venv: no pip install
TOKEN_FILE = Path("etc/taptill/ready2order.token")
DEVELOPER_TOKEN = DEMO_DEVELOPER_TOKEN
SEEDED_ACCOUNT_TOKEN = DEMO_ACCOUNT_TOKEN
# The wallet demo's products (doc flavour) as a venue's ready2order account might list them, behind
# 150 others so the list takes two pages of 100.
ACCOUNT_PRODUCTS = [
    *(EmulatedProduct(1000 + n, f"Filler {n}", Decimal(n), 1) for n in range(150)),
    EmulatedProduct(111, "Espresso", Decimal("2.50"), 1, external_reference="espresso"),  # by reference
    EmulatedProduct(112, "Cappuccino groß", Decimal(3), 2, item_number="cappuccino"),  # by item number
    # by name; its VAT id from its rate
    EmulatedProduct(113, "LATTE MACCHIATO", Decimal("3.5"), None, vat_percent=Decimal(10)),
    EmulatedProduct(114, "Wasser", Decimal("1.50"), 1),
    EmulatedProduct(115, "wasser", Decimal("1.50"), 1),  # two by that name: a person must choose
]
PAYMENT_METHODS = {74890: "Barzahlung", 74891: "Wallet"}


def venue(
    *,
    latency: str = "fast",
    approved_word: str = "approved",
    payment_methods: dict[int, str] = PAYMENT_METHODS,
) -> Ready2OrderEmulator:
    """A venue's ready2order account: two payment methods, three VAT rates, one user, 155 products."""
    return Ready2OrderEmulator(
        products=ACCOUNT_PRODUCTS,
        payment_methods=payment_methods,
        vat_rates={1: Decimal(20), 2: Decimal(10), 3: Decimal(0)},
        users={5678: "Christoph Müller"},
        latency=latency,
        approved_word=approved_word,
        rate_limit=UNLIMITED,
    )


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


def r2o_flags(lab: Ready2OrderEmulator, *extra: str) -> list[str]:
    return ["--ready2order-url", lab.base_url, "--ready2order-poll", "0.05", *extra]


def run(
    root: Path,
    wallet: WalletEmulator,
    lab: Ready2OrderEmulator,
    *extra: str,
    env: dict[str, str] | None = None,
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

    def __init__(self, lab: Ready2OrderEmulator, act: Callable[[str], object], nth: int = 1) -> None:
        super().__init__(daemon=True)
        self.lab, self.act, self.nth = lab, act, nth
        self.error: BaseException | None = None
        self.result: object = None

    def run(self) -> None:
        try:
            self.result = self.act(wait_for_pending(self.lab, self.nth))
        except BaseException as exc:
            self.error = exc

    def done(self) -> object:
        self.join(timeout=60)
        assert self.error is None, self.error
        return self.result


def run_while_owner(
    act: Callable[[str], object], image: Path, wallet: WalletEmulator, lab: Ready2OrderEmulator, token: Path
) -> tuple[subprocess.CompletedProcess[str], object]:
    """Provision with the developer token in ``token`` while the owner does ``act`` with the first grant;
    what provisioning did and what ``act`` answered (the account token of an approval)."""
    owner = Owner(lab, act)
    owner.start()
    proc = run(image, wallet, lab, "--ready2order-developer-token-file", str(token))
    return proc, owner.done()


def test_an_approved_grant_stores_the_token_0600_and_maps_the_products(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    with venue(latency="real") as lab:
        proc, account_token = run_while_owner(
            lab.grant_desk.approve, image, wallet, lab, developer_token_file
        )
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
        assert lab.grant_desk.grants_made == 1

        # the same answers again: the stored token works, so no grant, no developer token, nothing changes
        before = tree(image)
        again = run(image, wallet, lab)
        assert again.returncode == EXIT_UNCHANGED, again.stdout + again.stderr
        assert "works; no grant" in again.stdout
        assert lab.grant_desk.grants_made == 1
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
    with venue(approved_word="granted") as lab:

        def let_it_expire(grant: str) -> None:
            lab.clock.advance(601)  # the owner came back after ten minutes

        first = Owner(lab, let_it_expire)
        second = Owner(lab, lab.grant_desk.approve, nth=2)
        first.start()
        second.start()
        proc = run(image, wallet, lab, "--ready2order-developer-token-file", str(developer_token_file))
        first.done()
        account_token = second.done()
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert "the approval link expired" in proc.stdout
    assert proc.stdout.count("grantAccessToken=") == 2  # a new link after the expired one
    assert lab.grant_desk.grants_made == 2
    assert (image / TOKEN_FILE).read_text().strip() == account_token


def test_a_denied_grant_is_refused_and_nothing_is_written(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    before = tree(image)
    with venue() as lab:
        proc, _ = run_while_owner(lab.grant_desk.deny, image, wallet, lab, developer_token_file)
    assert proc.returncode == EXIT_REFUSED, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "taptill-provision: the ready2order owner denied taptill access; run again to ask anew"
    )
    assert tree(image) == before


def test_nobody_approving_gives_up_after_the_wait_with_one_line(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    before = tree(image)
    with venue() as lab:
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
    assert (
        lab.grant_desk.grants_made == 1 and lab.grant_desk.pending()
    )  # still waiting on the phone, unanswered
    assert tree(image) == before


def test_an_account_token_given_as_the_developer_token_is_named(
    image: Path, wallet: WalletEmulator, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.token"
    wrong.write_text(SEEDED_ACCOUNT_TOKEN)
    wrong.chmod(0o600)
    before = tree(image)
    with venue() as lab:
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
    with venue() as lab:
        without = run(image, wallet, lab)
        proc, account_token = run_while_owner(
            lab.grant_desk.approve, image, wallet, lab, developer_token_file
        )
    for p in (without, proc):
        assert "refused the account token (403): that is a developer token" in p.stdout
    assert without.returncode == EXIT_USAGE
    assert "--ready2order-developer-token-file" in without.stderr.strip().splitlines()[-1]
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert stored.read_text().strip() == account_token


def test_a_missing_payment_method_is_named_and_the_approval_is_not_lost(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    no_wallet_method = {k: name for k, name in PAYMENT_METHODS.items() if name != "Wallet"}
    with venue(payment_methods=no_wallet_method) as lab:
        proc, account_token = run_while_owner(
            lab.grant_desk.approve, image, wallet, lab, developer_token_file
        )
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
        assert lab.grant_desk.grants_made == 1
        report = json.loads(again.stdout)
        assert report["r2o-payment"] == 74890
        assert account_token not in again.stdout + again.stderr
    data = tomllib.loads((image / "etc/taptill/config.toml").read_text())
    assert data["ready2order"]["payment_method_id"] == 74890


def test_a_dry_run_asks_for_no_grant_and_writes_nothing(
    image: Path, wallet: WalletEmulator, developer_token_file: Path
) -> None:
    before = tree(image)
    with venue() as lab:
        proc = run(
            image, wallet, lab, "--ready2order-developer-token-file", str(developer_token_file), "--dry-run"
        )
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert "a dry run asks for no grant" in proc.stdout
    assert lab.grant_desk.grants_made == 0
    assert tree(image) == before


def test_the_provisioned_table_loads_and_taptill_run_mirrors_a_sale(
    image: Path, wallet: WalletEmulator, developer_token_file: Path, tmp_path: Path
) -> None:
    """What provisioning writes is the terminal's own [ready2order]: ``load_config`` reads it, ``doctor``
    passes it, and ``taptill run`` on it (secrets as systemd credentials; only the state directory and the
    socket moved into tmp_path) mirrors a sale to the account the grant opened, at the real 60 a minute."""
    socket = tmp_path / "run" / "tap.sock"
    with Ready2OrderEmulator() as r2o:
        proc, _ = run_while_owner(r2o.grant_desk.approve, image, wallet, r2o, developer_token_file)
        assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
        written = image / "etc/taptill/config.toml"
        mirror = load_config(written).ready2order
        assert mirror is not None and mirror.base_url == r2o.base_url
        assert (mirror.payment_method_id, mirror.user_id, mirror.training) == (3, 1, False)  # Wallet, Chef
        assert mirror.account_token_file == Path("/etc/taptill/ready2order.token")
        assert mirror.mapping_for("espresso") == ProductMapping(111, 2)

        config = tmp_path / "config.toml"
        config.write_text(
            written.read_text()
            .replace('"/var/lib/taptill"', f'"{tmp_path / "state"}"')
            .replace('"/run/taptill/tap.sock"', f'"{socket}"')
        )
        socket.parent.mkdir()
        credentials = {"CREDENTIALS_DIRECTORY": str(image / "etc/taptill")}
        term = TerminalProcess(config, env=credentials, socket=socket)
        try:
            term.tap(MAX)
            wait_for(lambda: len(r2o.invoices()) == 1, timeout=30, what="the sale's invoice")
        finally:
            assert term.stop() == 0
        doctor = subprocess.run(
            [sys.executable, "-m", "terminal", "doctor", "--json", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={**os.environ, **credentials},
        )
        checks = {c["name"]: c["status"] for c in json.loads(doctor.stdout)}
        assert checks["config"] == checks["r2o-secret"] == checks["ready2order"] == "OK", doctor.stdout
    (sale,) = journal_lines(config)
    (invoice,) = r2o.invoices()
    assert invoice["invoice_externalReferenceNumber"] == sale["idempotency_key"]
    assert Decimal(str(invoice["invoice_total"])) == Decimal(-sale["amount_cents"]) / 100
    assert (invoice["paymentMethod_id"], invoice["user_id"], invoice["invoice_testMode"]) == (3, 1, False)
    assert r2o.rate.refused == 0
