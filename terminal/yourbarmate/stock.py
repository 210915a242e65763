"""The stock ledger: yourbarmate's events and staff's arrivals and counts as moves, and the figures per
wallet product (ordered, on hand, sold, servings left) in whole ml, g or pieces (issue 15, ybm-design).

Every write is one ``BEGIN IMMEDIATE`` transaction on the journal's file (WAL, synchronous=FULL): an
event's row and its moves are durable together, or neither is. Sold is never written here: it is the
sales (pending or booked) of each mapped wallet product since its last count, times its serving; a sale
counts what it poured (its ``goods``, where a Partybroker ladder booked a price step instead).
A count remembers the last sale before it by key, so a clock step or ``taptill recover`` (which gives
sales new ids) cannot move a sale to the other side of a count.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from terminal.journal import MIGRATIONS
from terminal.yourbarmate.config import StockProduct
from terminal.yourbarmate.event import CancelEvent, DeliveryEvent, Event
from terminal.yourbarmate.parse import EventError, parse_body

SCHEMA = 13  # the journal migration the ledger needs (12 made its tables, 13 the sales' goods)
Query = Callable[[str, Sequence[object]], list[Any]]


class StockError(Exception):
    """A staff command cannot be done (unknown delivery or product, no journal); one line saying why."""


class Applied(StrEnum):
    """What an event did: committed with its moves (or none, with ``note``), or seen before."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Outcome:
    applied: Applied
    note: str = ""  # why an accepted event moved nothing (cancelled before, a RETURN, nothing mapped)


@dataclass(frozen=True)
class Figures:
    """One wallet product's stock, in whole ``measure`` units."""

    product: str
    measure: str  # ml, g or pieces
    serving: int
    ordered: int  # requested, not yet received, not cancelled
    on_hand: int  # last count + received − returned − sold since it (negative: more sold than known)
    sold: int  # since the last count
    counted: int | None  # the last count, if any
    low_servings: int

    @property
    def servings_left(self) -> int:
        return max(self.on_hand, 0) // self.serving

    @property
    def sold_out(self) -> bool:
        return self.on_hand < self.serving

    @property
    def low(self) -> bool:
        return self.servings_left < self.low_servings

    def as_json(self) -> dict[str, object]:
        return {
            "product": self.product,
            "measure": self.measure,
            "serving": self.serving,
            "ordered": self.ordered,
            "on_hand": self.on_hand,
            "sold": self.sold,
            "counted": self.counted,
            "servings_left": self.servings_left,
            "sold_out": self.sold_out,
            "low": self.low,
        }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def connect(path: Path) -> sqlite3.Connection:
    """A connection of its own to the journal at ``path`` for the ledger's writes (the receiver's thread,
    ``taptill stock receive|set`` while the terminal runs): never creates or migrates the file."""
    if not path.exists():
        raise StockError(f"no journal at {path} yet: `taptill run` creates it")
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(path.absolute()))}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=10.0,
        )
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version < SCHEMA or version > len(MIGRATIONS):
            conn.close()
            raise StockError(
                f"journal {path} has schema {version}, not {len(MIGRATIONS)}: start `taptill run` of this "
                "taptill once, it migrates the journal"
            )
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise StockError(f"cannot open journal {path}: {exc}") from None
    return conn


class MeasureMismatch(EventError):
    """An item arrives in a measure its mapped wallet product is not counted in (kg for a ml product)."""


class StockLedger:
    """Writes the ledger through one connection (used by one thread at a time) and reads its figures."""

    def __init__(self, conn: sqlite3.Connection, products: Mapping[str, StockProduct]) -> None:
        self._db = conn
        self.products = products  # yourbarmate product id -> wallet product and serving

    def close(self) -> None:
        self._db.close()

    def apply(self, event: Event, payload: str) -> Outcome:
        """Commit ``event`` (its row, with ``payload`` as received) and its moves in one transaction;
        a key seen before changes nothing (whatever the mapping says now). Raises MeasureMismatch
        (nothing written) for an item whose measure is not its product's, sqlite3.Error when the journal
        cannot be written."""
        at = now_iso()
        with _Tx(self._db):
            seen = self._db.execute(
                "SELECT 1 FROM ybm_events WHERE idempotency_key = ?", (event.idempotency_key,)
            ).fetchone()
            if seen is not None:
                return Outcome(Applied.DUPLICATE)
            note = self._moves(event, self._checked(event), at)
            self._db.execute(
                "INSERT INTO ybm_events (idempotency_key, kind, delivery_id, delivery_type, received_at,"
                " payload) VALUES (?, ?, ?, ?, ?, ?)",
                (event.idempotency_key, event.kind, event.delivery_id, event.delivery_type, at, payload),
            )
        return Outcome(Applied.ACCEPTED, note)

    def quarantine(self, key: str | None, reason: str, body: str) -> None:
        """Keep a body that failed validation, with its reason (the webhook answers it 200)."""
        with _Tx(self._db):
            self._db.execute(
                "INSERT INTO ybm_quarantine (idempotency_key, received_at, reason, body) VALUES (?, ?, ?, ?)",
                (key, now_iso(), reason, body),
            )

    def _checked(self, event: Event) -> list[tuple[str, int]]:
        """(wallet product, amount) of each mapped item of a request; items of unmapped products are
        kept in the event's payload only."""
        if not isinstance(event, DeliveryEvent):
            return []
        moves = []
        for i, item in enumerate(event.items):
            mapped = self.products.get(item.product_id)
            if mapped is None:
                continue
            if mapped.measure != item.measure:
                raise MeasureMismatch(
                    f"data.request.items[{i}] ({item.product_id}) arrives in {item.measure}, but its wallet "
                    f"product {mapped.product!r} is counted in {mapped.measure}; fix [yourbarmate.products]",
                    event.idempotency_key,
                )
            moves.append((mapped.product, item.amount))
        return moves

    def _moves(self, event: Event, moves: list[tuple[str, int]], at: str) -> str:
        ref = event.delivery_id
        if isinstance(event, CancelEvent):
            if self._has(ref, "received"):
                return "cancelled after it was received: a count (taptill stock set) corrects the stock"
            ordered = self._ordered(ref)
            if self._has(ref, "cancelled"):
                return "cancelled before"
            self._insert([(p, a, "cancelled") for p, a in ordered], ref, at)
            return "" if ordered else "no request yet (or nothing mapped): the request will add nothing"
        if event.delivery_type == "RETURN":
            return "a return of empties: nothing on hand changes"
        cancelled = self._db.execute(
            "SELECT 1 FROM ybm_events WHERE delivery_id = ? AND kind = 'cancel-delivery'", (ref,)
        ).fetchone()
        if cancelled is not None:
            return "cancelled before its request came: adds nothing"
        if self._db.execute(
            "SELECT 1 FROM ybm_events WHERE delivery_id = ? AND kind = 'request-delivery'", (ref,)
        ).fetchone():
            return "this delivery was requested before under another key: adds nothing"
        self._insert([(p, a, "ordered") for p, a in moves], ref, at)
        return "" if moves else "no item of a mapped product"

    def _has(self, ref: str, kind: str) -> bool:
        sql = "SELECT 1 FROM stock_moves WHERE ref = ? AND kind = ?"
        return self._db.execute(sql, (ref, kind)).fetchone() is not None

    def _ordered(self, ref: str) -> list[tuple[str, int]]:
        rows = self._db.execute(
            "SELECT product, SUM(amount) FROM stock_moves WHERE ref = ? AND kind = 'ordered' GROUP BY product"
            " ORDER BY MIN(id)",
            (ref,),
        ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def _insert(self, moves: Sequence[tuple[str, int, str]], ref: str | None, at: str) -> None:
        self._db.executemany(
            "INSERT INTO stock_moves (product, kind, amount, ref, at) VALUES (?, ?, ?, ?, ?)",
            [(product, kind, amount, ref, at) for product, amount, kind in moves],
        )

    def receive(self, delivery_id: str) -> list[tuple[str, int]]:
        """Staff confirm delivery ``delivery_id`` arrived: its ordered amounts move to on hand, once.
        Returns (wallet product, amount) moved; StockError says why nothing can be received."""
        with _Tx(self._db):
            kinds = {
                str(r[0]): r[1]
                for r in self._db.execute(
                    "SELECT kind, delivery_type FROM ybm_events WHERE delivery_id = ?", (delivery_id,)
                )
            }
            if "request-delivery" not in kinds:
                raise StockError(f"no delivery {delivery_id} was requested; `taptill stock` lists them")
            if kinds["request-delivery"] == "RETURN":
                raise StockError(f"{delivery_id} is a return of empties; nothing arrives")
            if "cancel-delivery" in kinds:
                raise StockError(f"delivery {delivery_id} was cancelled in yourbarmate")
            if self._has(delivery_id, "received"):
                raise StockError(f"delivery {delivery_id} was received already")
            ordered = self._ordered(delivery_id)
            if not ordered:
                raise StockError(f"delivery {delivery_id} holds no mapped product ([yourbarmate.products])")
            self._insert([(p, a, "received") for p, a in ordered], delivery_id, now_iso())
        return ordered

    def set_count(self, product: str, amount: int) -> None:
        """Staff counted ``amount`` (ml, g or pieces) of wallet product ``product``: on hand from now."""
        if product not in {p.product for p in self.products.values()}:
            raise StockError(f"product {product!r} is in no [yourbarmate.products] entry")
        with _Tx(self._db):
            last = self._db.execute("SELECT idempotency_key FROM sales ORDER BY id DESC LIMIT 1").fetchone()
            self._insert([(product, amount, "count")], None if last is None else str(last[0]), now_iso())

    def store_status(self, key: str, value: object) -> None:
        """The receiver's counts in the journal's cache, where ``taptill status`` reads them."""
        with _Tx(self._db):
            self._db.execute(
                "INSERT INTO cache (key, value, stored_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
                " SET value = excluded.value, stored_at = excluded.stored_at",
                (key, json.dumps(value), time.time()),
            )

    def replay(self, quarantine_id: int) -> tuple[Event, Outcome]:
        """Validate quarantined body ``quarantine_id`` again under the current mapping and apply it under
        its own idempotency key (once: a replay of an applied body is a DUPLICATE). For a body that failed
        only by our config (an item in kg mapped to a product counted in ml): yourbarmate will not resend
        it, since it was answered 200. StockError when there is no such row; EventError (nothing written)
        when it still fails."""
        row = self._db.execute("SELECT body FROM ybm_quarantine WHERE id = ?", (quarantine_id,)).fetchone()
        if row is None:
            raise StockError(f"no quarantined body #{quarantine_id}; `taptill stock --quarantine` lists them")
        body = str(row[0])
        event = parse_body(body.encode("utf-8"))
        return event, self.apply(event, body)

    def figures(self, low_servings: int) -> list[Figures]:
        return stock_figures(_query(self._db), self.products, low_servings)


def stock_figures(query: Query, products: Mapping[str, StockProduct], low_servings: int) -> list[Figures]:
    """The figures of every mapped wallet product (in config order), read through ``query``."""
    out = []
    for product in {p.product: p for p in products.values()}.values():
        totals = {
            str(r[0]): int(r[1])
            for r in query(
                "SELECT kind, SUM(amount) FROM stock_moves WHERE product = ? AND kind != 'count'"
                " GROUP BY kind",
                (product.product,),
            )
        }
        ordered = totals.get("ordered", 0) - totals.get("cancelled", 0) - totals.get("received", 0)
        count = query(
            "SELECT id, amount, ref, at FROM stock_moves WHERE product = ? AND kind = 'count'"
            " ORDER BY id DESC LIMIT 1",
            (product.product,),
        )
        move_id, counted, since_sale = 0, None, 0
        if count:
            move_id, counted = int(count[0][0]), int(count[0][1])
        # A count with no sale before it counts every sale. One that names its last sale by key finds it
        # by that; only a key no sale has any more (lost to a damaged journal) falls back to the time.
        if count and count[0][2] is not None:
            since_sale = int(
                query(
                    "SELECT COALESCE((SELECT id FROM sales WHERE idempotency_key = ?),"
                    " (SELECT MAX(id) FROM sales WHERE created_at <= ?), 0)",
                    (count[0][2], count[0][3]),
                )[0][0]
            )
        since = {
            str(r[0]): int(r[1])
            for r in query(
                "SELECT kind, SUM(amount) FROM stock_moves WHERE product = ? AND id > ?"
                " AND kind IN ('received', 'returned') GROUP BY kind",
                (product.product, move_id),
            )
        }
        servings = int(
            query(
                "SELECT COUNT(*) FROM sales s, json_each(COALESCE(s.goods, s.products)) j"
                " WHERE s.state IN ('pending', 'done')"
                " AND s.id > ? AND CAST(j.value AS TEXT) = ?",
                (since_sale, product.product),
            )[0][0]
        )
        sold = servings * product.serving
        on_hand = (counted or 0) + since.get("received", 0) - since.get("returned", 0) - sold
        out.append(
            Figures(
                product.product,
                product.measure,
                product.serving,
                ordered,
                on_hand,
                sold,
                counted,
                low_servings,
            )
        )
    return out


def deliveries(query: Query) -> list[dict[str, object]]:
    """Every requested delivery and return once, with its state (requested, received, cancelled), newest
    first by its first request (a request sent again under a new key is the same delivery)."""
    rows = query(
        "SELECT e.delivery_id, e.delivery_type, MIN(e.received_at) AS first,"
        " EXISTS (SELECT 1 FROM ybm_events c"
        " WHERE c.delivery_id = e.delivery_id AND c.kind = 'cancel-delivery'),"
        " EXISTS (SELECT 1 FROM stock_moves m WHERE m.ref = e.delivery_id AND m.kind = 'received')"
        " FROM ybm_events e WHERE e.kind = 'request-delivery' GROUP BY e.delivery_id"
        " ORDER BY first DESC, e.delivery_id DESC",
        (),
    )
    out: list[dict[str, object]] = []
    for r in rows:
        state = "cancelled" if r[3] else "received" if r[4] else "requested"
        out.append({"delivery_id": str(r[0]), "type": str(r[1]), "requested_at": str(r[2]), "state": state})
    return out


def quarantined(query: Query, *, everything: bool = False) -> list[dict[str, object]]:
    """The quarantined bodies, newest first: id, received_at, idempotency_key, reason, and ``applied``
    (an event with its key was accepted since: replayed, or sent valid). Only those not applied unless
    ``everything``. Texts as stored (came from outside: print them through ``printable``)."""
    rows = query(
        "SELECT q.id, q.received_at, q.idempotency_key, q.reason, EXISTS (SELECT 1 FROM ybm_events e"
        " WHERE e.idempotency_key = q.idempotency_key) FROM ybm_quarantine q ORDER BY q.id DESC",
        (),
    )
    out: list[dict[str, object]] = []
    for r in rows:
        if everything or not r[4]:
            out.append(
                {
                    "id": int(r[0]),
                    "received_at": str(r[1]),
                    "idempotency_key": r[2],
                    "reason": str(r[3]),
                    "applied": bool(r[4]),
                }
            )
    return out


def _query(conn: sqlite3.Connection) -> Query:
    return lambda sql, params: conn.execute(sql, params).fetchall()


class _Tx:
    """BEGIN IMMEDIATE … COMMIT (rolled back on error): one durable commit per write."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
