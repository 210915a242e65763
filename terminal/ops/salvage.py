"""Salvages the sales of a damaged journal with SQLite's own tools into a good one; keeps the damaged file.

SQLite reads the damaged file, not a parser of ours: the ``sqlite3`` command-line tool's ``.recover``
where the tool has it working, else its ``.clone``, which copies every table and, on a damaged b-tree,
reads it forwards up to the damage and backwards from the end down to it. (Debian's and Raspberry Pi
OS's ``sqlite3`` is built without the ``sqlite_dbpage`` table ``.recover`` needs, so ``.clone`` is what
runs on a Pi.) The rows SQLite gives back are checked one by one and written into the journal in one
transaction, every column the damaged and the new journal have in common (whatever migrations added),
so a pending sale is delivered as if the terminal had merely restarted, a confirmed one is never sent
again, and one charged but not dispensed stays on the refund list. Sales that did not come back are
named by id in the summary.
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

from terminal.journal import Journal, JournalDamaged, JournalError, SaleRecord
from terminal.model import SaleState
from terminal.money import format_cents

log = logging.getLogger(__name__)

SQLITE_TOOL = "sqlite3"
SQLITE_DEB = "sqlite3"  # the Debian package with the tool; provisioning and the Makefile install it
TOOL_TIMEOUT_S = 600.0  # a journal of years on a slow SD card; the tool never waits on anything else
KEY_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
MIN_KEY_LENGTH = 20

LISTED_RUNS = 20  # runs of lost ids the summary names; a scattered loss says "and N more"
_ROW_NAMES = {
    "outbox": "outbox record(s)",
    "cards": "card(s)",
    "unsellable": "product(s) not sold offline",
    "cache": "cached server answer(s)",
}


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
    brought_forward: int = 0  # of those, sales the file had further along (settled, or maybe sent)
    unusable: int = 0  # sale rows SQLite gave back damaged beyond use (their ids are in lost_ids)
    lost_ids: tuple[tuple[int, int], ...] = ()  # runs (first, last) of the damaged journal's sale ids lost
    rows: tuple[tuple[str, int], ...] = ()  # (table, rows salvaged) of the journal's other tables
    damaged_rows: int = 0  # rows of the other tables left out, damaged
    unreadable: str | None = None  # what SQLite said when it could read nothing at all

    @property
    def lost(self) -> int:
        """How many sales (any state, declined taps too) the damaged journal had that did not come back."""
        return sum(last - first + 1 for first, last in self.lost_ids)

    def counts(self, locale: str = "de", currency: str = "EUR") -> str:
        """``3 done 7,50 € (1 not dispensed 2,50 €), 1 pending 2,50 € (1 held 2,50 €), 0 rejected,
        2 declined (1 more refused at the tap: nothing owed)``: amounts as the guest pays them (a debit
        is positive); a sale the server refused while its guest waited is no money rejected. Done sales
        on the refund list (``taptill queue``) are named: not dispensed, or booked though the guest was
        never told."""

        def total(sales: Iterable[SaleRecord]) -> str:
            return format_cents(-sum(s.amount_cents for s in sales), locale, currency)

        def part(label: str, sales: list[SaleRecord]) -> str:
            return f"{len(sales)} {label}" + (f" {total(sales)}" if sales else "")

        by = {state: [s for s in self.sales if s.state is state] for state in SaleState}
        held = [s for s in by[SaleState.PENDING] if s.hold]
        unapproved = [s for s in by[SaleState.DONE] if s.to_refund and not s.approved]
        undispensed = [s for s in by[SaleState.DONE] if s.to_refund and s.approved]
        # refused while the guest waited: a declined tap, no money rejected
        at_tap = [s for s in by[SaleState.REJECTED] if s.refused_at_tap]
        rejected = [s for s in by[SaleState.REJECTED] if not s.refused_at_tap]
        to_check = [
            part(label, sales)
            for label, sales in (("not dispensed", undispensed), ("never approved", unapproved))
            if sales
        ]
        return (
            part("done", by[SaleState.DONE])
            + (f" ({', '.join(to_check)})" if to_check else "")
            + f", {part('pending', by[SaleState.PENDING])}"
            + (f" ({part('held', held)})" if held else "")
            + f", {part('rejected', rejected)}, {len(by[SaleState.DECLINED])} declined"
            + (f" ({len(at_tap)} more refused at the tap: nothing owed)" if at_tap else "")
        )

    def lost_line(self) -> str:
        """``2 sales could not be salvaged: ids 7, 9`` (empty when none was lost)."""
        if not self.lost:
            return ""
        runs = [f"{a}" if a == b else f"{a}-{b}" for a, b in self.lost_ids[:LISTED_RUNS]]
        more = self.lost_ids[LISTED_RUNS:]
        if more:
            runs.append(f"and {sum(b - a + 1 for a, b in more)} more")
        damaged = f" ({self.unusable} came back damaged)" if self.unusable else ""
        sales, ids = ("sale", "id") if self.lost == 1 else ("sales", "ids")
        return f"{self.lost} {sales} could not be salvaged{damaged}: {ids} {', '.join(runs)}"

    def summary(self, locale: str = "de", currency: str = "EUR") -> str:
        """One line: how many sales of which state and their money, which were lost, what else came back."""
        if not self.sales and not self.already_there:
            why = self.unreadable or f"sqlite3 {self.method} found no sale in it"
            lost = f"; {self.lost_line()}" if self.lost else ""
            return f"nothing could be salvaged ({why}){lost}"
        text = (
            f"salvaged {len(self.sales)} sale(s) with sqlite3 {self.method}: {self.counts(locale, currency)}"
        )
        if self.lost:  # its own part: the ids are a list with commas too
            text += f"; {self.lost_line()}"
        extras = []
        if self.already_there:
            forward = f" ({self.brought_forward} brought up to date from it)" if self.brought_forward else ""
            extras.append(f"{self.already_there} already in the journal{forward}")
        extras += [f"{n} {_ROW_NAMES.get(table, f'row(s) of {table}')}" for table, n in self.rows]
        if self.damaged_rows:
            extras.append(f"{self.damaged_rows} damaged row(s) of other tables left out")
        return text + (f"; {', '.join(extras)}" if extras else "")


def open_journal_salvaging(path: Path, *, locale: str = "de", currency: str = "EUR") -> Journal:
    """``Journal.open`` for ``taptill run``: a damaged journal is moved aside and its sales salvaged into a
    new one (logged in one line, money in ``locale``/``currency``), so pending sales are still delivered.
    Without the tool, or when SQLite gives nothing back, the terminal starts on a new journal and the log
    line says how to salvage later. Copies a terminal kept of a journal removed or replaced under it are
    merged into the journal (``merge_orphans``)."""
    _keep_a_left_wal(path)
    try:
        journal = Journal.open(path)
    except JournalDamaged as damage:
        problem = damage.problem
    else:
        if not waiting_orphans(path):
            return journal
        journal.close()
        return _open_and_merge(path, locale, currency)
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
            result.summary(locale, currency),
        )
    return _open_and_merge(path, locale, currency)


def _open_and_merge(path: Path, locale: str, currency: str) -> Journal:
    merge_orphans(path, locale=locale, currency=currency)
    return Journal.open(path)


ORPHAN = "orphan"  # <journal>.orphan-<UTC time>: a running terminal's copy of a journal removed under it
MERGED = ".merged"  # appended once an orphan's sales are in the journal: it is kept, never merged again


def _keep_a_left_wal(path: Path) -> None:
    """A -wal with no journal beside it: the journal was removed under a terminal killed before it could
    keep a copy. Creating the new journal, SQLite would delete the -wal, which may hold the last sales:
    it becomes an orphan instead, beside a fresh journal of the same schema as its main file (SQLite reads
    every page the -wal holds from the -wal), for ``merge_orphans`` to salvage what it can."""
    wal = Path(f"{path}-wal")
    try:
        if path.exists() or wal.stat().st_size == 0:
            return
    except FileNotFoundError:
        return
    orphan = _stamped(path, ORPHAN)
    try:
        Journal.open(orphan).close()  # closed: checkpointed, its own -wal gone
        wal.rename(Path(f"{orphan}-wal"))
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}-shm").rename(Path(f"{orphan}.left-shm"))  # another file's index: never read
    except (OSError, JournalError) as exc:
        raise JournalError(
            f"cannot keep the -wal of the removed journal {path} ({exc}); move it away"
        ) from None
    log.error(
        "journal %s is missing, but the -wal of a journal removed under a terminal is there (%d bytes): "
        "kept as %s-wal, to salvage what it holds",
        path,
        Path(f"{orphan}-wal").stat().st_size,
        orphan,
    )


def waiting_orphans(path: Path) -> list[Path]:
    """Copies kept of a journal removed or replaced under a running terminal, not merged yet, oldest
    first: the next ``taptill run`` merges them (and ``taptill doctor`` says so)."""
    found = sorted(path.parent.glob(f"{path.name}.{ORPHAN}-*"))
    return [p for p in found if not p.name.endswith((MERGED, "-wal", "-shm", "-journal", ".part"))]


def keep_orphan(journal: Journal) -> Path:
    """Copy the running terminal's journal, whose file was removed or replaced under it, to
    ``<name>.orphan-<UTC time>`` beside its path: the next ``taptill run`` merges it (``merge_orphans``).
    Returns the copy's path; raises JournalError when it cannot be written."""
    target = _stamped(journal.path, ORPHAN)
    part = target.with_name(f"{target.name}.part")  # never merged half written: renamed once whole
    try:
        journal.copy_to(part)
        os.replace(part, target)
    except (JournalError, OSError) as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        raise exc if isinstance(exc, JournalError) else JournalError(f"cannot keep {target}: {exc}") from None
    _sync_directory(target.parent)
    return target


def set_aside_leftovers(path: Path, kept: Path) -> None:
    """Rename the -wal and -shm left at ``path``'s names by a closed journal that was removed or replaced
    under the terminal to ``<kept>.left-wal``/``.left-shm``: SQLite would read them with whatever file is
    at ``path`` now. Its copy ``kept`` holds all they held; they are kept, never read again."""
    for suffix in ("-wal", "-shm"):
        left = Path(f"{path}{suffix}")
        try:
            left.rename(Path(f"{kept}.left{suffix}"))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.error("cannot move %s aside (%s): move it away before taptill starts again", left, exc)


def merge_orphans(path: Path, *, locale: str = "de", currency: str = "EUR") -> None:
    """Merge every orphan copy beside the journal at ``path`` into it (a sale it has already, by key,
    stays as it is), each logged in one line, then rename the copy ``….merged``. A copy that cannot be
    merged stays as it is, and the line says how to merge it by hand."""
    for orphan in waiting_orphans(path):
        try:
            result = salvage_into(orphan, path)
        except JournalError as exc:  # SalvageError too
            log.error(
                "journal %s: cannot merge %s, the copy a terminal kept when the journal was removed or "
                "replaced under it (%s); then run: taptill recover --from %s",
                path,
                orphan,
                exc,
                orphan,
            )
            continue
        merged = orphan.with_name(orphan.name + MERGED)
        orphan.rename(merged)
        log.warning(
            "journal %s: merged %s, the copy a terminal kept when the journal was removed or replaced "
            "under it: %s; the copy is now %s",
            path,
            orphan,
            result.summary(locale, currency),
            merged,
        )


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
            found = _import(fresh, extracted, damaged)
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
    return _result(kept, kept, method, found, unreadable)


def salvage_into(source: Path, path: Path) -> Salvage:
    """Salvage ``source`` (e.g. a journal moved aside earlier) into the journal at ``path``, created if
    missing; sales it has already (same key) are left as they are. ``source`` is only read.
    Raises SalvageError, JournalDamaged (the journal at ``path`` is damaged too) or JournalError."""
    tool = sqlite_tool()
    try:
        source.stat()
    except OSError as exc:
        raise SalvageError(f"cannot read {source}: {exc.strerror}") from None
    # First: it makes the state directory the scratch space goes in; a damaged one raises JournalDamaged
    # (`taptill recover` it first) before the long read of ``source``.
    journal = Journal.open(path)
    try:
        with _workspace(path.parent) as work:
            damaged = _copy_damaged(source, work)
            method, extracted, unreadable = _extract(tool, damaged, work)
            found = _import(journal, extracted, damaged)
    finally:
        journal.close()
    return _result(source, None, method, found, unreadable)


def _result(
    source: Path, kept_at: Path | None, method: str, found: _Found, unreadable: str | None
) -> Salvage:
    return Salvage(
        source,
        kept_at,
        method,
        found.sales,
        already_there=found.already_there,
        brought_forward=found.brought_forward,
        unusable=found.unusable,
        lost_ids=found.lost_ids,
        rows=found.rows,
        damaged_rows=found.damaged_rows,
        unreadable=unreadable,
    )


def sqlite_tool() -> str:
    """The path of the ``sqlite3`` command-line tool; SalvageError naming the package when it is missing."""
    tool = shutil.which(SQLITE_TOOL)
    if tool is None:
        raise SalvageError(
            f"the {SQLITE_TOOL} command-line tool is missing; install it: apt-get install {SQLITE_DEB}"
        )
    return tool


def _stamped(path: Path, kind: str) -> Path:
    """``<name>.<kind>-<UTC time>`` beside ``path``, with ``-2``, ``-3`` … when that is taken."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = path.with_name(f"{path.name}.{kind}-{stamp}")
    n = 1
    while any(Path(f"{name}{s}").exists() for s in ("", "-wal", "-shm", MERGED)):
        n += 1
        name = path.with_name(f"{path.name}.{kind}-{stamp}-{n}")
    return name


def move_aside(path: Path, *, keep_linked: bool = False) -> Path:
    """Rename the journal and its -wal/-shm to ``<name>.corrupt-<UTC time>``; returns the new main path.

    ``keep_linked``: the main file stays at ``path`` too (a hard link) until the caller replaces it, so
    there is never a moment without a journal there. Raises JournalError when they cannot be moved."""
    aside = _stamped(path, "corrupt")
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
#
# The columns come from the two schemas themselves (PRAGMA table_info), never from a list kept here: a
# column a migration adds is carried over the day it exists, and one the damaged (older) journal lacks
# takes the new schema's default. Every value must have the type its column declares (a record whose
# bytes were damaged may still parse); the money path is checked beyond that (_sound_sale).


@dataclass(frozen=True)
class _Column:
    name: str
    affinity: str  # SQLite's type affinity of the declared type: INTEGER, REAL, NUMERIC, TEXT or BLOB
    not_null: bool
    required: bool  # NOT NULL without a default: a source table without it is not the journal's


@dataclass(frozen=True)
class _Table:
    name: str
    # the fresh journal's columns, less the rowid (a salvaged row gets a new one)
    columns: tuple[_Column, ...]
    sale_refs: frozenset[str]  # columns referencing sales (id): tied to the sale by its key instead
    key_refs: frozenset[str]  # columns holding a sale's idempotency key: they need no translation
    foreign: bool  # references a table other than sales, whose rows get new ids: cannot be tied back


def _import(journal: Journal, extracted: Path | None, damaged: Path) -> _Found:
    """Write the extracted rows into ``journal`` in one transaction: sales first, then every other table
    the journal and the extracted file have in common. ``damaged`` (our copy of the damaged journal) is
    asked for the highest sale id its indexes still know, so sales lost at the end are named too."""
    if extracted is None:
        top = _indexed_top_id(damaged)
        return _Found(lost_ids=_missing_ids(set(), top))
    try:
        src = sqlite3.connect(extracted)  # our own scratch copy
    except sqlite3.Error as exc:
        raise SalvageError(f"cannot read what SQLite salvaged: {exc}") from None
    try:
        tables = _fresh_tables(journal)
        in_source = {str(r[0]) for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        sales = _read_sales(src, tables["sales"]) if "sales" in in_source else _SourceSales()
        known = {str(r[0]) for r in journal.query("SELECT idempotency_key FROM sales")}
        new_sales: dict[str, dict[str, Any]] = {}
        for sale in sales.good:
            if sale["idempotency_key"] not in known:
                new_sales.setdefault(sale["idempotency_key"], sale)  # a key twice: the first copy
        keys_by_id = {s["id"]: s["idempotency_key"] for s in sales.good if s["idempotency_key"] in new_sales}
        statements = [_insert(tables["sales"], s, {}) for s in new_sales.values()]
        # A sale the journal has, further along in the file (an older journal put back under a running
        # terminal, and its copy merged): the journal's "pending" would send a booked sale again.
        statements += [
            _bring_forward(tables["sales"], s) for s in sales.good if s["idempotency_key"] in known
        ]
        damaged_rows = 0
        others = sorted(
            (t for name, t in tables.items() if name != "sales" and name in in_source), key=_summary_order
        )
        for table in others:
            rows, broken = _read_rows(src, table, keys_by_id)
            statements += rows
            damaged_rows += broken
    except sqlite3.Error as exc:
        raise SalvageError(f"cannot read what SQLite salvaged: {exc}") from None
    finally:
        src.close()
    before = _row_counts(journal, others)
    forward = _further_along(journal, [s for s in sales.good if s["idempotency_key"] in known])
    journal.execute_all(statements)
    after = _row_counts(journal, others)
    records = tuple(r for r in (journal.sale_by_key(k) for k in new_sales) if r is not None)
    in_journal = known | {r.idempotency_key for r in records}
    kept_ids = {s["id"] for s in sales.good if s["idempotency_key"] in in_journal}
    return _Found(
        sales=records,
        already_there=len({s["idempotency_key"] for s in sales.good} & known),
        brought_forward=forward,
        unusable=sales.damaged + len(new_sales) - len(records),  # the rest broke a constraint of the table
        lost_ids=_missing_ids(kept_ids, max(sales.top_id, _indexed_top_id(damaged))),
        rows=tuple(
            (t.name, after[t.name] - before[t.name]) for t in others if after[t.name] > before[t.name]
        ),
        damaged_rows=damaged_rows,
    )


@dataclass(frozen=True)
class _Found:
    sales: tuple[SaleRecord, ...] = ()
    already_there: int = 0
    brought_forward: int = 0
    unusable: int = 0
    lost_ids: tuple[tuple[int, int], ...] = ()
    rows: tuple[tuple[str, int], ...] = ()
    damaged_rows: int = 0


@dataclass(frozen=True)
class _SourceSales:
    good: tuple[dict[str, Any], ...] = ()  # rows fit to be sales again, by id
    damaged: int = 0  # rows SQLite gave back that are no sale
    top_id: int = 0  # the highest sale id the damaged journal shows it had


def _summary_order(table: _Table) -> tuple[int, str]:
    """Outbox records, cards, unsellable products, cache, then any other table by name."""
    order = list(_ROW_NAMES)
    return (order.index(table.name) if table.name in order else len(order), table.name)


def _fresh_tables(journal: Journal) -> dict[str, _Table]:
    """Every table of the journal's own (current) schema, described by SQLite."""
    names = [
        str(r[0])
        for r in journal.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
    ]
    tables = {}
    for name in names:
        info = journal.query(f"PRAGMA table_info({_quoted(name)})")
        keys = [r for r in info if int(r[5]) > 0]
        rowid = str(keys[0][1]) if len(keys) == 1 and str(keys[0][2]).upper() == "INTEGER" else None
        refs = journal.query(f"PRAGMA foreign_key_list({_quoted(name)})")
        tables[name] = _Table(
            name=name,
            columns=tuple(
                _Column(str(r[1]), _affinity(str(r[2])), bool(r[3]), bool(r[3]) and r[4] is None)
                for r in info
                if str(r[1]) != rowid
            ),
            sale_refs=frozenset(str(r[3]) for r in refs if str(r[2]) == "sales" and r[4] in (None, "id")),
            key_refs=frozenset(str(r[3]) for r in refs if str(r[2]) == "sales" and r[4] == "idempotency_key"),
            foreign=any(not (str(r[2]) == "sales" and r[4] in (None, "id", "idempotency_key")) for r in refs),
        )
    return tables


def _source_columns(src: sqlite3.Connection, table: _Table) -> list[_Column] | None:
    """The columns both have; None when the source lacks one the journal cannot do without."""
    present = {str(r[1]) for r in src.execute(f"PRAGMA table_info({_quoted(table.name)})")}
    if any(c.required and c.name not in present for c in table.columns):
        return None
    return [c for c in table.columns if c.name in present]


def _read_sales(src: sqlite3.Connection, table: _Table) -> _SourceSales:
    columns = _source_columns(src, table)
    present = {str(r[1]) for r in src.execute("PRAGMA table_info(sales)")}
    if columns is None or "id" not in present:
        return _SourceSales()  # not the journal's sales table: nothing to trust in it
    names = ["id", *(c.name for c in columns)]
    good, damaged, top = [], 0, 0
    for row in src.execute(f"SELECT {', '.join(map(_quoted, names))} FROM sales ORDER BY id"):
        sale = dict(zip(names, row, strict=True))
        if _is_int(sale["id"]):
            top = max(top, sale["id"])
        if _is_int(sale["id"]) and _fits(sale, columns) and _sound_sale(sale):
            good.append(sale)
        else:
            damaged += 1
    return _SourceSales(tuple(good), damaged, max(top, _sequence(src, "sales")))


def _sound_sale(s: dict[str, Any]) -> bool:
    """What the money path depends on: a sale without a sound key is never re-sent, one in no known
    state or with products that are no list would stop the outbox."""
    key = s["idempotency_key"]
    if not (isinstance(key, str) and len(key) >= MIN_KEY_LENGTH and set(key) <= KEY_ALPHABET):
        return False
    if s["state"] not in {str(state) for state in SaleState}:
        return False
    if not (isinstance(s["token_id"], str) and s["token_id"]) or not _is_int(s["amount_cents"]):
        return False
    try:
        products = json.loads(s["products"])
    except (TypeError, ValueError):
        return False
    return isinstance(products, list) and all(isinstance(p, str | int) for p in products)


def _read_rows(
    src: sqlite3.Connection, table: _Table, keys_by_id: dict[int, str]
) -> tuple[list[tuple[str, list[object]]], int]:
    """Rows of one more table as INSERTs, and how many came back damaged. A row tied to a sale comes
    only with a sale salvaged now (the rest belong to lost sales or to sales the journal has already)."""
    columns = _source_columns(src, table)
    if columns is None or table.foreign:
        log.warning("salvage leaves out table %s: it does not match this taptill's journal", table.name)
        return [], 0
    names = [c.name for c in columns]
    salvaged_keys = set(keys_by_id.values())
    out, damaged = [], 0
    for row in src.execute(f"SELECT {', '.join(map(_quoted, names))} FROM {_quoted(table.name)}"):
        values = dict(zip(names, row, strict=True))
        if not _fits(values, columns) or not _sound_row(table.name, values):
            damaged += 1
            continue
        refs = {c: keys_by_id.get(values[c]) for c in table.sale_refs if values.get(c) is not None}
        if None in refs.values() or any(values.get(c) not in salvaged_keys for c in table.key_refs):
            continue
        out.append(_insert(table, values, refs))
    return out, damaged


def _sound_row(table: str, values: dict[str, Any]) -> bool:
    """Beyond the declared types: the cache holds JSON, which the terminal parses at start."""
    if table == "cache" and "value" in values:
        try:
            json.loads(values["value"])
        except ValueError:
            return False
    return True


def _insert(table: _Table, values: dict[str, Any], refs: dict[str, str | None]) -> tuple[str, list[object]]:
    """An INSERT of the columns ``values`` has; a reference to a sale is looked up by the sale's key
    (its id may change). OR IGNORE: a row whose key the journal has already keeps the journal's (newer)
    one, and a row that breaks a CHECK is left out instead of failing the whole salvage."""
    names = [c.name for c in table.columns if c.name in values]
    marks = ["(SELECT id FROM sales WHERE idempotency_key = ?)" if n in refs else "?" for n in names]
    params = [refs[n] if n in refs else values[n] for n in names]
    into = f"{_quoted(table.name)} ({', '.join(map(_quoted, names))})"
    return f"INSERT OR IGNORE INTO {into} VALUES ({', '.join(marks)})", params


def _further_along(journal: Journal, sales: list[dict[str, Any]]) -> int:
    """How many of ``sales`` (the file's, under keys the journal has) ``_bring_forward`` updates."""
    now = {
        str(r[0]): (str(r[1]), int(r[2]), int(r[3]))
        for r in journal.query("SELECT idempotency_key, state, attempts, maybe_sent FROM sales")
    }
    count = 0
    for sale in {s["idempotency_key"]: s for s in sales}.values():
        state, attempts, maybe_sent = now[sale["idempotency_key"]]
        if state == "pending" and (
            sale.get("state") != "pending"
            or attempts < (sale.get("attempts") or 0)
            or maybe_sent < (sale.get("maybe_sent") or 0)
        ):
            count += 1
    return count


def _bring_forward(table: _Table, values: dict[str, Any]) -> tuple[str, list[object]]:
    """An UPDATE of the journal's sale under the same key with every column ``values`` has, only while
    the journal's is pending and the file's is further along: settled there, or with more attempts, or
    maybe sent (sent blind again, a booked sale would be charged twice where the server keeps no key)."""
    names = [c.name for c in table.columns if c.name in values and c.name != "idempotency_key"]
    sets = ", ".join(f"{_quoted(n)} = ?" for n in names)
    return (
        f"UPDATE sales SET {sets} WHERE idempotency_key = ? AND state = 'pending'"
        " AND (? != 'pending' OR attempts < ? OR maybe_sent < ?)",
        [
            *(values[n] for n in names),
            values["idempotency_key"],
            values.get("state"),
            values.get("attempts") or 0,
            values.get("maybe_sent") or 0,
        ],
    )


def _row_counts(journal: Journal, tables: Iterable[_Table]) -> dict[str, int]:
    return {t.name: int(journal.query(f"SELECT COUNT(*) FROM {_quoted(t.name)}")[0][0]) for t in tables}


def _indexed_top_id(damaged: Path) -> int:
    """The highest sale id an index of the damaged journal still holds (0 when none can be read): the
    sales table is no AUTOINCREMENT table, and a sale lost on the last page leaves no gap to see, but
    every index entry carries its row's id, and an index often lives on pages the damage spared."""
    top = 0
    try:
        src = sqlite3.connect(damaged)  # our own scratch copy, with its -wal
    except sqlite3.Error:
        return 0
    try:
        with contextlib.suppress(sqlite3.Error):
            query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sales'"
            names = [str(r[0]) for r in src.execute(query)]
            for name in names:
                with contextlib.suppress(sqlite3.Error):  # a damaged or partial index: try the next
                    row = src.execute(f"SELECT MAX(rowid) FROM sales INDEXED BY {_quoted(name)}").fetchone()
                    if row is not None and _is_int(row[0]) and row[0] < 2**40:
                        top = max(top, int(row[0]))
    finally:
        src.close()
    return top


def _sequence(src: sqlite3.Connection, table: str) -> int:
    """The highest id an AUTOINCREMENT table ever handed out (0 when it has none)."""
    try:
        rows = src.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchall()
    except sqlite3.OperationalError:
        return 0  # no AUTOINCREMENT table in that journal
    return max((int(r[0]) for r in rows if _is_int(r[0])), default=0)


def _missing_ids(kept: set[int], top: int) -> tuple[tuple[int, int], ...]:
    """Runs (first, last) of the ids from 1 to ``top`` not in ``kept``. Sale ids are dense from 1 (the
    journal never deletes a sale), so every gap is a lost sale; computed from the gaps, never by
    counting up to ``top`` (a damaged row may carry a huge id)."""
    runs, expected = [], 1
    for i in sorted(k for k in kept if k <= top):
        if i > expected:
            runs.append((expected, i - 1))
        expected = max(expected, i + 1)
    if top >= expected:
        runs.append((expected, top))
    return tuple(runs)


def _fits(values: dict[str, Any], columns: Iterable[_Column]) -> bool:
    """Every value has the type its column declares, and NULL only where the column allows it."""
    return all(
        not c.not_null if values[c.name] is None else _has_affinity(values[c.name], c.affinity)
        for c in columns
    )


def _has_affinity(value: object, affinity: str) -> bool:
    if affinity == "INTEGER":
        return _is_int(value)
    if affinity in ("REAL", "NUMERIC"):
        return _is_number(value)
    if affinity == "TEXT":
        return isinstance(value, str)
    return True  # BLOB: SQLite stores whatever it is given


def _affinity(declared: str) -> str:
    """SQLite's rules (https://sqlite.org/datatype3.html, 3.1) for a column's declared type."""
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if any(s in t for s in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
