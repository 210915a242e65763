"""How a journal is opened: created private, checked, migrated or refused; damage named in one line."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from terminal.journal import (
    DAMAGE_TEXT_MAX,
    MIGRATIONS,
    Journal,
    JournalDamaged,
    JournalError,
    JournalMissing,
    JournalTooNew,
    _is_damage,
    damage_in_one_line,
)
from terminal.model import SaleState
from tests.journal_damage import fill_journal, index_root, overwrite_pages
from tests.terminal_lab import ERIKA, MAX

Opener = Callable[[Path], Journal]
OPEN, READ_ONLY, EXISTING = Journal.open, Journal.open_read_only, Journal.open_existing
OPENERS = pytest.mark.parametrize(
    "opener", [OPEN, READ_ONLY, EXISTING], ids=["open", "open_read_only", "open_existing"]
)
READING_OPENERS = pytest.mark.parametrize(
    "opener", [READ_ONLY, EXISTING], ids=["open_read_only", "open_existing"]
)
CURRENT = len(MIGRATIONS)
OLD = 12  # two migrations short: a column added (13) and a clean-up of old denials (14)
RECOVER = "stop the terminal and run `taptill recover`"


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def sell(journal: Journal, uid: str = MAX, **extra: object) -> str:
    record = journal.record_sale(
        token_id=uid,
        products=["espresso"],
        amount_cents=-250,
        description="Kaffee",
        tag=None,
        offline=False,
        **extra,  # type: ignore[arg-type]
    )
    return record.idempotency_key


def keys_on_file(path: Path) -> list[str]:
    """The sales' keys as another process sees them (the main file and its -wal, as committed)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in db.execute("SELECT idempotency_key FROM sales ORDER BY id")]
    finally:
        db.close()


def user_version(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def stopped_journal(path: Path) -> list[str]:
    """A journal whose terminal stopped: everything checkpointed into the main file, no -wal; its keys."""
    journal = Journal.open(path)
    keys = [sell(journal), sell(journal, ERIKA)]
    journal.close()
    assert names(path.parent) == [path.name]
    return keys


def old_journal(path: Path, version: int = OLD) -> str:
    """A journal an older taptill wrote (WAL mode, schema ``version``) with one booked sale; its key."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    for done, script in enumerate(MIGRATIONS[:version]):
        db.executescript(script)
        db.execute(f"PRAGMA user_version = {done + 1}")
    db.execute(
        "INSERT INTO sales (idempotency_key, token_id, products, amount_cents, description, state,"
        " created_at, updated_at) VALUES ('tOLDKEY', ?, '[\"espresso\"]', -250, 'Kaffee', 'done', 'x', 'x')",
        (MAX,),
    )
    db.commit()
    db.close()
    return "tOLDKEY"


@pytest.fixture
def journal_logs(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    caplog.set_level(logging.DEBUG, logger="terminal.journal")

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "terminal.journal"]

    yield messages


# --- missing, created ----------------------------------------------------------------------------------


@READING_OPENERS
def test_a_missing_journal_is_named_and_the_reading_opens_create_nothing(
    tmp_path: Path, opener: Opener
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    for path in (state / "journal.sqlite3", tmp_path / "nowhere" / "journal.sqlite3"):
        with pytest.raises(JournalMissing) as caught:
            opener(path)
        assert str(caught.value) == f"no journal at {path} yet: `taptill run` creates it"
        assert caught.value.path == path
    assert names(tmp_path) == ["state"] and names(state) == []


def test_a_new_journal_is_created_private_in_new_directories_and_logged_once(
    tmp_path: Path, journal_logs: Callable[[], list[str]]
) -> None:
    path = tmp_path / "var" / "lib" / "taptill" / "journal.sqlite3"
    old_umask = os.umask(0)  # whatever umask the service starts with, the journal is private
    try:
        journal = Journal.open(path)
        sell(journal)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
        journal.close()
    finally:
        os.umask(old_umask)
    assert modes == {"journal.sqlite3": 0o600, "journal.sqlite3-wal": 0o600, "journal.sqlite3-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert user_version(path) == CURRENT
    assert journal_logs() == [
        *(f"journal schema migrated to version {v}" for v in range(1, CURRENT + 1)),
        f"created journal {path}",
    ]
    Journal.open(path).close()
    assert len(journal_logs()) == CURRENT + 1, "a journal that exists is neither created nor migrated again"


def test_a_state_directory_in_the_way_of_a_file_is_an_error_that_says_why(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    path = blocker / "journal.sqlite3"
    for opener in (READ_ONLY, EXISTING):
        with pytest.raises(JournalError) as caught:
            opener(path)
        assert type(caught.value) is JournalError  # not "missing": `taptill run` would not create it
        assert str(caught.value) == f"cannot read journal {path}: Not a directory"
    nested = blocker / "taptill" / "journal.sqlite3"
    with pytest.raises(JournalError) as caught:
        Journal.open(nested)
    assert str(caught.value) == f"cannot create state directory {nested.parent}: Not a directory"
    assert blocker.read_text() == "not a directory"


@READING_OPENERS
def test_a_journal_path_that_loops_is_an_error_not_a_missing_journal(tmp_path: Path, opener: Opener) -> None:
    path = tmp_path / "journal.sqlite3"
    path.symlink_to(path)
    with pytest.raises(JournalError) as caught:
        opener(path)
    assert type(caught.value) is JournalError
    assert str(caught.value) == f"cannot read journal {path}: Too many levels of symbolic links"


def test_open_names_a_journal_it_cannot_create(tmp_path: Path) -> None:
    # the journal linked to storage that is not mounted: nothing is created in its place
    path = tmp_path / "journal.sqlite3"
    path.symlink_to(tmp_path / "unmounted" / "journal.sqlite3")
    with pytest.raises(JournalError) as caught:
        Journal.open(path)
    assert type(caught.value) is JournalError
    assert str(caught.value) == f"cannot open journal {path}: unable to open database file"
    assert names(tmp_path) == ["journal.sqlite3"] and path.is_symlink()


# --- unreadable, damaged -------------------------------------------------------------------------------


def _journal_is_a_directory(path: Path) -> None:
    path.mkdir()


def _wal_is_a_directory(path: Path) -> None:
    stopped_journal(path)
    Path(f"{path}-wal").mkdir()


@pytest.mark.parametrize(
    ("obstacle", "opener", "said"),
    [
        (_journal_is_a_directory, READ_ONLY, "cannot read journal {}: unable to open database file"),
        # The writing opens check read-only first (so a damaged journal is never written); open_existing
        # as the reading commands do (immutable=1 with no -wal beside: SQLite words it otherwise).
        (
            _journal_is_a_directory,
            EXISTING,
            "cannot read journal {}: unable to open database file; make the state directory writable",
        ),
        (
            _journal_is_a_directory,
            OPEN,
            "cannot read journal {}: disk I/O error; make the state directory writable",
        ),
        (_wal_is_a_directory, READ_ONLY, "cannot read journal {}: unable to open database file"),
        *(
            (
                _wal_is_a_directory,
                opener,
                "cannot read journal {}: unable to open database file; make the state directory writable",
            )
            for opener in (EXISTING, OPEN)
        ),
    ],
    ids=["dir-read_only", "dir-existing", "dir-open", "wal-read_only", "wal-existing", "wal-open"],
)
def test_a_journal_that_cannot_be_read_is_an_error_not_damage_and_stays(
    tmp_path: Path, obstacle: Callable[[Path], None], opener: Opener, said: str
) -> None:
    path = tmp_path / "journal.sqlite3"
    obstacle(path)
    before = names(tmp_path)
    with pytest.raises(JournalError) as caught:
        opener(path)
    assert type(caught.value) is JournalError  # unreadable is not damaged: nothing to salvage
    assert str(caught.value) == said.format(path)
    assert names(tmp_path) == before


def _truncated(path: Path) -> str:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "database disk image is malformed"


def _garbage(path: Path) -> str:
    path.write_bytes(b"this is not a database at all\n" * 200)
    return "file is not a database"


def _page_overwritten(path: Path) -> str:
    page = index_root(path, "sales_token")
    overwrite_pages(path, [page])
    # quick_check says "*** in database main ***" first, on a line of its own
    return f"Page {page}: btreeInitPage() returns error code 11"


@OPENERS
@pytest.mark.parametrize(
    "damage", [_truncated, _garbage, _page_overwritten], ids=["truncated", "garbage", "page"]
)
def test_damage_is_reported_in_one_line_and_the_file_stays_as_it_was(
    tmp_path: Path, opener: Opener, damage: Callable[[Path], str]
) -> None:
    path = tmp_path / "journal.sqlite3"
    fill_journal(path, 12, MAX)
    problem = damage(path)
    damaged = path.read_bytes()
    with pytest.raises(JournalDamaged) as caught:
        opener(path)
    assert str(caught.value) == f"journal {path} is damaged ({problem}); {RECOVER}"
    assert (caught.value.path, caught.value.problem) == (path, problem)
    assert path.read_bytes() == damaged, "the damaged file is evidence, salvaged later as it is"
    left = names(tmp_path)
    assert not [n for n in left if ".corrupt-" in n], "no open moves a damaged journal aside"
    if opener is not OPEN:  # open()'s read-only check may leave a -wal/-shm beside it, as SQLite does
        assert left == ["journal.sqlite3"]


def test_another_databases_wal_beside_the_journal_is_damage_and_both_files_stay(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite3"
    path.parent.mkdir()
    fill_journal(path, 60, MAX)
    other = Journal.open(tmp_path / "other" / "journal.sqlite3")
    for _ in range(10):
        sell(other, ERIKA)
    other.query("PRAGMA wal_checkpoint(TRUNCATE)")
    sell(other, ERIKA)
    foreign_wal = Path(f"{other.path}-wal").read_bytes()  # copied while its terminal runs
    other.close()
    main = path.read_bytes()
    for opener in (READ_ONLY, OPEN, EXISTING):
        path.write_bytes(main)
        Path(f"{path}-wal").write_bytes(foreign_wal)
        Path(f"{path}-shm").unlink(missing_ok=True)
        with pytest.raises(JournalDamaged) as caught:
            opener(path)
        assert str(caught.value) == f"journal {path} is damaged (database disk image is malformed); {RECOVER}"
        assert path.exists() and not [n for n in names(path.parent) if ".corrupt-" in n]
        # Read as it is: no opener checkpoints a -wal into a damaged main file (a read-write connection
        # would, as it closes), so `taptill recover` salvages the evidence as the terminal left it.
        assert path.read_bytes() == main
        assert Path(f"{path}-wal").read_bytes() == foreign_wal


@pytest.mark.parametrize(
    ("said", "line"),
    [
        ("file is not a database", "file is not a database"),
        (
            "*** in database main ***\n  Page 5: btreeInitPage() returns error code 11  \n"
            "On tree page 3 cell 0: invalid page number 9\n",
            "Page 5: btreeInitPage() returns error code 11",
        ),
        (
            "*** in database main ***\n*** in database temp ***\n",
            "*** in database main ***\n*** in database temp ***",
        ),
        ("x" * DAMAGE_TEXT_MAX, "x" * DAMAGE_TEXT_MAX),
        ("y" * (DAMAGE_TEXT_MAX + 1), "y" * (DAMAGE_TEXT_MAX - 1) + "…"),
    ],
    ids=["one-line", "check-output", "headers-only", "at-the-limit", "over-the-limit"],
)
def test_sqlites_complaint_becomes_one_short_line(said: str, line: str) -> None:
    expected = line.replace("\n", " ")
    assert damage_in_one_line(said) == expected
    assert "\n" not in expected and len(expected) <= DAMAGE_TEXT_MAX


def test_only_sqlites_corruption_codes_are_damage() -> None:
    """Damage moves a journal to `taptill recover`; an error of Python's sqlite3 module itself (no SQLite
    result code) or any other SQLite code is an error to fix, never a reason to salvage."""
    own = sqlite3.ProgrammingError("Cannot operate on a closed database.")
    assert not hasattr(own, "sqlite_errorcode")
    assert not _is_damage(own)
    for code, damage in [(11, True), (26, True), (11 | 0x100, True), (1, False), (10, False), (0x100, False)]:
        exc = sqlite3.DatabaseError("x")
        exc.sqlite_errorcode = code
        assert _is_damage(exc) is damage, code


# --- schema versions -----------------------------------------------------------------------------------


def test_open_migrates_an_older_journal_keeping_its_sales(
    tmp_path: Path, journal_logs: Callable[[], list[str]]
) -> None:
    path = tmp_path / "journal.sqlite3"
    key = old_journal(path)
    journal = Journal.open(path)
    try:
        sale = journal.sale_by_key(key)
        assert sale is not None and (sale.amount_cents, sale.state, sale.approved) == (
            -250,
            SaleState.DONE,
            True,
        )
    finally:
        journal.close()
    assert user_version(path) == CURRENT
    assert journal_logs() == [f"journal schema migrated to version {v}" for v in range(OLD + 1, CURRENT + 1)]


def test_a_migration_that_cannot_apply_is_refused_in_one_line_and_rolled_back(tmp_path: Path) -> None:
    # An older journal someone already gave a later column (a development build): migration 13 fails
    path = tmp_path / "journal.sqlite3"
    key = old_journal(path)
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE sales ADD COLUMN goods TEXT")
    db.close()
    with pytest.raises(JournalError) as caught:
        Journal.open(path)
    assert type(caught.value) is JournalError  # not damage: nothing to salvage
    assert str(caught.value) == f"cannot open journal {path}: duplicate column name: goods"
    assert names(tmp_path) == ["journal.sqlite3"], "closed on the refusal: no -wal/-shm left beside it"
    assert user_version(path) == OLD and keys_on_file(path) == [key]


def test_open_read_only_reads_an_older_journal_migrated_in_memory_and_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, cwd = tmp_path / "state", tmp_path / "cwd"
    state.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # the in-memory copy must not become a file where the command runs
    path = state / "journal.sqlite3"
    key = old_journal(path)
    before = path.read_bytes()
    journal = Journal.open_read_only(path)
    try:
        sale = journal.sale_by_key(key)
        assert sale is not None and (sale.amount_cents, sale.approved, sale.resolved) == (-250, True, None)
        assert journal.status().done == 1
    finally:
        journal.close()
    assert path.read_bytes() == before and user_version(path) == OLD
    assert names(state) == ["journal.sqlite3"] and names(cwd) == []


def test_open_existing_refuses_an_older_journal_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    old_journal(path)
    before = path.read_bytes()
    with pytest.raises(JournalError) as caught:
        Journal.open_existing(path)
    assert str(caught.value) == (
        f"journal {path} has schema {OLD}, older than this taptill ({CURRENT}): "
        "start `taptill run` once, it migrates the journal"
    )
    assert path.read_bytes() == before and names(tmp_path) == ["journal.sqlite3"]


@OPENERS
def test_a_journal_from_a_newer_taptill_is_refused_and_left_as_it_is(tmp_path: Path, opener: Opener) -> None:
    path = tmp_path / "journal.sqlite3"
    keys = stopped_journal(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {CURRENT + 1}")
    db.close()
    with pytest.raises(JournalTooNew) as caught:
        opener(path)
    assert str(caught.value) == (
        f"journal {path} has schema {CURRENT + 1}, newer than this taptill knows ({CURRENT}); upgrade taptill"
    )
    # While the refusal is still held (its traceback keeps the opener's frame): no connection was left
    # open on the journal. (open()'s read-only check, which refuses it now, may leave an empty -wal/-shm
    # beside it, as SQLite does for a read-only connection; the journal itself is untouched.)
    left = names(tmp_path)
    if opener is OPEN:
        assert set(left) <= {"journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm"}, left
        assert "journal.sqlite3-wal" not in left or Path(f"{path}-wal").stat().st_size == 0
    else:
        assert left == ["journal.sqlite3"]
    assert user_version(path) == CURRENT + 1 and keys_on_file(path) == keys


def test_a_newer_taptills_journal_with_its_wal_is_refused_and_both_files_stay(tmp_path: Path) -> None:
    # A newer taptill crashed (its -wal beside the journal); this one is started or `taptill settle` run
    newer = tmp_path / "newer" / "journal.sqlite3"
    running = Journal.open(newer)
    running.execute(f"PRAGMA user_version = {CURRENT + 1}")
    sell(running)
    main_file, wal = newer.read_bytes(), Path(f"{newer}-wal").read_bytes()  # a crash image
    running.close()
    path = tmp_path / "state" / "journal.sqlite3"
    path.parent.mkdir()
    for opener in (OPEN, EXISTING):
        path.write_bytes(main_file)
        Path(f"{path}-wal").write_bytes(wal)
        with pytest.raises(JournalError) as caught:
            opener(path)
        assert "newer than this taptill knows" in str(caught.value)
        # never checkpointed: the newer taptill finds its journal as it left it
        assert path.read_bytes() == main_file and Path(f"{path}-wal").read_bytes() == wal


# --- reading and writing beside a terminal -------------------------------------------------------------


def test_a_read_only_journal_reads_through_a_running_terminals_wal_and_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    terminal = Journal.open(path)
    try:
        first = sell(terminal)  # in the -wal only: the terminal has not checkpointed
        reader = Journal.open_read_only(path)
        try:
            assert [s.idempotency_key for s in reader.sales()] == [first]
            later = sell(terminal, ERIKA)
            assert [s.idempotency_key for s in reader.sales()] == [first, later]
            with pytest.raises(JournalError) as caught:
                sell(reader)
            assert str(caught.value) == "journal write failed: attempt to write a readonly database"
        finally:
            reader.close()
        assert keys_on_file(path) == [first, later]
    finally:
        terminal.close()


def test_a_read_only_journal_of_a_stopped_terminal_cannot_write_and_leaves_no_files(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    keys = stopped_journal(path)
    before = path.read_bytes()
    reader = Journal.open_read_only(path)
    try:
        assert [s.idempotency_key for s in reader.sales()] == keys
        writes: list[Callable[[], object]] = [
            lambda: sell(reader),
            lambda: reader.mark_booked_elsewhere(next(iter(reader.sales())).id, "202"),
        ]
        for write in writes:
            with pytest.raises(JournalError) as caught:
                write()
            assert str(caught.value) == "journal write failed: attempt to write a readonly database"
    finally:
        reader.close()
    assert names(tmp_path) == ["journal.sqlite3"], "no -wal/-shm outlives a command that only reads"
    assert path.read_bytes() == before


def test_open_existing_writes_beside_a_running_terminal_and_the_write_is_durable(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    terminal = Journal.open(path)
    try:
        key = sell(terminal, approved=False)  # charged, but the guest never saw "Paid"
        sale = terminal.sale_by_key(key)
        assert sale is not None
        terminal.mark_done(sale.id, 1750)
        settle = Journal.open_existing(path)
        try:
            assert settle.path == path
            assert settle.connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert settle.connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert settle.resolve(key, "refunded", "anna")
        finally:
            settle.close()
        seen = terminal.sale_by_key(key)
        assert seen is not None and (seen.resolved, seen.resolved_by) == ("refunded", "anna")
    finally:
        terminal.close()
    reopened = Journal.open_read_only(path)
    try:
        again = reopened.sale_by_key(key)
        assert again is not None and (again.resolved, again.resolved_by, again.to_refund) == (
            "refunded",
            "anna",
            False,
        )
    finally:
        reopened.close()


def test_open_existing_on_a_stopped_terminals_journal_writes_into_it_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite3"
    keys = stopped_journal(path)
    old_umask = os.umask(0)  # `taptill settle` run from a shell with a lax umask
    try:
        settle = Journal.open_existing(path)
        try:
            added = sell(settle)
            # the -wal and -shm it made while writing are as private as the journal
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        finally:
            settle.close()
    finally:
        os.umask(old_umask)
    assert modes == {"journal.sqlite3": 0o600, "journal.sqlite3-wal": 0o600, "journal.sqlite3-shm": 0o600}
    assert names(tmp_path) == ["journal.sqlite3"]  # its -wal checkpointed into the file as it closed
    assert keys_on_file(path) == [*keys, added]


@pytest.mark.parametrize(
    ("opener", "version", "writes"),
    [(OPEN, CURRENT, True), (EXISTING, CURRENT, True), (READ_ONLY, CURRENT, False), (READ_ONLY, OLD, False)],
    ids=["open", "open_existing", "open_read_only", "open_read_only-older"],
)
def test_an_open_journal_may_be_used_from_another_thread(
    tmp_path: Path, opener: Opener, version: int, writes: bool
) -> None:
    # the terminal's outbox and metrics threads use the journal the main thread opened
    path = tmp_path / "journal.sqlite3"
    keys = stopped_journal(path) if version == CURRENT else [old_journal(path, version)]
    journal = opener(path)

    def work() -> list[str]:
        if writes:
            sell(journal, ERIKA)
        return [s.idempotency_key for s in journal.sales()]

    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            seen = pool.submit(work).result()
    finally:
        journal.close()
    assert seen[: len(keys)] == keys and len(seen) == len(keys) + int(writes)


# --- an empty file, or another program's database, where the journal should be -------------------------


@READING_OPENERS
def test_an_empty_file_is_no_journal_yet_for_the_reading_commands_and_stays_empty(
    tmp_path: Path, opener: Opener
) -> None:
    # A journal truncated to nothing, or a `touch`: not "every sale is confirmed", and no schema 0 to migrate
    path = tmp_path / "journal.sqlite3"
    path.touch()
    with pytest.raises(JournalMissing) as caught:
        opener(path)
    assert str(caught.value) == f"no journal at {path} yet: `taptill run` creates it"
    assert path.stat().st_size == 0 and names(tmp_path) == ["journal.sqlite3"]


def test_an_empty_file_becomes_the_journal_at_start_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "journal.sqlite3"
    path.touch()
    with caplog.at_level(logging.INFO, logger="terminal.journal"):
        journal = OPEN(path)
    try:
        key = sell(journal)
    finally:
        journal.close()
    assert f"created journal {path} in the empty file there" in caplog.messages
    assert user_version(path) == CURRENT and keys_on_file(path) == [key]


@OPENERS
def test_another_programs_database_is_refused_and_left_as_it_is(tmp_path: Path, opener: Opener) -> None:
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("CREATE TABLE albums (id INTEGER PRIMARY KEY)")
    db.close()
    before = path.read_bytes()
    with pytest.raises(JournalError) as caught:
        opener(path)
    assert str(caught.value) == (
        f"{path} is not a taptill journal (it holds the tables albums, photos); move it away, or set "
        "[terminal] state_dir to a directory of its own"
    )
    assert path.read_bytes() == before
    left = names(tmp_path)
    assert set(left) <= {"journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm"}, left
    assert "journal.sqlite3-wal" not in left or Path(f"{path}-wal").stat().st_size == 0
