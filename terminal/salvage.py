"""Salvages the sales of a damaged journal with SQLite's own tools into a good one; keeps the damaged file.

SQLite reads the damaged file, not a parser of ours: the ``sqlite3`` command-line tool's ``.recover``
where the tool has it working, else its ``.clone``, which copies every table and, on a damaged b-tree,
reads it forwards up to the damage and backwards from the end down to it. (Debian's and Raspberry Pi
OS's ``sqlite3`` is built without the ``sqlite_dbpage`` table ``.recover`` needs, so ``.clone`` is what
runs on a Pi.) The rows SQLite gives back are checked one by one and written into the journal in one
transaction; every salvaged sale keeps its idempotency key, state and delivery bookkeeping, so a pending
sale is delivered as if the terminal had merely restarted, and a confirmed one is never sent again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from terminal.journal import Journal, JournalDamaged, JournalError, SaleRecord, Statements
from terminal.model import SaleState

log = logging.getLogger(__name__)

SQLITE_TOOL = "sqlite3"
SQLITE_DEB = "sqlite3"  # the Debian package with the tool; provisioning and the Makefile install it
TOOL_TIMEOUT_S = 600.0  # a journal of years on a slow SD card; the tool never waits on anything else
KEY_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
MIN_KEY_LENGTH = 20

_SALE_COLUMNS = (
    "idempotency_key", "token_id", "products", "amount_cents", "description", "tag", "state", "reason",
    "offline", "operator", "balance_before", "balance_after", "maybe_sent", "hold", "attempts",
    "next_attempt_at", "created_at", "updated_at", "attempted_at",
)  # fmt: skip
_OPTIONAL_SALE_COLUMNS = {"attempted_at"}  # added by migration 3: NULL when salvaged from an older journal
_REPORT_COLUMNS = ("drink_key", "quantity", "state", "reason", "next_attempt_at", "created_at", "updated_at")
_REPORT_STATES = {"pending", "sent", "ambiguous", "dropped"}


class SalvageError(JournalError):
    """Sales could not be salvaged (the tool is missing or failed); the damaged file is untouched."""


@dataclass(frozen=True)
class Salvage:
    """What came back from a damaged journal."""

    source: Path  # the damaged file SQLite read
    kept_at: Path | None  # where the damaged journal was moved (None: it was already elsewhere)
    method: str  # the sqlite3 command that read it: ".recover" or ".clone"
    sales: tuple[SaleRecord, ...]  # written into the journal, oldest first
    already_there: int = 0  # sales the journal had already (merging a file moved aside earlier)
    unusable: int = 0  # rows SQLite gave back that are no sale (values damaged beyond use)
    reports: int = 0  # Partybroker reports salvaged with their sales
    cards: int = 0  # cards' last balances and deny-list entries
    unreadable: str | None = None  # what SQLite said when it could read nothing at all

    def counts(self) -> str:
        """``3 done, 1 pending (1 held), 0 rejected, 2 declined``."""
        by = {s: sum(1 for sale in self.sales if sale.state is s) for s in SaleState}
        held = sum(1 for sale in self.sales if sale.state is SaleState.PENDING and sale.hold)
        return (
            f"{by[SaleState.DONE]} done, {by[SaleState.PENDING]} pending"
            + (f" ({held} held)" if held else "")
            + f", {by[SaleState.REJECTED]} rejected, {by[SaleState.DECLINED]} declined"
        )

    def summary(self) -> str:
        """One line: how many sales of which state, and what else came back or was left."""
        if not self.sales and not self.already_there:
            why = self.unreadable or f"sqlite3 {self.method} found no sale in it"
            return f"nothing could be salvaged ({why})"
        text = f"salvaged {len(self.sales)} sale(s) with sqlite3 {self.method}: {self.counts()}"
        extras = []
        if self.already_there:
            extras.append(f"{self.already_there} already in the journal")
        if self.unusable:
            extras.append(f"{self.unusable} damaged row(s) left out")
        if self.reports:
            extras.append(f"{self.reports} Partybroker report(s)")
        if self.cards:
            extras.append(f"{self.cards} card(s)")
        return text + (f"; {', '.join(extras)}" if extras else "")


def open_journal_salvaging(path: Path) -> Journal:
    """``Journal.open`` for ``taptill run``: a damaged journal is moved aside and its sales salvaged into a
    new one (logged in one line), so pending sales are still delivered. Without the tool, or when SQLite
    gives nothing back, the terminal starts on a new journal and the log line says how to salvage later."""
    try:
        return Journal.open(path)
    except JournalDamaged as damage:
        problem = damage.problem
    try:
        result = salvage_in_place(path)
    except SalvageError as exc:
        kept = move_aside(path)
        log.error(
            "journal %s is damaged (%s); moved it to %s and started a new one, but could not salvage its "
            "sales: %s; then run: taptill recover --from %s",
            path,
            problem,
            kept,
            exc,
            kept,
        )
    else:
        log.error(
            "journal %s was damaged (%s); moved it to %s and %s",
            path,
            problem,
            result.kept_at,
            result.summary(),
        )
    return Journal.open(path)


def salvage_in_place(path: Path) -> Salvage:
    """Salvage the damaged journal at ``path`` into a new journal that takes its place; the damaged files
    are moved aside (``journal.sqlite3.corrupt-<time>``), never deleted. The caller holds the state lock.

    The new journal is built beside it and swapped in only when complete: a crash before the swap leaves
    the damaged journal where it was, to be salvaged again. Raises SalvageError (nothing changed) or
    JournalError (the damaged journal cannot be moved aside)."""
    tool = sqlite_tool()
    with _workspace(path.parent) as work:
        damaged = _copy_damaged(path, work)
        method, extracted, unreadable = _extract(tool, damaged, work)
        fresh_path = work / path.name
        try:
            fresh = Journal.open(fresh_path)
        except JournalError as exc:
            raise SalvageError(f"cannot create a new journal ({exc})") from None
        try:
            found = _import(fresh, extracted)
        except JournalError as exc:
            raise SalvageError(f"cannot write the salvaged sales ({exc})") from None
        finally:
            fresh.close()
        # Closing checkpoints the -wal into the file; a journal moved without its -wal would lose sales.
        if Path(f"{fresh_path}-wal").exists():
            raise SalvageError(f"the new journal {fresh_path} was not checkpointed")
        _same_owner_as_directory(fresh_path, path.parent)
        kept = move_aside(path, keep_linked=True)
        try:
            os.replace(fresh_path, path)
        except OSError as exc:
            raise JournalError(
                f"cannot put the salvaged journal in place of {path} ({exc.strerror}); the damaged one is "
                f"also at {kept}"
            ) from None
        _sync_directory(path.parent)
    return Salvage(kept, kept, method, *found, unreadable=unreadable)


def salvage_into(source: Path, path: Path) -> Salvage:
    """Salvage ``source`` (e.g. a journal moved aside earlier) into the journal at ``path``, created if
    missing; sales it has already (same key) are left as they are. ``source`` is only read.
    Raises SalvageError, JournalDamaged (the journal at ``path`` is damaged too) or JournalError."""
    tool = sqlite_tool()
    try:
        source.stat()
    except OSError as exc:
        raise SalvageError(f"cannot read {source}: {exc.strerror}") from None
    with _workspace(path.parent) as work:
        damaged = _copy_damaged(source, work)
        method, extracted, unreadable = _extract(tool, damaged, work)
        journal = Journal.open(path)  # a damaged one raises JournalDamaged: `taptill recover` it first
        try:
            found = _import(journal, extracted)
        finally:
            journal.close()
    return Salvage(source, None, method, *found, unreadable=unreadable)


def sqlite_tool() -> str:
    """The path of the ``sqlite3`` command-line tool; SalvageError naming the package when it is missing."""
    tool = shutil.which(SQLITE_TOOL)
    if tool is None:
        raise SalvageError(
            f"the {SQLITE_TOOL} command-line tool is missing; install it: apt-get install {SQLITE_DEB}"
        )
    return tool


def move_aside(path: Path, *, keep_linked: bool = False) -> Path:
    """Rename the journal and its -wal/-shm to ``<name>.corrupt-<UTC time>``; returns the new main path.

    ``keep_linked``: the main file stays at ``path`` too (a hard link) until the caller replaces it, so
    there is never a moment without a journal there. Raises JournalError when they cannot be moved."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(Path(f"{aside}{s}").exists() for s in ("", "-wal", "-shm")):
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src, dst = Path(f"{path}{suffix}"), Path(f"{aside}{suffix}")
        if not src.exists():
            continue
        try:
            if suffix == "" and keep_linked:
                try:
                    os.link(src, dst)
                    continue
                except OSError:
                    pass  # a file system without hard links: a plain rename, a moment without a journal
            src.rename(dst)
        except OSError as exc:
            raise JournalError(
                f"journal {path} is damaged and cannot be moved aside ({exc.strerror}); move it away by hand"
            ) from None
    return aside


# --- reading the damaged file with SQLite ------------------------------------------------------------


@contextlib.contextmanager
def _workspace(state_dir: Path) -> Iterator[Path]:
    """A private scratch directory in the state directory (same disk, same privacy), removed afterwards."""
    try:
        work = Path(tempfile.mkdtemp(prefix=".salvage-", dir=state_dir))
    except OSError as exc:
        raise SalvageError(f"cannot make a scratch directory in {state_dir} ({exc.strerror})") from None
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _copy_damaged(source: Path, work: Path) -> Path:
    """SQLite works on a copy (with the -wal, which may hold the newest sales): the damaged file is
    evidence and stays byte for byte as it was; the tool's checkpoint or -shm never touch it."""
    damaged = work / "damaged.sqlite3"
    try:
        shutil.copyfile(source, damaged)
        wal = Path(f"{source}-wal")
        if wal.exists():
            shutil.copyfile(wal, Path(f"{damaged}-wal"))
    except OSError as exc:
        raise SalvageError(f"cannot copy {source} to salvage it ({exc.strerror})") from None
    return damaged


def _extract(tool: str, damaged: Path, work: Path) -> tuple[str, Path | None, str | None]:
    """SQLite's own recovery of ``damaged`` into a clean database file.
    Returns (method, that file or None when SQLite could read nothing, what SQLite said then)."""
    extracted = work / "extracted.sqlite3"
    recovered = _run_tool(tool, [damaged.name, ".recover"], work)
    if recovered.returncode == 0:
        loaded = _run_tool(tool, [extracted.name], work, stdin=recovered.stdout)
        if loaded.returncode == 0 and extracted.exists():
            return ".recover", extracted, None
    # .recover failed (no sqlite_dbpage in this build, or it gave up): its partial output is never used.
    for leftover in work.glob(f"{extracted.name}*"):
        leftover.unlink()
    cloned = _run_tool(tool, [damaged.name, f".clone {extracted.name}"], work)
    if not extracted.exists():
        said = cloned.stderr.decode(errors="replace").strip().splitlines()
        return ".clone", None, f"SQLite: {said[-1] if said else 'no answer'}"
    return ".clone", extracted, None


def _run_tool(
    tool: str, args: list[str], cwd: Path, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    # -init /dev/null: a ~/.sqliterc must not change what the tool writes; -batch: no prompts.
    try:
        return subprocess.run(
            [tool, "-batch", "-init", os.devnull, *args],
            input=stdin,
            capture_output=True,
            cwd=cwd,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SalvageError(f"{SQLITE_TOOL} failed: {exc}") from None


# --- writing what came back into a journal ---------------------------------------------------------


def _import(journal: Journal, extracted: Path | None) -> tuple[tuple[SaleRecord, ...], int, int, int, int]:
    """Write the extracted rows into ``journal`` in one transaction.
    Returns (salvaged sales, already there, unusable rows, reports, cards)."""
    if extracted is None:
        return (), 0, 0, 0, 0
    try:
        src = sqlite3.connect(extracted)  # our own scratch copy
    except sqlite3.Error as exc:
        raise SalvageError(f"cannot read what SQLite salvaged: {exc}") from None
    try:
        tables = {str(r[0]) for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        sales, unusable = _sales(src) if "sales" in tables else ([], 0)
        known = {str(r[0]) for r in journal.query("SELECT idempotency_key FROM sales")}
        new_sales: dict[str, dict[str, Any]] = {}
        for sale in sales:
            if sale["idempotency_key"] not in known:
                new_sales.setdefault(sale["idempotency_key"], sale)  # a key twice: the first copy
        already = len({s["idempotency_key"] for s in sales} & known)
        statements: list[tuple[str, list[object]]] = [_insert_sale(s) for s in new_sales.values()]
        keys_by_id = {s["id"]: s["idempotency_key"] for s in sales if s["idempotency_key"] in new_sales}
        reports = list(_reports(src, keys_by_id)) if "reports" in tables else []
        statements += reports
        cards = list(_cards(src, journal)) if "cards" in tables else []
        statements += cards
        if "cache" in tables:
            statements += _cache(src)
    except sqlite3.Error as exc:
        raise SalvageError(f"cannot read what SQLite salvaged: {exc}") from None
    finally:
        src.close()
    journal.execute_all(_as_statements(statements))
    records = tuple(r for r in (journal.sale_by_key(k) for k in new_sales) if r is not None)
    return records, already, unusable, len(reports), len(cards)


def _as_statements(statements: list[tuple[str, list[object]]]) -> Statements:
    return [(sql, tuple(params)) for sql, params in statements]


def _sales(src: sqlite3.Connection) -> tuple[list[dict[str, Any]], int]:
    present = {str(r[1]) for r in src.execute("PRAGMA table_info(sales)")}
    missing = [c for c in _SALE_COLUMNS if c not in present]
    if "id" not in present or set(missing) - _OPTIONAL_SALE_COLUMNS:
        return [], 0  # not the journal's sales table: nothing to trust in it
    columns = ["id", *(c for c in _SALE_COLUMNS if c in present)]
    good, unusable = [], 0
    for row in src.execute(f"SELECT {', '.join(columns)} FROM sales ORDER BY id"):
        sale = dict(zip(columns, row, strict=True))
        for c in missing:
            sale[c] = None
        if _usable_sale(sale):
            good.append(sale)
        else:
            unusable += 1
    return good, unusable


def _usable_sale(s: dict[str, Any]) -> bool:
    """A row is a sale only if every value has the type the journal gave it (SQLite may hand back a
    record whose bytes were damaged but still parse); a sale without a sound key is never re-sent."""
    key = s["idempotency_key"]
    if not (isinstance(key, str) and len(key) >= MIN_KEY_LENGTH and set(key) <= KEY_ALPHABET):
        return False
    if s["state"] not in {str(state) for state in SaleState}:
        return False
    texts = ("token_id", "products", "description", "reason", "created_at", "updated_at")
    ints = ("amount_cents", "offline", "maybe_sent", "hold", "attempts")
    if not all(isinstance(s[c], str) for c in texts) or not s["token_id"]:
        return False
    if not all(_is_int(s[c]) for c in ints):
        return False
    if not all(s[c] is None or _is_int(s[c]) for c in ("balance_before", "balance_after")):
        return False
    if not all(s[c] is None or isinstance(s[c], str) for c in ("tag", "operator")):
        return False
    if not _is_number(s["next_attempt_at"]):
        return False
    if not (s["attempted_at"] is None or _is_number(s["attempted_at"])):
        return False
    try:
        products = json.loads(s["products"])
    except ValueError:
        return False
    return isinstance(products, list) and all(isinstance(p, str | int) for p in products)


def _insert_sale(sale: dict[str, Any]) -> tuple[str, list[object]]:
    marks = ", ".join("?" for _ in _SALE_COLUMNS)
    return (
        f"INSERT INTO sales ({', '.join(_SALE_COLUMNS)}) VALUES ({marks}) ON CONFLICT DO NOTHING",
        [sale[c] for c in _SALE_COLUMNS],
    )


def _reports(src: sqlite3.Connection, keys_by_id: dict[int, str]) -> Iterable[tuple[str, list[object]]]:
    """Reports of the salvaged sales, tied to them by the sale's key (its id may change)."""
    present = {str(r[1]) for r in src.execute("PRAGMA table_info(reports)")}
    if not {"sale_id", *_REPORT_COLUMNS} <= present:
        return
    for row in src.execute(f"SELECT sale_id, {', '.join(_REPORT_COLUMNS)} FROM reports ORDER BY id"):
        r = dict(zip(("sale_id", *_REPORT_COLUMNS), row, strict=True))
        key = keys_by_id.get(r["sale_id"]) if _is_int(r["sale_id"]) else None
        sound = (
            key is not None
            and isinstance(r["drink_key"], str)
            and _is_int(r["quantity"])
            and r["quantity"] > 0
            and r["state"] in _REPORT_STATES
            and isinstance(r["reason"], str)
            and _is_number(r["next_attempt_at"])
            and isinstance(r["created_at"], str)
            and isinstance(r["updated_at"], str)
        )
        if sound:
            yield (
                f"INSERT INTO reports (sale_id, {', '.join(_REPORT_COLUMNS)})"
                f" SELECT id, {', '.join('?' for _ in _REPORT_COLUMNS)} FROM sales WHERE idempotency_key = ?",
                [r[c] for c in _REPORT_COLUMNS] + [key],
            )


def _cards(src: sqlite3.Connection, journal: Journal) -> Iterable[tuple[str, list[object]]]:
    """Last balances and the deny list; a card the journal knows already keeps what it has (newer)."""
    known = {str(r[0]) for r in journal.query("SELECT token_id FROM cards")}
    for token, balance, seen_at, denied in src.execute(
        "SELECT token_id, balance_cents, seen_at, denied_reason FROM cards"
    ):
        sound = (
            isinstance(token, str)
            and token
            and (balance is None or _is_int(balance))
            and (seen_at is None or _is_number(seen_at))
            and (denied is None or isinstance(denied, str))
        )
        if sound and token not in known:
            yield (
                "INSERT INTO cards (token_id, balance_cents, seen_at, denied_reason) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                [token, balance, seen_at, denied],
            )


def _cache(src: sqlite3.Connection) -> list[tuple[str, list[object]]]:
    out: list[tuple[str, list[object]]] = []
    for key, value, stored_at in src.execute("SELECT key, value, stored_at FROM cache"):
        if isinstance(key, str) and isinstance(value, str) and _is_number(stored_at):
            try:
                json.loads(value)
            except ValueError:
                continue
            out.append(
                (
                    "INSERT INTO cache (key, value, stored_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    [key, value, stored_at],
                )
            )
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_owner_as_directory(path: Path, directory: Path) -> None:
    """Root running ``taptill recover`` must leave a journal the service's own user can write."""
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        st = directory.stat()
        os.chown(path, st.st_uid, st.st_gid)


def _sync_directory(directory: Path) -> None:
    """The swap survives a power cut only once the directory entry is on disk."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
