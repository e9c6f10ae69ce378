"""SQLite with care, for both sides: WAL, explicit transactions, named migrations."""

import itertools
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import sqlite_utils

_savepoints = itertools.count()


class Dialects(NamedTuple):
    """A migration statement whose text differs between SQLite and PostgreSQL (None: nothing to do there)."""

    sqlite: str | None
    postgresql: str | None


Migration = tuple[str, Sequence["str | Dialects"]]  # (name, SQL statements applied in one transaction)


def utcnow() -> str:
    """Current time as an RFC 3339 UTC string with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def open_db(path: Path, migrations: Sequence[Migration]) -> sqlite_utils.Database:
    """Open (creating if needed) a database file, in WAL mode, with every migration applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are opened only by atomic(), never implicitly.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit the caller was told about survives a power cut (NORMAL may lose the last one).
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    db = sqlite_utils.Database(conn)
    _migrate(db, migrations)
    return db


@contextmanager
def atomic(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One transaction (BEGIN IMMEDIATE), or a savepoint when already inside one."""
    conn = db.conn
    if conn.in_transaction:
        name = f"sp{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield db
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(db: sqlite_utils.Database, migrations: Sequence[Migration]) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    applied = {row["name"] for row in db.query("SELECT name FROM _migrations")}
    for name, statements in migrations:
        if name in applied:
            continue
        # The migration and its record commit together, so a crash never half-applies one.
        with atomic(db):
            for sql in statements:
                if isinstance(sql, Dialects):
                    sql = sql.sqlite
                if sql:
                    db.execute(sql)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", [name, utcnow()])


def rows(db: sqlite_utils.Database, sql: str, params: Sequence | dict = ()) -> list[dict]:
    """All rows of a query as dicts."""
    return list(db.query(sql, params))


def one(db: sqlite_utils.Database, sql: str, params: Sequence | dict = ()) -> dict | None:
    """The first row of a query as a dict, or None."""
    return next(iter(db.query(sql, params)), None)


