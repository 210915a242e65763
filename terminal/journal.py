"""The SQLite journal and outbox: every sale is committed here before any money moves."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

from terminal.model import DeclineReason, ProductId, SaleState
from terminal.service.boot_clock import Moment, age_s

log = logging.getLogger(__name__)

# SQLite reads keywords, tables and columns in any case: a line of SQL text carries ``# pragma: no mutate``
# (mutmut's case mutants of it are the same statements); what the statements do, the journal tests check.

Statements = Sequence[tuple[str, Sequence[object]]]
KEY_BYTES = 18  # 24 URL-safe characters, over the 20 DESIGN.md asks for
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


class JournalError(Exception):
    """The journal cannot be read or written (full disk, read-only, corrupt); the terminal must not sell."""


class JournalMissing(JournalError):
    """There is no journal yet; commands that only read create none."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no journal at {path} yet: `taptill run` creates it")
        self.path = path


class JournalTooNew(JournalError):
    """The journal's schema is newer than this taptill's: a newer taptill wrote it."""


class JournalDamaged(JournalError):
    """SQLite finds the journal corrupt (quick_check fails, or it is not a database at all)."""

    def __init__(
        self, path: Path, problem: str, fix: str = "stop the terminal and run `taptill recover`"
    ) -> None:
        problem = damage_in_one_line(problem)
        super().__init__(f"journal {path} is damaged ({problem}); {fix}")
        self.path = path
        self.problem = problem


RUNNING_DAMAGE_FIX = "a running terminal stops, and its next start salvages the journal"
DAMAGE_TEXT_MAX = 160  # characters of SQLite's complaint a message keeps


def damage_in_one_line(said: str) -> str:
    """SQLite's complaint about a damaged file as one short line for logs and screens: its check output
    runs over several lines (``*** in database main ***`` first); the first line with a cause stays."""
    lines = [line.strip() for line in said.splitlines() if line.strip() and not line.startswith("***")]
    text = lines[0] if lines else said.strip().replace("\n", " ")
    return text if len(text) <= DAMAGE_TEXT_MAX else text[: DAMAGE_TEXT_MAX - 1] + "…"


def new_idempotency_key() -> str:
    # The "t" keeps a key from starting with "-", which command lines would take for an option.
    return "t" + secrets.token_urlsafe(KEY_BYTES)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# Each entry migrates the schema from version i to i+1; never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sales (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        token_id TEXT NOT NULL,
        products TEXT NOT NULL,
        amount_cents INTEGER NOT NULL,
        description TEXT NOT NULL,
        tag TEXT,
        state TEXT NOT NULL CHECK (state IN ('declined', 'pending', 'done', 'rejected')),
        reason TEXT NOT NULL DEFAULT '',
        offline INTEGER NOT NULL DEFAULT 0,
        operator TEXT,
        balance_before INTEGER,
        balance_after INTEGER,
        maybe_sent INTEGER NOT NULL DEFAULT 0,
        hold INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX sales_pending ON sales (next_attempt_at) WHERE state = 'pending';
    CREATE INDEX sales_token ON sales (token_id, state);
    CREATE TABLE cards (
        token_id TEXT PRIMARY KEY,
        balance_cents INTEGER,
        seen_at REAL,
        denied_reason TEXT
    );
    CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        stored_at REAL NOT NULL
    );
    """,
    # 2: the Partybroker sales outbox (a sale's drinks, reported after the wallet booked it)
    """
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY,
        sale_id INTEGER NOT NULL REFERENCES sales (id),
        drink_key TEXT NOT NULL,
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'ambiguous', 'dropped')),
        reason TEXT NOT NULL DEFAULT '',
        next_attempt_at REAL NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX reports_pending ON reports (next_attempt_at) WHERE state = 'pending';
    """,
    # 3: when the latest request of a sale went out (a late request must land before reconciling)
    """
    ALTER TABLE sales ADD COLUMN attempted_at REAL;
    """,
    # 4: a request that the server answers with an error every time (an item in no pretix quota): the
    # status of the latest answer, how often reconciliation then found it not booked, and the products
    # the terminal stops selling offline because of it
    """
    ALTER TABLE sales ADD COLUMN last_status INTEGER;
    ALTER TABLE sales ADD COLUMN server_errors INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE unsellable (
        product_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        reason TEXT NOT NULL,
        since TEXT NOT NULL
    );
    """,
    # 5: when a card's balance was seen, on the boot-time clock too (wall-clock steps must not age it)
    """
    ALTER TABLE cards ADD COLUMN seen_boot TEXT;
    ALTER TABLE cards ADD COLUMN seen_uptime REAL;
    """,
    # 6: whether the relay gave a sale's products in full (NULL: nothing to dispense, e.g. a top-up)
    """
    ALTER TABLE sales ADD COLUMN dispensed INTEGER;
    """,
    # 7: whether the guest was told the sale was approved: one that never was (the terminal stopped or
    # declined first) is never sent again, only reconciled (rows from before count as approved)
    """
    ALTER TABLE sales ADD COLUMN approved INTEGER NOT NULL DEFAULT 1;
    """,
    # 8: the one outbox (terminal/outbox) for every destination but the wallet, whose sales keep their own
    # columns: a record per destination and reference, its payload and delivery state. Partybroker reports
    # move here (sent -> done, dropped -> rejected); ready2order invoices and Brink payments will follow.
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        destination TEXT NOT NULL,
        ref TEXT NOT NULL,
        sale_id INTEGER REFERENCES sales (id),
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'rejected', 'ambiguous')),
        reason TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        maybe_sent INTEGER NOT NULL DEFAULT 0,
        hold INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (destination, ref)
    );
    CREATE INDEX outbox_pending ON outbox (destination, id) WHERE state = 'pending';
    INSERT INTO outbox (destination, ref, sale_id, payload, state, reason, next_attempt_at, created_at,
        updated_at)
        SELECT 'partybroker', 'report-' || id, sale_id,
            json_object('drink_key', drink_key, 'quantity', quantity),
            CASE state WHEN 'sent' THEN 'done' WHEN 'dropped' THEN 'rejected' ELSE state END,
            reason, next_attempt_at, created_at, updated_at
        FROM reports ORDER BY id;
    DROP TABLE reports;
    """,
    # 9: how a person closed a sale charged but never served (the guest was never told it was approved,
    # or the relay did not give it in full): 'refunded' or 'served' (by hand), when, and by whom
    """
    ALTER TABLE sales ADD COLUMN resolved TEXT;
    ALTER TABLE sales ADD COLUMN resolved_at TEXT;
    ALTER TABLE sales ADD COLUMN resolved_by TEXT;
    """,
    # 10: a kiosk operator's wrong PINs in a row and the lockout they led to (when it began, on the wall
    # and the boot-time clock): a restart (a power cut, a provoked crash) must not give a guesser fresh
    # attempts
    """
    CREATE TABLE operator_pins (
        operator TEXT PRIMARY KEY,
        wrong INTEGER NOT NULL CHECK (wrong >= 0),
        locked_at REAL,
        locked_boot TEXT,
        locked_uptime REAL,
        updated_at TEXT NOT NULL
    );
    """,
    # 11: the table bills (PAR Brink) paid by wallet, one per sale (its key), written in the sale's own
    # transaction: which table, party, business date and orders the money paid, so staff can close them
    """
    CREATE TABLE table_bills (
        sale_key TEXT PRIMARY KEY REFERENCES sales (idempotency_key),
        table_id INTEGER NOT NULL,
        party_id INTEGER NOT NULL,
        business_date TEXT NOT NULL,
        orders TEXT NOT NULL,
        amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
        created_at TEXT NOT NULL
    );
    CREATE INDEX table_bills_day ON table_bills (business_date);
    """,
    # 12: yourbarmate's webhook (terminal/yourbarmate): every accepted event by its key, committed before
    # the 200; bodies that failed validation; and the stock ledger's moves in ml, g or pieces (sold is not
    # copied here: it is derived from the sales, so a sale and its stock effect cannot disagree)
    """
    CREATE TABLE ybm_events (
        idempotency_key TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('request-delivery', 'cancel-delivery')),
        delivery_id TEXT,
        delivery_type TEXT CHECK (delivery_type IN ('DELIVERY', 'RETURN')),
        received_at TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX ybm_events_delivery ON ybm_events (delivery_id, kind);
    CREATE TABLE ybm_quarantine (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT,
        received_at TEXT NOT NULL,
        reason TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE stock_moves (
        id INTEGER PRIMARY KEY,
        product TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('ordered', 'cancelled', 'received', 'returned', 'count')),
        amount INTEGER NOT NULL,
        ref TEXT,
        at TEXT NOT NULL
    );
    CREATE INDEX stock_moves_product ON stock_moves (product, kind, id);
    CREATE INDEX stock_moves_ref ON stock_moves (ref, kind);
    """,
    # 13: what a sale poured, where that is not what the wallet booked (a Partybroker ladder books a
    # price step's wallet product for the drink): the configured products given out, as a JSON list;
    # NULL where they are the booked products (or none are given out). The stock ledger counts by it.
    """
    ALTER TABLE sales ADD COLUMN goods TEXT;
    """,
    # 14: only a refusal about the card itself denies it offline (CARD_REFUSALS); denials an older taptill
    # wrote for a product or the server (bad_product after an item in no quota, server_trouble) are lifted.
    # A migration, not a clean-up at start: it runs once, before the terminal decides a tap, and `taptill
    # status` and `doctor` (which migrate a copy in memory) count the same denied cards the terminal will.
    """
    UPDATE cards SET denied_reason = NULL
        WHERE denied_reason IS NOT NULL AND denied_reason NOT IN ('unknown_card', 'insufficient_balance');
    """,
)

# The refusals that are about the card itself and deny it offline (sale_store.py): the wallet does not know
# the card, or its money does not pay. A product the server cannot book, a server failing, or the terminal's
# own permission (403: the same for every card) is no reason to refuse a guest's card; the denial ends with
# the wallet server's next answer for the card (a balance read or a booked sale: remember_card_statement).
# Migration 14 spells the same codes out, as a released migration never changes.
CARD_REFUSALS = frozenset({DeclineReason.UNKNOWN_CARD, DeclineReason.INSUFFICIENT_BALANCE})

# A sale that pays a table bill (a ``table_bills`` row): it hands nothing over, so once the wallet booked it
# the bill IS paid (its POS payments go out), whether or not the terminal lived to show "Paid".
PAYS_TABLE_SQL = "idempotency_key IN (SELECT sale_key FROM table_bills)"  # pragma: no mutate
# A sale the wallet booked whose guest got nothing (or not all): never told it was approved, or the relay
# did not finish; it stays "to refund" until a person records it refunded or served by hand. Never a sale
# that pays a table bill.
TO_REFUND_SQL = (
    "state = 'done' AND resolved IS NULL AND (approved = 0 OR dispensed = 0)"  # pragma: no mutate
    f" AND NOT {PAYS_TABLE_SQL}"  # pragma: no mutate
)
# A sale the server refused after its guest was served (offline, or approved before it was sent): money
# not collected. One it refused while the guest waited at the tap (never approved) is a declined tap:
# nothing served, nothing owed, and never counted as rejected money.
REJECTED_SQL = "state = 'rejected' AND approved = 1"  # pragma: no mutate
REFUSED_AT_TAP_SQL = "state = 'rejected' AND approved = 0"  # pragma: no mutate
RESOLUTIONS = ("refunded", "served")
# How the controller's offline decisions begin (terminal/controller/offline_policy.py): a done sale keeps
# such a reason, since the decision is journaled (DESIGN.md, invariant 3); any other note was a retry's.
OFFLINE_REASON = "offline: "
# A sale whose key the server had booked before this terminal sent it (202 on its first request: a table
# bill paid at another terminal). Done, but no money moved here: not counted among this terminal's sales.
BOOKED_ELSEWHERE_REASON = "booked elsewhere: "
# How many retries of one bill (key-2, key-3 …, each after an earlier one that moved no money) are looked for
MAX_BILL_RETRIES = 50

Statement = tuple[str, tuple[object, ...]]


class TableBillRow(NamedTuple):
    """The statement writing a ``table_bills`` row: a ``Statement`` that ``record_sale`` recognises in its
    ``also`` (the row refers to the sale, so it is written after it, where RETURNING cannot see it)."""

    sql: str
    params: tuple[object, ...]


def table_bill_statement(
    *,
    key: str,
    table_id: int,
    party_id: int,
    business_date: str,
    orders: Sequence[tuple[int, int | None, int]],
    amount_cents: int,
) -> TableBillRow:
    """The ``table_bills`` row of a sale that pays a table's bill, to commit with the sale
    (``record_sale(also=...)``); ``orders`` are (order id, order number, due cents)."""
    payload = json.dumps([{"order_id": o, "number": n, "due_cents": d} for o, n, d in orders])
    return TableBillRow(
        "INSERT INTO table_bills (sale_key, table_id, party_id, business_date, orders,"  # pragma: no mutate
        " amount_cents, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",  # pragma: no mutate
        (key, table_id, party_id, business_date, payload, amount_cents, _now_iso()),
    )


@dataclass(frozen=True)
class TableBillRecord:
    """A table bill paid by wallet, with the state of the sale that paid it (for ``taptill status``)."""

    sale_key: str
    table_id: int
    party_id: int
    business_date: str
    orders: tuple[dict[str, object], ...]
    amount_cents: int
    created_at: str
    state: str  # the sale's: pending, done, rejected
    reason: str
    approved: (
        bool  # the guest saw "Paid"; False: it stopped first or had no answer in time (paid all the same)
    )
    resolved: str | None = None  # 'refunded': staff gave the guest the money back (``taptill settle``)


def offline_reason(why: str) -> str:
    """The journaled reason of an offline decision (accepted or declined): ``offline: <why>``."""
    return OFFLINE_REASON + why


@dataclass(frozen=True)
class SaleRecord:
    """One row of the journal."""

    id: int
    idempotency_key: str
    token_id: str
    products: tuple[ProductId, ...]
    amount_cents: int  # as the wallet sees it: negative debits, positive credits
    description: str
    tag: str | None
    state: SaleState
    reason: str
    offline: bool
    operator: str | None
    balance_before: int | None
    balance_after: int | None
    maybe_sent: bool
    hold: bool
    attempts: int
    next_attempt_at: float
    created_at: str
    updated_at: str
    attempted_at: float | None = None  # wall clock of the latest request that may have gone out
    last_status: int | None = None  # HTTP status of the latest error answer to this sale's request
    server_errors: int = 0  # error answers that reconciliation showed were not booked
    dispensed: bool | None = None  # the relay gave the products in full; None: nothing to dispense
    approved: bool = True  # the guest was told it was approved (a tap path sale: once it was decided)
    resolved: str | None = None  # charged but never served, then closed by a person: refunded or served
    resolved_at: str | None = None  # ISO 8601 (UTC), when ``taptill settle`` recorded it
    resolved_by: str | None = None  # the user who ran ``taptill settle``
    pays_table: bool = False  # it pays a table bill (a ``table_bills`` row): nothing to hand over

    @property
    def to_refund(self) -> bool:
        """Booked, but the guest got nothing (never told it was approved, or the relay did not finish),
        and no person has closed it yet (``TO_REFUND_SQL`` in Python). Never a table bill's sale: once
        booked, the bill is paid."""
        return (
            self.state is SaleState.DONE
            and self.resolved is None
            and (not self.approved or self.dispensed is False)
            and not self.pays_table
        )

    @property
    def refused_at_tap(self) -> bool:
        """The server refused it while the guest waited (never approved): a declined tap, nothing served,
        nothing owed (``REFUSED_AT_TAP_SQL`` in Python); not money rejected after the fact."""
        return self.state is SaleState.REJECTED and not self.approved

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "idempotency_key": self.idempotency_key,
            "token_id": self.token_id,
            "products": list(self.products),
            "amount_cents": self.amount_cents,
            "state": str(self.state),
            "reason": self.reason,
            "offline": self.offline,
            "operator": self.operator,
            "balance_after": self.balance_after,
            "attempts": self.attempts,
            "held": self.hold,
            "dispensed": self.dispensed,
            "approved": self.approved,
            "to_refund": self.to_refund,
            "resolved": None
            if self.resolved is None
            else {"how": self.resolved, "at": self.resolved_at, "by": self.resolved_by},
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class OfflineView:
    """What the journal knows about a card when the server can't be asked."""

    last_balance: int | None
    balance_age_s: float | None
    card_unconfirmed_cents: int  # pending money of this card (positive = owed by the guest)
    total_unconfirmed_cents: int
    unconfirmed_count: int
    denied_reason: str | None
    unconfirmed_credit_cents: int = 0  # top-ups not yet confirmed by the server, all cards together


@dataclass(frozen=True)
class PinFailures:
    """A kiosk operator's wrong PINs in a row, and when the lockout they led to began (None: none)."""

    wrong: int
    locked_at: Moment | None = None


@dataclass(frozen=True)
class JournalStatus:
    pending: int
    pending_cents: int
    held: int
    done: int
    rejected: int  # approved (served) sales the server refused after the fact: money not collected
    rejected_cents: int
    declined: int
    oldest_pending: str | None
    to_refund: int = 0  # done sales whose guest was not served, not yet closed by a person
    to_refund_cents: int = 0  # their amounts as the wallet sees them (a debit negative)
    refunded: int = 0  # closed by a person: the guest was refunded
    served_by_hand: int = 0  # closed by a person: the guest was served by hand
    booked_elsewhere: int = 0  # done under a key booked before this terminal sent it: not in ``done``
    # refused by the server while the guest waited (never approved): declined, nothing served or owed;
    # not in ``rejected``
    refused_at_tap: int = 0


_FIELDS = (
    "id, idempotency_key, token_id, products, amount_cents, description, tag, state,"  # pragma: no mutate
    " reason, offline, operator, balance_before, balance_after, maybe_sent, hold,"  # pragma: no mutate
    " attempts, next_attempt_at, created_at, updated_at, attempted_at, last_status,"  # pragma: no mutate
    " server_errors, dispensed, approved, resolved, resolved_at, resolved_by"  # pragma: no mutate
)
_PAYS_TABLE = (
    "EXISTS (SELECT 1 FROM table_bills WHERE table_bills.sale_key = idempotency_key)"  # pragma: no mutate
)
_COLUMNS = f"{_FIELDS}, {_PAYS_TABLE}"  # pragma: no mutate


# The columns a ``SaleRecord`` is read from, in ``sale_from_row``'s order, for tools that run their own
# read-only query over the sales (``terminal.report``).
SALE_COLUMNS = _COLUMNS


def sale_from_row(row: Sequence[Any]) -> SaleRecord:
    """A ``SaleRecord`` from the values of ``SALE_COLUMNS``, in that order."""
    return _row(row)


@functools.lru_cache(maxsize=256)
def _products_of(text: str) -> tuple[ProductId, ...]:
    """A sale's products from their JSON text; cached by that text (a journal holds few distinct carts, and
    each sale written is read back: parsing was a tenth of a tap's journal write in CPU time)."""
    products: tuple[ProductId, ...] = tuple(json.loads(text))
    return products


def _row(r: Any) -> SaleRecord:
    products = _products_of(str(r[3]))
    return SaleRecord(
        id=int(r[0]),
        idempotency_key=str(r[1]),
        token_id=str(r[2]),
        products=products,
        amount_cents=int(r[4]),
        description=str(r[5]),
        tag=None if r[6] is None else str(r[6]),
        state=SaleState(r[7]),
        reason=str(r[8]),
        offline=bool(r[9]),
        operator=None if r[10] is None else str(r[10]),
        balance_before=None if r[11] is None else int(r[11]),
        balance_after=None if r[12] is None else int(r[12]),
        maybe_sent=bool(r[13]),
        hold=bool(r[14]),
        attempts=int(r[15]),
        next_attempt_at=float(r[16]),
        created_at=str(r[17]),
        updated_at=str(r[18]),
        attempted_at=None if r[19] is None else float(r[19]),
        last_status=None if r[20] is None else int(r[20]),
        server_errors=int(r[21]),
        dispensed=None if r[22] is None else bool(r[22]),
        approved=bool(r[23]),
        resolved=None if r[24] is None else str(r[24]),
        resolved_at=None if r[25] is None else str(r[25]),
        resolved_by=None if r[26] is None else str(r[26]),
        pays_table=bool(r[27]),
    )


_J = TypeVar("_J")


def _storage_faults(cls: type[_J]) -> type[_J]:
    """Every public method of ``cls`` raises SQLite's errors as the journal's own (``Journal._failure``):
    its callers, the device loop and every outbox, handle one kind of storage fault, and a method added
    later cannot leak a bare sqlite3 error (a damaged page read at a tap was taken for a server fault)."""
    for name, attr in list(vars(cls).items()):
        # Public names as written here: the copies of methods a test tool adds (mutmut's, named with a
        # non-ASCII separator) are left alone, or a private method's copy would be translated too.
        if name.isascii() and not name.startswith("_") and inspect.isfunction(attr):
            setattr(cls, name, _translated(attr))
    return cls


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def rows(self: Journal, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise self._failure(exc, "read") from None

        return rows

    @functools.wraps(method)
    def run(self: Journal, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise self._failure(exc, "read") from None

    return run


@_storage_faults
class Journal:
    """The durable record of every tap; also the outbox of sales still to be delivered."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._db = conn
        self.path = path
        # The first corruption SQLite reported through this connection: it does not heal while the
        # terminal runs (the device loop stops it, and the next start salvages the journal).
        self.damaged: JournalDamaged | None = None
        self.identity = _identity(path)  # the file this connection writes: (device, inode), None if unknown

    def copy_to(self, target: Path) -> None:
        """Write a consistent copy of the journal, as it is now, to ``target``: one self-contained file
        (no -wal), 0600, through SQLite's backup API. Raises JournalError (JournalDamaged) when it cannot."""
        old_umask = os.umask(0o077)
        try:
            copy = sqlite3.connect(target, isolation_level=None)
        finally:
            os.umask(old_umask)
        try:
            self._db.backup(copy)
            copy.execute(
                "PRAGMA journal_mode=DELETE",  # pragma: no mutate
            )
        except sqlite3.Error as exc:
            raise self._failure(exc, "copy") from None  # not "read": a full disk fails the copy's writes
        finally:
            copy.close()

    def _failure(self, exc: sqlite3.Error, verb: str) -> JournalError:
        """``exc`` as the journal's error: JournalDamaged for corruption (kept in ``damaged``), else
        JournalError ("journal write failed: …", "journal read failed: …")."""
        if not _is_damage(exc):
            return JournalError(f"journal {verb} failed: {exc}")
        # Found in use: a running terminal stops itself for that (DeviceLoop), so no person has to.
        damage = JournalDamaged(self.path, str(exc), RUNNING_DAMAGE_FIX)
        if self.damaged is None:
            self.damaged = damage
        return damage

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Open (creating, checking and migrating) the journal at ``path``: what ``taptill run`` uses.

        Raises JournalDamaged for a corrupt journal, which stays where it is (``terminal.ops.salvage``
        moves it aside and salvages its sales), and JournalError when it cannot be read or written.
        """
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create state directory {path.parent}: {exc.strerror}") from None
        fresh = not path.exists()
        if not fresh:
            problem = _read_only_check(path)
            if problem is not None:
                raise JournalDamaged(path, problem)
        old_umask = os.umask(0o077)  # journal, -wal and -shm files are private
        try:
            try:
                # A lock another connection holds is waited for up to 5 s (sqlite3's default timeout).
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise JournalError(f"cannot open journal {path}: {exc}") from None
            # Closed on a refusal too (a newer schema, damage found now): an open connection would keep
            # a -wal and -shm beside a journal this taptill does not use.
            with _closed_on_error(conn, path, "open"):
                created = _schema_version(conn, path) == 0
                if created:  # before WAL mode, which would rewrite the header of another program's file
                    _must_be_empty(conn, path)  # its database is not ours to add tables to
                conn.execute(
                    "PRAGMA journal_mode=WAL",  # pragma: no mutate
                )
                conn.execute(
                    "PRAGMA synchronous=FULL",  # pragma: no mutate
                )
                conn.execute(
                    "PRAGMA foreign_keys=ON",  # pragma: no mutate
                )
                journal = cls(conn, path)
                journal._migrate()
        finally:
            os.umask(old_umask)
        if created:
            log.info("created journal %s%s", path, "" if fresh else " in the empty file there")
        return journal

    @classmethod
    def open_read_only(cls, path: Path) -> Journal:
        """For commands that only read (journal, queue, status, doctor): never creates, moves or migrates
        a file, and leaves no -wal/-shm behind. A journal older than this taptill is migrated in memory.

        Raises JournalMissing, JournalDamaged, or JournalError (unreadable, or newer than this taptill).
        """
        _must_exist(path)
        try:
            conn = sqlite3.connect(
                _uri(path, _reading_params(path)),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read journal {path}: {exc}") from None
        with _closed_on_error(conn, path, "read"):
            version = _intact_version(conn, path)
            if version == 0:  # an empty file (no journal yet: say so, not "nothing pending"), or foreign
                _must_be_empty(conn, path)
                raise JournalMissing(path)
            if version < len(MIGRATIONS):
                # Readable all the same: migrate a copy in memory, never the file (`taptill run` does that).
                memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                conn.backup(memory)
                conn.close()
                conn = memory
                cls(conn, path)._migrate()
        return cls(conn, path)

    @classmethod
    def open_existing(cls, path: Path) -> Journal:
        """For ``taptill settle``, which writes while the terminal runs: the journal must exist, be intact
        and current; nothing is created, moved aside or migrated. Raises as ``open_read_only``, and
        JournalError for a journal older than this taptill."""
        _must_exist(path)
        # Checked read-only first, as ``open`` does: a read-write connection closed on a damaged journal
        # would checkpoint its -wal into the main file, and `taptill recover` wants both as they were.
        # Like the reading commands, it leaves no -wal/-shm beside a journal it then refuses.
        problem = _read_only_check(path, _reading_params(path))
        if problem is not None:
            raise JournalDamaged(path, problem)
        # No umask here (unlike ``open``): mode=rw creates no journal, and SQLite gives the -wal and -shm
        # it makes the journal's own mode (0600).
        try:
            conn = sqlite3.connect(
                _uri(path, "mode=rw"),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {path}: {exc}") from None
        with _closed_on_error(conn, path, "open"):
            version = _schema_version(conn, path)
            if version == 0:
                _must_be_empty(conn, path)
                raise JournalMissing(path)
            if version < len(MIGRATIONS):
                raise JournalError(
                    f"journal {path} has schema {version}, older than this taptill ({len(MIGRATIONS)}): "
                    "start `taptill run` once, it migrates the journal"
                )
            conn.execute(
                "PRAGMA synchronous=FULL",  # pragma: no mutate
            )
            conn.execute(
                "PRAGMA foreign_keys=ON",  # pragma: no mutate
            )
        return cls(conn, path)

    def close(self) -> None:
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection, for read-only tools that query the journal themselves (``terminal.report``
        over a journal opened with ``open_read_only``)."""
        return self._db

    def _migrate(self) -> None:
        version = _schema_version(self._db, self.path)
        for target in range(version, len(MIGRATIONS)):
            with self._tx():
                for stmt in _statements(MIGRATIONS[target]):
                    self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version = {target + 1}")
            log.debug("journal schema migrated to version %d", target + 1)

    def _tx(self) -> _Tx:
        return _Tx(self._db)

    def _write(self, sql: str, params: Sequence[object], also: Statements = ()) -> sqlite3.Cursor:
        """One transaction, one fsync: ``also`` rides along (a tap pays for one sync, not several)."""
        try:
            with self._tx():
                cur = self._db.execute(sql, params)
                for extra_sql, extra_params in also:
                    self._db.execute(extra_sql, extra_params)
                return cur
        except sqlite3.Error as exc:
            raise self._failure(exc, "write") from None

    def _write_returning(self, sql: str, params: Sequence[object], also: Statements = ()) -> Any:
        """``_write`` for a statement with a RETURNING clause: its first row, read inside the transaction
        (the row the statement wrote, without a second query reading it back)."""
        try:
            with self._tx():
                row = self._db.execute(sql, params).fetchone()
                for extra_sql, extra_params in also:
                    self._db.execute(extra_sql, extra_params)
                return row
        except sqlite3.Error as exc:
            raise self._failure(exc, "write") from None

    # --- sales -------------------------------------------------------------------------------

    def record_sale(
        self,
        *,
        token_id: str,
        products: Sequence[ProductId],
        amount_cents: int,
        description: str,
        tag: str | None,
        offline: bool,
        reason: str = "",
        operator: str | None = None,
        balance_before: int | None = None,
        attempting: bool = False,
        key: str | None = None,
        also: Statements = (),
        attempted_at: float | None = None,
        dispense: bool = False,
        approved: bool = True,
        goods: Sequence[ProductId] = (),
    ) -> SaleRecord:
        """Commit a new pending sale with its idempotency key; returns only once it is durable.

        ``attempting`` marks it as possibly sent already, for the request about to go out; ``dispense``
        that the relay is to give its products (noted as not dispensed until ``mark_dispensed``);
        ``approved`` False that the guest has not been told yet (until ``mark_approved``); ``goods`` the
        configured products given out, kept where they are not ``products`` (a Partybroker ladder step).
        """
        now = _now_iso()
        row = self._write_returning(
            "INSERT INTO sales (idempotency_key, token_id, products, amount_cents,"  # pragma: no mutate
            " description, tag, state, reason, offline, operator, balance_before,"  # pragma: no mutate
            " maybe_sent, attempts, created_at, updated_at, attempted_at, dispensed,"  # pragma: no mutate
            " approved, goods)"  # pragma: no mutate
            " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # pragma: no mutate
            f" RETURNING {_FIELDS}, ?",  # pragma: no mutate
            (
                key or new_idempotency_key(),
                token_id,
                json.dumps(list(products)),
                amount_cents,
                description,
                tag,
                reason,
                int(offline),
                operator,
                balance_before,
                int(attempting),
                int(attempting),
                now,
                now,
                (time.time() if attempted_at is None else attempted_at) if attempting else None,
                0 if dispense else None,
                int(approved),
                json.dumps(list(goods)) if goods and list(goods) != list(products) else None,
                # pays_table: its table bill's row rides in ``also``, written after the sale it refers to,
                # where RETURNING cannot see it (and a key new to the journal has no such row otherwise)
                any(isinstance(statement, TableBillRow) for statement in also),
            ),
            also,
        )
        return _row(row)

    def record_decline(
        self,
        *,
        token_id: str,
        products: Sequence[ProductId],
        amount_cents: int,
        description: str,
        reason: DeclineReason | str,
        offline: bool = False,
        operator: str | None = None,
        also: Statements = (),
    ) -> None:
        """Journal a tap that moved no money, with its reason (offline decisions included)."""
        now = _now_iso()
        self._write(
            "INSERT INTO sales (idempotency_key, token_id, products, amount_cents,"  # pragma: no mutate
            " description, state, reason, offline, operator, created_at, updated_at,"  # pragma: no mutate
            " approved)"  # pragma: no mutate
            " VALUES (?, ?, ?, ?, ?, 'declined', ?, ?, ?, ?, ?, 0)",  # pragma: no mutate
            (
                new_idempotency_key(),
                token_id,
                json.dumps(list(products)),
                amount_cents,
                description,
                str(reason),
                int(offline),
                operator,
                now,
                now,
            ),
            also,
        )

    def sale(self, sale_id: int) -> SaleRecord | None:
        r = self._db.execute(
            f"SELECT {_COLUMNS} FROM sales WHERE id = ?",  # pragma: no mutate
            (sale_id,),
        ).fetchone()
        return _row(r) if r else None

    def bill_payment(self, key: str) -> tuple[str | None, str]:
        """What the journal holds of the bill whose key is ``key``: ("done" or "pending", the key of the
        sale that paid it) when a sale under it or one of its retry keys (``key-2``, ``key-3`` …) moved or
        may move money; else (None, the next key to pay it with: ``key`` itself, or the retry key after
        the last one rejected or declined)."""
        next_key = key
        for n in range(1, MAX_BILL_RETRIES + 1):
            candidate = key if n == 1 else f"{key}-{n}"
            r = self._db.execute(
                "SELECT state FROM sales WHERE idempotency_key = ?",  # pragma: no mutate
                (candidate,),
            ).fetchone()
            if r is None:
                return None, candidate
            if r[0] in ("done", "pending"):
                return str(r[0]), candidate
            next_key = f"{key}-{n + 1}"
        return None, next_key

    def table_bills(self, business_date: str | None = None) -> list[TableBillRecord]:
        """Table bills paid by wallet (of ``business_date``, ISO; None: all), oldest first."""
        where = (
            ""  # all days
            if business_date is None
            else " WHERE t.business_date = ?"  # pragma: no mutate
        )
        rows = self._db.execute(
            (
                "SELECT t.sale_key, t.table_id, t.party_id, t.business_date,"  # pragma: no mutate
                " t.orders, t.amount_cents, t.created_at,"  # pragma: no mutate
                " s.state, s.reason, s.approved, s.resolved"  # pragma: no mutate
                " FROM table_bills t JOIN sales s ON s.idempotency_key = t.sale_key"  # pragma: no mutate
            )
            + where
            + " ORDER BY t.rowid",  # pragma: no mutate
            () if business_date is None else (business_date,),
        ).fetchall()
        return [
            TableBillRecord(
                sale_key=str(r[0]),
                table_id=int(r[1]),
                party_id=int(r[2]),
                business_date=str(r[3]),
                orders=tuple(json.loads(str(r[4]))),
                amount_cents=int(r[5]),
                created_at=str(r[6]),
                state=str(r[7]),
                reason=str(r[8]),
                approved=bool(r[9]),
                resolved=None if r[10] is None else str(r[10]),
            )
            for r in rows
        ]

    def mark_booked_elsewhere(self, sale_id: int, note: str) -> None:
        """The server had booked this sale's key before this terminal sent it (202 to its first request):
        done, but no money moved here, so it is not counted among this terminal's sales (``status``).

        Its outbox records never attempted end in the same write (done, "booked elsewhere"): the terminal
        that booked the key made its own and delivers them (a second terminal's ApplyPayment for the same
        order could race the first one's look before sending)."""
        now = _now_iso()
        try:
            with self._tx():
                cur = self._db.execute(
                    "UPDATE sales SET reason = ?, dispensed = NULL, updated_at = ?"  # pragma: no mutate
                    " WHERE id = ? AND state = 'done'",  # pragma: no mutate
                    (BOOKED_ELSEWHERE_REASON + note, now, sale_id),
                )
                # Only with the sale's own change: a sale not done (yet) keeps its records as they are.
                if cur.rowcount:
                    self._db.execute(
                        "UPDATE outbox SET state = 'done', reason = ?, updated_at = ?"  # pragma: no mutate
                        " WHERE sale_id = ? AND state = 'pending' AND attempts = 0"  # pragma: no mutate
                        " AND maybe_sent = 0",  # pragma: no mutate
                        (BOOKED_ELSEWHERE_REASON + "the terminal that booked it delivers it", now, sale_id),
                    )
        except sqlite3.Error as exc:
            raise self._failure(exc, "write") from None

    def sale_by_key(self, key: str) -> SaleRecord | None:
        r = self._db.execute(
            f"SELECT {_COLUMNS} FROM sales WHERE idempotency_key = ?",  # pragma: no mutate
            (key,),
        ).fetchone()
        return _row(r) if r else None

    def mark_attempt(
        self, sale_id: int, balance_before: int | None, at: float | None = None, also: Statements = ()
    ) -> None:
        """Durably note that a request for this sale is about to go out; ``also`` rides along (the card's
        balance just read)."""
        self._write(
            "UPDATE sales SET maybe_sent = 1, attempts = attempts + 1,"  # pragma: no mutate
            " balance_before = ?, updated_at = ?, attempted_at = ?"  # pragma: no mutate
            " WHERE id = ? AND state = 'pending'",  # pragma: no mutate
            (balance_before, _now_iso(), time.time() if at is None else at, sale_id),
            also,
        )

    def mark_not_sent(self, sale_id: int) -> None:
        """The last request provably never reached the server (or reconciliation showed no effect)."""
        self._write(
            "UPDATE sales SET maybe_sent = 0, updated_at = ?"  # pragma: no mutate
            " WHERE id = ? AND state = 'pending'",  # pragma: no mutate
            (_now_iso(), sale_id),
        )

    def mark_approved(self, sale_id: int) -> None:
        """The guest was told the sale is approved: from now on it is delivered whatever it takes."""
        self._write(
            "UPDATE sales SET approved = 1 WHERE id = ? AND approved = 0",  # pragma: no mutate
            (sale_id,),
        )

    def mark_dispensed(self, key: str) -> None:
        """The relay gave every product of the sale with idempotency key ``key``."""
        self._write(
            "UPDATE sales SET dispensed = 1 WHERE idempotency_key = ? AND dispensed = 0",  # pragma: no mutate
            (key,),
        )

    def mark_server_error(self, sale_id: int, status: int) -> None:
        """The server answered this sale's request with an error status (5xx): not a dead server."""
        self._write(
            "UPDATE sales SET last_status = ?, updated_at = ?"  # pragma: no mutate
            " WHERE id = ? AND state = 'pending'",  # pragma: no mutate
            (status, _now_iso(), sale_id),
        )

    def count_server_error(self, sale_id: int) -> int:
        """An error answer turned out not booked: count it (and forget the status); returns the count."""
        self._write(
            "UPDATE sales SET server_errors = server_errors + 1, last_status = NULL,"  # pragma: no mutate
            " updated_at = ? WHERE id = ? AND state = 'pending'",  # pragma: no mutate
            (_now_iso(), sale_id),
        )
        r = self._db.execute(
            "SELECT server_errors FROM sales WHERE id = ?",  # pragma: no mutate
            (sale_id,),
        ).fetchone()
        return 0 if r is None else int(r[0])

    def mark_done(
        self, sale_id: int, balance_after: int | None, also: Statements = (), *, approved: bool = False
    ) -> None:
        """The server booked the sale; ``also`` are statements committed with it (its reports);
        ``approved`` notes in the same write that the guest is being told so (the tap path).

        The latest retry note ("waiting before reconciling", "server unreachable") no longer holds once
        the sale is done: it is cleared; an offline decision's reason ("offline: …") stays."""
        try:
            with self._tx():
                cur = self._db.execute(
                    "UPDATE sales SET state = 'done', balance_after = ?, maybe_sent = 0,"  # pragma: no mutate
                    " hold = 0, approved = MAX(approved, ?), updated_at = ?,"  # pragma: no mutate
                    f" reason = CASE WHEN reason LIKE '{OFFLINE_REASON}%'"  # pragma: no mutate
                    " THEN reason ELSE '' END"  # pragma: no mutate
                    " WHERE id = ? AND state = 'pending'",  # pragma: no mutate
                    (balance_after, int(approved), _now_iso(), sale_id),
                )
                if cur.rowcount:
                    for sql, params in also:
                        self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._failure(exc, "write") from None

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """One committed write for modules that keep their own tables here; returns the row count."""
        return self._write(sql, params).rowcount

    def execute_all(self, statements: Statements) -> None:
        """Commit ``statements`` in one transaction (one fsync): all of them or, on error, none."""
        if statements:
            (sql, params), *rest = statements
            self._write(sql, params, rest)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return self._db.execute(sql, params).fetchall()

    def mark_rejected(self, sale_id: int, reason: str) -> None:
        self._write(
            "UPDATE sales SET state = 'rejected', reason = ?, maybe_sent = 0,"  # pragma: no mutate
            " updated_at = ? WHERE id = ? AND state = 'pending'",  # pragma: no mutate
            (reason[:300], _now_iso(), sale_id),
        )

    def mark_unsellable(self, products: Sequence[tuple[str, str]], reason: str) -> None:
        """Products (id, name) the server cannot book: the terminal stops selling them offline."""
        now = _now_iso()
        for pid, name in products:
            self._write(
                "INSERT INTO unsellable (product_id, name, reason, since)"  # pragma: no mutate
                " VALUES (?, ?, ?, ?)"  # pragma: no mutate
                " ON CONFLICT (product_id) DO UPDATE SET reason = excluded.reason",  # pragma: no mutate
                (pid, name[:100], reason[:300], now),
            )

    def clear_unsellable(self, product_ids: Collection[str]) -> int:
        """A sale of these products was booked after all: sell them again. Returns how many were cleared."""
        if not product_ids:
            return 0
        marks = ",".join("?" for _ in product_ids)
        sql = (
            "DELETE FROM unsellable"  # pragma: no mutate
            f" WHERE product_id IN ({marks})"  # pragma: no mutate
        )
        return self._write(sql, list(product_ids)).rowcount

    def unsellable(self) -> dict[str, tuple[str, str, str]]:
        """Product id -> (name, reason, since) of every product the server could not book."""
        rows = self._db.execute(
            "SELECT product_id, name, reason, since FROM unsellable ORDER BY product_id",  # pragma: no mutate
        )
        return {str(r[0]): (str(r[1]), str(r[2]), str(r[3])) for r in rows}

    def booked_products(self, product_ids: Collection[str]) -> set[str]:
        """Which of ``product_ids`` (as text) a sale the server booked (done) contained."""
        if not product_ids:
            return set()
        marks = ",".join("?" for _ in product_ids)
        rows = self._db.execute(
            "SELECT DISTINCT CAST(item.value AS TEXT)"  # pragma: no mutate
            " FROM sales, json_each(sales.products) AS item"  # pragma: no mutate
            f" WHERE sales.state = 'done' AND CAST(item.value AS TEXT) IN ({marks})",  # pragma: no mutate
            list(product_ids),
        )
        return {str(r[0]) for r in rows}

    def schedule_retry(self, sale_id: int, at: float, reason: str) -> None:
        self._write(
            "UPDATE sales SET next_attempt_at = ?, reason = ?, updated_at = ?"  # pragma: no mutate
            " WHERE id = ? AND state = 'pending'",  # pragma: no mutate
            (at, reason[:300], _now_iso(), sale_id),
        )

    def hold(self, sale_id: int, reason: str) -> None:
        """Stop retrying a sale whose effect is unclear; a person reconciles it (``taptill queue``)."""
        self._write(
            "UPDATE sales SET hold = 1, reason = ?, updated_at = ?"  # pragma: no mutate
            " WHERE id = ? AND state = 'pending'",  # pragma: no mutate
            (reason[:300], _now_iso(), sale_id),
        )

    def settle_held(self, key: str, *, booked: bool, also: Statements = ()) -> bool:
        """A person checked the wallet: ``booked`` marks the held sale done, otherwise it is sent again.
        ``also`` (with ``booked``) commits with the ``done``, as for any sale booked: its invoice record.
        True if a held sale with that key was found."""
        if booked:
            sql = (
                "UPDATE sales SET state = 'done', hold = 0, maybe_sent = 0,"  # pragma: no mutate
                " reason = ?, updated_at = ?"  # pragma: no mutate
            )
            reason = "settled by hand: booked"
        else:
            sql = (
                "UPDATE sales SET hold = 0, maybe_sent = 0, next_attempt_at = 0,"  # pragma: no mutate
                " reason = ?, updated_at = ?"  # pragma: no mutate
            )
            reason = "settled by hand: not booked, sending again"
        try:
            with self._tx():
                cur = self._db.execute(
                    f"{sql} WHERE idempotency_key = ? AND state = 'pending'"  # pragma: no mutate
                    " AND hold = 1",  # pragma: no mutate
                    (reason, _now_iso(), key),
                )
                if cur.rowcount == 1 and booked:
                    for extra_sql, extra_params in also:
                        self._db.execute(extra_sql, extra_params)
        except sqlite3.Error as exc:
            raise self._failure(exc, "write") from None
        return cur.rowcount == 1

    def resolve(self, key: str, how: str, by: str, also: Statements = ()) -> bool:
        """A person closed the sale with idempotency key ``key``, charged but never served: ``how`` is
        'refunded' (the guest got the money back) or 'served' (by hand); ``by`` names who. True if such
        a sale, still open, was found (one already closed, or any other sale, is left alone). A booked
        table bill's sale, never to refund by itself, may be recorded refunded (staff gave the money back
        after all); it is never "served by hand". ``also`` commits in the same write (each statement must
        itself check that the sale is now closed: it runs whatever the update found)."""
        if how not in RESOLUTIONS:
            raise ValueError(f"resolution {how!r} is none of {RESOLUTIONS}")
        which = TO_REFUND_SQL
        if how == "refunded":
            which = (
                f"(({TO_REFUND_SQL}) OR"  # pragma: no mutate
                f" (state = 'done' AND resolved IS NULL AND {PAYS_TABLE_SQL}))"  # pragma: no mutate
            )
        cur = self._write(
            "UPDATE sales SET resolved = ?, resolved_at = ?, resolved_by = ?,"  # pragma: no mutate
            f" updated_at = ? WHERE idempotency_key = ? AND {which}",  # pragma: no mutate
            (how, _now_iso(), by[:100], _now_iso(), key),
            also,
        )
        return cur.rowcount == 1

    def to_refund(self) -> list[SaleRecord]:
        """Sales charged but never served that no person has closed yet, oldest first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM sales WHERE {TO_REFUND_SQL} ORDER BY id",  # pragma: no mutate
        ).fetchall()
        return [_row(r) for r in rows]

    def due_sales(self, now: float | None = None, limit: int = 100) -> list[SaleRecord]:
        """Pending sales to send: oldest first, and only the oldest pending sale of each card, so one
        card's sales reach the server in order and reconciliation stays unambiguous.

        ``now`` (wall clock) leaves out sales whose noted next attempt lies later; the outbox passes
        None and keeps its waits on the monotonic clock, so a clock step never parks a sale.

        Read through the partial index of pending sales: the outbox looks every 2 s, and the planner
        would otherwise scan every sale of the night each time.
        """
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM sales s INDEXED BY sales_pending"  # pragma: no mutate
            " WHERE state = 'pending' AND hold = 0"  # pragma: no mutate
            " AND (? IS NULL OR next_attempt_at <= ?)"  # pragma: no mutate
            " AND NOT EXISTS (SELECT 1 FROM sales e WHERE e.token_id = s.token_id"  # pragma: no mutate
            " AND e.state = 'pending' AND e.id < s.id) ORDER BY id LIMIT ?",  # pragma: no mutate
            (now, now, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def credited_by(self, operator: str, since: datetime) -> int:
        """Cents operator ``operator`` credited (top-ups journaled with their name) since ``since``
        (aware), pending or booked: not declined, not rejected by the server."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(amount_cents), 0) FROM sales"  # pragma: no mutate
            " WHERE operator = ? AND amount_cents > 0"  # pragma: no mutate
            " AND state IN ('pending', 'done') AND created_at >= ?",  # pragma: no mutate
            (operator, since.astimezone(UTC).isoformat(timespec="milliseconds")),
        ).fetchone()
        return int(row[0])

    # --- operator PINs (top-up kiosk) ------------------------------------------------------------

    def pin_failures(self) -> dict[str, PinFailures]:
        """Every operator's wrong PINs in a row and lockout, by operator name."""
        rows = self._db.execute(
            "SELECT operator, wrong, locked_at, locked_boot, locked_uptime"  # pragma: no mutate
            " FROM operator_pins",  # pragma: no mutate
        ).fetchall()
        return {
            str(r[0]): PinFailures(
                int(r[1]),
                None if r[2] is None else Moment(float(r[2]), str(r[3] or ""), float(r[4] or 0.0)),
            )
            for r in rows
        }

    def note_pin_failures(self, operator: str, wrong: int, locked_at: Moment | None = None) -> None:
        """Operator ``operator`` has entered ``wrong`` wrong PINs in a row, locked out since
        ``locked_at`` if given; 0 and no lockout (a right PIN) forgets them. One fsync'd commit."""
        if wrong == 0 and locked_at is None:
            self._write(
                "DELETE FROM operator_pins WHERE operator = ?",  # pragma: no mutate
                (operator,),
            )
            return
        at = locked_at
        self._write(
            "INSERT INTO operator_pins"  # pragma: no mutate
            " (operator, wrong, locked_at, locked_boot, locked_uptime, updated_at)"  # pragma: no mutate
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (operator) DO UPDATE SET"  # pragma: no mutate
            " wrong = excluded.wrong, locked_at = excluded.locked_at,"  # pragma: no mutate
            " locked_boot = excluded.locked_boot,"  # pragma: no mutate
            " locked_uptime = excluded.locked_uptime, updated_at = excluded.updated_at",  # pragma: no mutate
            (
                operator,
                wrong,
                None if at is None else at.wall,
                None if at is None else at.boot or None,
                None if at is None or not at.boot else at.uptime,
                _now_iso(),
            ),
        )

    def pending_for_card(self, token_id: str) -> list[SaleRecord]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM sales WHERE token_id = ? AND state = 'pending'"  # pragma: no mutate
            " ORDER BY id",  # pragma: no mutate
            (token_id,),
        ).fetchall()
        return [_row(r) for r in rows]

    def sales(self, states: Sequence[SaleState] | None = None) -> Iterator[SaleRecord]:
        if states:
            marks = ",".join("?" for _ in states)
            cur = self._db.execute(
                f"SELECT {_COLUMNS} FROM sales WHERE state IN ({marks}) ORDER BY id",  # pragma: no mutate
                [str(s) for s in states],
            )
        else:
            cur = self._db.execute(
                f"SELECT {_COLUMNS} FROM sales ORDER BY id",  # pragma: no mutate
            )
        for r in cur:
            yield _row(r)

    def status(self) -> JournalStatus:
        r = self._db.execute(
            "SELECT"  # pragma: no mutate
            " COALESCE(SUM(state = 'pending'), 0),"  # pragma: no mutate
            " COALESCE(SUM(CASE WHEN state = 'pending'"  # pragma: no mutate
            "   THEN amount_cents END), 0),"  # pragma: no mutate
            " COALESCE(SUM(state = 'pending' AND hold = 1), 0),"  # pragma: no mutate
            " COALESCE(SUM(state = 'done'"  # pragma: no mutate
            f" AND reason NOT LIKE '{BOOKED_ELSEWHERE_REASON}%'), 0),"  # pragma: no mutate
            f" COALESCE(SUM({REJECTED_SQL}), 0),"  # pragma: no mutate
            f" COALESCE(SUM(CASE WHEN {REJECTED_SQL} THEN amount_cents END), 0),"  # pragma: no mutate
            " COALESCE(SUM(state = 'declined'), 0),"  # pragma: no mutate
            " MIN(CASE WHEN state = 'pending' THEN created_at END),"  # pragma: no mutate
            f" COALESCE(SUM({TO_REFUND_SQL}), 0),"  # pragma: no mutate
            f" COALESCE(SUM(CASE WHEN {TO_REFUND_SQL} THEN amount_cents END), 0),"  # pragma: no mutate
            " COALESCE(SUM(resolved = 'refunded'), 0),"  # pragma: no mutate
            " COALESCE(SUM(resolved = 'served'), 0),"  # pragma: no mutate
            " COALESCE(SUM(state = 'done'"  # pragma: no mutate
            f" AND reason LIKE '{BOOKED_ELSEWHERE_REASON}%'), 0),"  # pragma: no mutate
            f" COALESCE(SUM({REFUSED_AT_TAP_SQL}), 0) FROM sales",  # pragma: no mutate
        ).fetchone()
        return JournalStatus(
            pending=int(r[0]),
            pending_cents=int(r[1]),
            held=int(r[2]),
            done=int(r[3]),
            rejected=int(r[4]),
            rejected_cents=int(r[5]),
            declined=int(r[6]),
            oldest_pending=r[7],
            to_refund=int(r[8]),
            to_refund_cents=int(r[9]),
            refunded=int(r[10]),
            served_by_hand=int(r[11]),
            booked_elsewhere=int(r[12]),
            refused_at_tap=int(r[13]),
        )

    # --- cards and the offline view ---------------------------------------------------------

    def remember_card(self, token_id: str, balance_cents: int, now: float | Moment) -> None:
        self._write(*remember_card_statement(token_id, balance_cents, now))

    def deny_card(self, token_id: str, reason: str) -> None:
        self._write(
            "INSERT INTO cards (token_id, denied_reason) VALUES (?, ?)"  # pragma: no mutate
            " ON CONFLICT (token_id)"  # pragma: no mutate
            " DO UPDATE SET denied_reason = excluded.denied_reason",  # pragma: no mutate
            (token_id, reason[:200]),
        )

    def denied_reason(self, token_id: str) -> str | None:
        """Why the card is denied offline (a code of CARD_REFUSALS), None when it is not."""
        r = self._db.execute(
            "SELECT denied_reason FROM cards WHERE token_id = ?",  # pragma: no mutate
            (token_id,),
        ).fetchone()
        return None if r is None or r[0] is None else str(r[0])

    def denied_cards(self) -> dict[str, int]:
        """How many cards are denied offline, by reason (a decline code of CARD_REFUSALS)."""
        rows = self._db.execute(
            "SELECT denied_reason, COUNT(*) FROM cards WHERE denied_reason IS NOT NULL"  # pragma: no mutate
            " GROUP BY denied_reason ORDER BY denied_reason",  # pragma: no mutate
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def offline_view(self, token_id: str, now: float | Moment) -> OfflineView:
        """What the journal knows of a card; its balance's age survives wall-clock steps (boot_clock)."""
        card = self._db.execute(
            "SELECT balance_cents, seen_at, denied_reason, seen_boot, seen_uptime"  # pragma: no mutate
            " FROM cards WHERE token_id = ?",  # pragma: no mutate
            (token_id,),
        ).fetchone()
        totals = self._db.execute(
            "SELECT COALESCE(SUM(-amount_cents), 0), COUNT(*),"  # pragma: no mutate
            " COALESCE(SUM(CASE WHEN token_id = ? THEN -amount_cents END), 0),"  # pragma: no mutate
            " COALESCE(SUM(CASE WHEN amount_cents > 0 THEN amount_cents END), 0)"  # pragma: no mutate
            " FROM sales WHERE state = 'pending'",  # pragma: no mutate
            (token_id,),
        ).fetchone()
        last_balance = None if card is None or card[0] is None else int(card[0])
        at = now if isinstance(now, Moment) else Moment(now)
        age = (
            None
            if card is None or card[1] is None
            else age_s(Moment(float(card[1]), str(card[3] or ""), float(card[4] or 0.0)), at)
        )
        return OfflineView(
            last_balance=last_balance,
            balance_age_s=age,
            card_unconfirmed_cents=int(totals[2]),
            total_unconfirmed_cents=int(totals[0]),
            unconfirmed_count=int(totals[1]),
            denied_reason=None if card is None else card[2],
            unconfirmed_credit_cents=int(totals[3]),
        )

    def unconfirmed_count(self) -> int:
        """Pending sales. Asked several times per tap: the partial index holds only the pending ones, so
        the count does not grow with the night's sales (the planner would scan ``sales_token`` whole)."""
        sql = (
            "SELECT COUNT(*) FROM sales INDEXED BY sales_pending"  # pragma: no mutate
            " WHERE state = 'pending'"  # pragma: no mutate
        )
        return int(self._db.execute(sql).fetchone()[0])

    # --- cache of server data, so the terminal boots and decides offline ---------------------

    def cache_put(self, key: str, value: object) -> None:
        self._write(
            "INSERT INTO cache (key, value, stored_at) VALUES (?, ?, ?)"  # pragma: no mutate
            " ON CONFLICT (key) DO UPDATE SET"  # pragma: no mutate
            " value = excluded.value, stored_at = excluded.stored_at",  # pragma: no mutate
            (key, json.dumps(value), time.time()),
        )

    def cache_get(self, key: str) -> tuple[object, float] | None:
        r = self._db.execute(
            "SELECT value, stored_at FROM cache WHERE key = ?",  # pragma: no mutate
            (key,),
        ).fetchone()
        if r is None:
            return None
        return json.loads(r[0]), float(r[1])


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def journal_moved(journal: Journal) -> str | None:
    """Why the file at the journal's path is no longer the one this connection writes ("removed",
    "replaced by another file", or its -wal removed), None while it is: a journal deleted or swapped under
    a running terminal would take every sale made since with it when the process ends."""
    if journal.identity is None:
        return None
    now = _identity(journal.path)
    if now is None:
        return "removed"
    if now != journal.identity:
        return "replaced by another file"
    # An open connection keeps the -wal (the last one to close removes it): gone, it was removed.
    return None if Path(f"{journal.path}-wal").exists() else "left without its -wal (removed)"


@contextlib.contextmanager
def _closed_on_error(conn: sqlite3.Connection, path: Path, verb: str) -> Iterator[None]:
    """Close ``conn`` if the block fails; SQLite's errors become JournalDamaged or JournalError."""
    try:
        yield
    except sqlite3.Error as exc:
        conn.close()
        if _is_damage(exc):
            raise JournalDamaged(path, str(exc)) from None
        raise JournalError(f"cannot {verb} journal {path}: {exc}") from None
    except JournalError:
        conn.close()
        raise


def _must_be_empty(conn: sqlite3.Connection, path: Path) -> None:
    """A database of schema 0 is no journal yet; JournalError when another program's tables are in it."""
    tables = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",  # pragma: no mutate
        )
    ]
    if tables:
        raise JournalError(
            f"{path} is not a taptill journal (it holds the tables {', '.join(tables[:5])}); "
            "move it away, or set [terminal] state_dir to a directory of its own"
        )


def _intact_version(conn: sqlite3.Connection, path: Path) -> int:
    """The journal's schema version once PRAGMA quick_check says it is intact (else JournalDamaged)."""
    problem = _quick_check(conn)
    if problem is not None:
        raise JournalDamaged(path, problem)
    return _schema_version(conn, path)


def remember_card_statement(
    token_id: str, balance_cents: int, now: float | Moment
) -> tuple[str, Sequence[object]]:
    """The card's last balance seen online (for offline decisions), to commit with a sale. ``now`` as a
    plain float is a wall-clock time of unknown boot (its age then counts by the wall clock).

    The server answered for the card: a denial (CARD_REFUSALS) ends in the same write, as the balance now
    seen is what offline decisions go by."""
    at = now if isinstance(now, Moment) else Moment(now)
    return (
        "INSERT INTO cards (token_id, balance_cents, seen_at, seen_boot, seen_uptime)"  # pragma: no mutate
        " VALUES (?, ?, ?, ?, ?)"  # pragma: no mutate
        " ON CONFLICT (token_id) DO UPDATE SET balance_cents = excluded.balance_cents,"  # pragma: no mutate
        " seen_at = excluded.seen_at, seen_boot = excluded.seen_boot,"  # pragma: no mutate
        " seen_uptime = excluded.seen_uptime, denied_reason = NULL",  # pragma: no mutate
        (token_id, balance_cents, at.wall, at.boot or None, at.uptime if at.boot else None),
    )


def allow_card_statement(token_id: str) -> tuple[str, Sequence[object]]:
    """The server booked a sale of the card without saying its balance: its denial ends (to commit with
    the sale's "done")."""
    return (
        "UPDATE cards SET denied_reason = NULL WHERE token_id = ?",  # pragma: no mutate
        (token_id,),
    )


class _Tx:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error: one fsync'd commit per write."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute(
            "BEGIN IMMEDIATE",  # pragma: no mutate
        )

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute(
                "COMMIT",  # pragma: no mutate
            )
        else:
            self._db.execute(
                "ROLLBACK",  # pragma: no mutate
            )


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _uri(path: Path, params: str) -> str:
    """A SQLite URI for ``path``; quoted, so a '?' or '#' in a directory name is not taken for a parameter."""
    return f"file:{quote(str(path.absolute()))}?{params}"


def _must_exist(path: Path) -> None:
    try:
        path.stat()
    except FileNotFoundError:
        raise JournalMissing(path) from None
    except OSError as exc:
        raise JournalError(f"cannot read journal {path}: {exc.strerror}") from None


def _is_damage(exc: sqlite3.Error) -> bool:
    """Corruption (SQLITE_CORRUPT, SQLITE_NOTADB), as opposed to a file that cannot be opened or read."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def _quick_check(conn: sqlite3.Connection) -> str | None:
    """None when SQLite finds the journal intact, else its first complaint; raises for unreadable files."""
    try:
        result = conn.execute(
            "PRAGMA quick_check",  # pragma: no mutate
        ).fetchone()
    except sqlite3.Error as exc:
        if _is_damage(exc):
            return str(exc)
        raise
    if result is None or result[0] != "ok":
        return str(result[0] if result else "no answer")
    return None


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    version = int(
        conn.execute(
            "PRAGMA user_version",  # pragma: no mutate
        ).fetchone()[0]
    )
    if version > len(MIGRATIONS):
        raise JournalTooNew(
            f"journal {path} has schema {version}, newer than this taptill knows "
            f"({len(MIGRATIONS)}); upgrade taptill"
        )
    return version


def _reading_params(path: Path) -> str:
    """URI parameters to read ``path`` without writing anything beside it: through the -wal and -shm of a
    running (or crashed) terminal when there is one; else the main file holds everything, and immutable=1
    reads it without creating -wal/-shm files that would outlive the command (owned by whoever ran it)."""
    return "mode=ro" if Path(f"{path}-wal").exists() else "immutable=1"


def _read_only_check(path: Path, params: str = "mode=ro") -> str | None:
    """quick_check before writing: None when intact, else what SQLite found wrong; JournalError for a
    journal newer than this taptill. ``params`` as for ``_uri``: ``taptill run`` keeps mode=ro, which
    reads through a -wal even if one appears meanwhile."""
    try:
        conn = sqlite3.connect(_uri(path, params), uri=True)
        try:
            problem = _quick_check(conn)
            if problem is None:
                # A newer taptill's journal is refused here, before a read-write connection could
                # checkpoint its -wal into the main file as it closes.
                _schema_version(conn, path)
            return problem
        finally:
            conn.close()
    except sqlite3.Error as exc:
        # Cannot open or read it (read-only state directory, I/O error): not corruption, so keep it in place.
        raise JournalError(f"cannot read journal {path}: {exc}; make the state directory writable") from None
