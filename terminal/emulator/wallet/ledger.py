"""The wallet emulator's state: wallets and every applied transaction, persisted atomically as JSON."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LEDGER_VERSION = 1


class LedgerError(Exception):
    """The ledger file cannot be used; the message says which file and how to fix it."""


@dataclass(frozen=True)
class LedgerWallet:
    """A wallet as the emulator stores it; ``created_at`` is ISO 8601 in UTC.

    ``balance`` is the exact truth in integer cents. ``euros`` is the same value as the real pretix
    plugin keeps it, a float sum of euros (the balance last set, then every transaction since, in the
    order booked): inexact on purpose, so the ``real`` flavour can report it truncated as the plugin does.
    """

    id: int
    token_id: str
    balance: int
    paired_user: str
    created_at: str
    euros: float


@dataclass(frozen=True)
class LedgerTransaction:
    """One applied transaction; ``amount`` is in cents, negative for a debit."""

    seq: int
    token_id: str
    amount: int
    products: list[str | int]
    description: str | None
    tag: str | None
    idempotency_key: str | None
    terminal: str | None
    timestamp: str


class WalletLedger:
    """Wallets and transactions behind one lock; every change is written to ``path`` (if any) at once.

    Callers that must check and apply atomically (idempotency, balance) hold ``lock`` around both.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.lock = threading.RLock()
        self._path = path
        self._wallets: dict[str, LedgerWallet] = {}
        self._transactions: list[LedgerTransaction] = []
        self._next_wallet_id = 1
        if path is not None and path.exists():
            self._load(path)

    @property
    def path(self) -> Path | None:
        return self._path

    def add_wallet(self, token_id: str, balance: int, paired_user: str = "") -> LedgerWallet:
        """Create the wallet, or set the balance and paired user of an existing one."""
        with self.lock:
            old = self._wallets.get(token_id)
            if old is None:
                wallet = LedgerWallet(
                    self._next_wallet_id, token_id, balance, paired_user, _now(), balance / 100
                )
                self._next_wallet_id += 1
            else:
                wallet = LedgerWallet(old.id, token_id, balance, paired_user, old.created_at, balance / 100)
            self._wallets[token_id] = wallet
            self._save()
            return wallet

    def seed_wallet(self, token_id: str, balance: int, paired_user: str = "") -> LedgerWallet:
        """Create the wallet only if it does not exist yet, so a restarted emulator keeps its balances."""
        with self.lock:
            existing = self._wallets.get(token_id)
            return existing if existing is not None else self.add_wallet(token_id, balance, paired_user)

    def wallet(self, token_id: str) -> LedgerWallet | None:
        with self.lock:
            return self._wallets.get(token_id)

    def wallets(self) -> list[LedgerWallet]:
        with self.lock:
            return list(self._wallets.values())

    def balance(self, token_id: str) -> int:
        wallet = self.wallet(token_id)
        if wallet is None:
            raise KeyError(f"no wallet for token {token_id!r}; add it with add_wallet() first")
        return wallet.balance

    def transaction_with_key(self, idempotency_key: str) -> LedgerTransaction | None:
        with self.lock:
            for txn in self._transactions:
                if txn.idempotency_key == idempotency_key:
                    return txn
            return None

    def apply(
        self,
        token_id: str,
        amount: int,
        products: list[str | int],
        *,
        description: str | None,
        tag: str | None,
        idempotency_key: str | None,
        terminal: str | None,
    ) -> tuple[LedgerWallet, LedgerTransaction]:
        """Book ``amount`` on the wallet (no checks: callers decide what is allowed) and persist."""
        with self.lock:
            old = self._wallets.get(token_id)
            if old is None:
                raise KeyError(f"no wallet for token {token_id!r}")
            wallet = LedgerWallet(
                old.id,
                token_id,
                old.balance + amount,
                old.paired_user,
                old.created_at,
                old.euros + amount / 100,  # float arithmetic, as the plugin sums its transactions
            )
            txn = LedgerTransaction(
                seq=len(self._transactions) + 1,
                token_id=token_id,
                amount=amount,
                products=list(products),
                description=description,
                tag=tag,
                idempotency_key=idempotency_key,
                terminal=terminal,
                timestamp=_now(),
            )
            self._wallets[token_id] = wallet
            self._transactions.append(txn)
            self._save()
            return wallet, txn

    def transactions(self) -> list[LedgerTransaction]:
        with self.lock:
            return list(self._transactions)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "version": LEDGER_VERSION,
                "next_wallet_id": self._next_wallet_id,
                "wallets": {t: asdict(w) for t, w in self._wallets.items()},
                "transactions": [asdict(t) for t in self._transactions],
            }

    def _save(self) -> None:
        if self._path is None:
            return
        data = json.dumps(self.snapshot(), indent=1, sort_keys=True).encode()
        directory = self._path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != LEDGER_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {LEDGER_VERSION}")
            # Ledgers written before ``euros`` existed start their float sum at the exact balance.
            self._wallets = {
                t: LedgerWallet(**{"euros": w["balance"] / 100, **w}) for t, w in data["wallets"].items()
            }
            self._transactions = [LedgerTransaction(**t) for t in data["transactions"]]
            self._next_wallet_id = int(data["next_wallet_id"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LedgerError(
                f"emulator ledger {path} is unreadable ({exc}); delete it to start with an empty ledger"
            ) from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
