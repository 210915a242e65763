"""A wallet sale the server refused while its guest waited (never approved: the guest saw "declined",
nothing was served) is a declined tap, never rejected money: in `taptill status` (lines and JSON),
`taptill queue --rejected`, the doctor's queue check, recover's summary and the wallet's
`taptill_outbox_rejected`."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal
from terminal.metrics.collector import ScrapeCollector
from terminal.metrics.journal_figures import JournalReader
from terminal.metrics.taps import TapCounts
from terminal.ops.salvage import Salvage
from tests.terminal_lab import ERIKA, journal_sale, taptill, write_config
from tests.test_metrics import live_state

AT_TAP_CENTS = 350  # Erika's cart, refused while she waited
SERVED_CENTS = 450  # Max's offline sale, served, then refused when delivered


def _journal_with_both_kinds(path: Path) -> tuple[str, str]:
    """A real journal holding one sale refused at the tap and one served sale refused after the fact;
    their keys (at the tap, served)."""
    journal = Journal.open(path)
    try:
        # the tap path waits for the server before telling the guest: not approved
        at_tap = journal_sale(journal, ["3"], -AT_TAP_CENTS, uid=ERIKA, description="Latte", approved=False)
        journal.mark_rejected(at_tap.id, "bad_product: 400: Product unavailable")
        served = journal_sale(journal, ["1"], -SERVED_CENTS, description="Bier", offline=True)
        journal.mark_rejected(served.id, "insufficient_balance: 400: Insufficient balance")
    finally:
        journal.close()
    return at_tap.idempotency_key, served.idempotency_key


def test_status_and_queue_count_a_sale_refused_at_the_tap_as_declined_not_as_rejected_money(
    tmp_path: Path,
) -> None:
    with WalletEmulator.demo("doc") as server:
        config = write_config(tmp_path, server)
    at_tap, served = _journal_with_both_kinds(tmp_path / "state" / "journal.sqlite3")

    lines = taptill("status", "--config", str(config)).stdout.splitlines()
    rejected = [ln for ln in lines if ln.startswith("rejected:")]
    assert rejected == ["rejected:        1 (4,50 €), served but refused by the server: money not collected"]
    assert "refused at the tap: 1, declined while the guest waited: nothing owed" in lines, lines
    wallet = [ln for ln in lines if ln.startswith("outbox:          wallet:")]
    assert len(wallet) == 1 and "1 rejected" in wallet[0] and "1 more refused at the tap" in wallet[0], wallet
    assert "3,50" not in "\n".join(lines), "a sale nobody owes shows no money"

    data = json.loads(taptill("status", "--json", "--config", str(config)).stdout)
    assert (data["rejected"], data["rejected_cents"], data["refused_at_tap"]) == (1, SERVED_CENTS, 1)
    backlog = next(b for b in data["destinations"] if b["destination"] == "wallet")
    assert (backlog["rejected"], backlog["refused_at_tap"]) == (1, 1), backlog

    queue = taptill("queue", "--rejected", "--config", str(config)).stdout.splitlines()
    by_key = {ln.split("  key ")[1].split()[0]: ln for ln in queue if "  key " in ln}
    assert by_key[served].startswith("REJECTED ") and "owed" not in by_key[served], by_key[served]
    assert by_key[at_tap].startswith("DECLINED AT THE TAP "), by_key[at_tap]
    assert by_key[at_tap].endswith("(nothing served, nothing owed)"), by_key[at_tap]

    doctor = json.loads(taptill("doctor", "--json", "--config", str(config), check=False).stdout)
    check = next(c for c in doctor if c["name"] == "queue")
    assert check["detail"].startswith("0 pending, 1 rejected"), check


def test_the_wallets_rejected_metric_counts_only_sales_served_then_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    _journal_with_both_kinds(path)
    reader = JournalReader(path, ())
    try:
        figures = reader.pool.submit(reader.read).result()
    finally:
        reader.close()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(TapCounts(), live_state(), figures))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    family = families["taptill_outbox_rejected"]
    wallet = [s.value for s in family.samples if s.labels == {"destination": "wallet"}]
    assert wallet == [1.0], family.samples
    assert "refused while its guest waited" in family.documentation


def test_recovers_summary_names_a_sale_refused_at_the_tap_apart_without_money(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    _journal_with_both_kinds(path)
    journal = Journal.open_read_only(path)
    try:
        sales = tuple(journal.sales())
    finally:
        journal.close()
    counts = Salvage(source=path, kept_at=None, method=".recover", sales=sales).counts()
    assert (
        counts == "0 done, 0 pending, 1 rejected 4,50 €, 0 declined (1 more refused at the tap: nothing owed)"
    )
