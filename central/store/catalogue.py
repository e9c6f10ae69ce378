"""The central catalogue: stations, bundles, blobs, dossiers, materials, pages — its migrations, and
the catalogue on SQLite (the default; ``postgres.PostgresCatalogue`` is the other kind)."""

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Sequence
from typing import Iterator

import sqlite_utils

from quire.db import Dialects, atomic, one, open_db
from quire.db import rows as _rows

MIGRATIONS = [
    ("0001_initial", [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE stations (
            id TEXT PRIMARY KEY,
            public_key BLOB NOT NULL UNIQUE,
            unit TEXT NOT NULL,
            added_at TEXT NOT NULL,
            revoked_at TEXT)""",
        """CREATE TABLE bundles (
            id TEXT PRIMARY KEY,
            station_id TEXT NOT NULL REFERENCES stations (id),
            manifest BLOB NOT NULL,
            signature BLOB NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('offered', 'committed', 'rejected')),
            offered_at TEXT NOT NULL,
            committed_at TEXT,
            problems TEXT,
            receipt BLOB,
            receipt_signature BLOB)""",
        """CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY,
            bytes INTEGER NOT NULL,
            stored_at TEXT NOT NULL)""",
        """CREATE TABLE dossiers (
            archive_no TEXT PRIMARY KEY,
            name TEXT,
            unit TEXT NOT NULL,
            created_at TEXT NOT NULL)""",
        """CREATE TABLE materials (
            id INTEGER PRIMARY KEY,
            archive_no TEXT NOT NULL REFERENCES dossiers (archive_no),
            item TEXT NOT NULL,
            category TEXT NOT NULL,
            title TEXT NOT NULL,
            date_formed TEXT,
            page_count INTEGER NOT NULL,
            remarks TEXT,
            bundle_id TEXT NOT NULL UNIQUE REFERENCES bundles (id),
            catalogued_at TEXT NOT NULL,
            UNIQUE (archive_no, item))""",
        """CREATE TABLE pages (
            material_id INTEGER NOT NULL REFERENCES materials (id),
            n INTEGER NOT NULL,
            sha256 TEXT NOT NULL REFERENCES blobs (sha256),
            bytes INTEGER NOT NULL,
            media_type TEXT NOT NULL,
            width_px INTEGER NOT NULL,
            height_px INTEGER NOT NULL,
            dpi INTEGER NOT NULL,
            colour TEXT NOT NULL,
            record_json TEXT NOT NULL,
            PRIMARY KEY (material_id, n))""",
    ]),
    ("0002_enrolment", [
        # A station that asked to be enrolled, waiting for an operator to compare the code.
        """CREATE TABLE enrolments (
            code TEXT PRIMARY KEY,
            station_id TEXT NOT NULL,
            public_key BLOB NOT NULL UNIQUE,
            hostname TEXT NOT NULL,
            requested_at TEXT NOT NULL)""",
        "ALTER TABLE stations ADD COLUMN revoked_by TEXT",
    ]),
    ("0003_unit_profiles", [
        # Which standards profile judges a unit's bundles; units not listed use meta 'default_profile'.
        """CREATE TABLE unit_profiles (
            unit TEXT PRIMARY KEY,
            profile TEXT NOT NULL,
            assigned_at TEXT NOT NULL)""",
    ]),
    ("0004_quarantine", [
        # A bundle refused at commit, with every reason; its manifest and page files stay stored.
        """CREATE TABLE quarantine (
            bundle_id TEXT PRIMARY KEY REFERENCES bundles (id),
            station_id TEXT NOT NULL,
            unit TEXT NOT NULL,
            archive_no TEXT NOT NULL,
            item TEXT NOT NULL,
            profile TEXT,
            profile_version INTEGER,
            reasons TEXT NOT NULL,
            quarantined_at TEXT NOT NULL)""",
    ]),
    ("0005_audit_log", [
        # Leaf i of the audit Merkle tree is SHA-256(0x00 || entry); nodes hold every complete subtree.
        """CREATE TABLE audit_entries (
            idx INTEGER PRIMARY KEY,
            event TEXT NOT NULL,
            subject TEXT NOT NULL,
            entry BLOB NOT NULL)""",
        "CREATE INDEX audit_entries_subject ON audit_entries (event, subject)",
        """CREATE TABLE audit_nodes (
            level INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            hash BLOB NOT NULL,
            PRIMARY KEY (level, idx))""",
        """CREATE TABLE audit_checkpoints (
            tree_size INTEGER PRIMARY KEY,
            body BLOB NOT NULL,
            signature BLOB NOT NULL)""",
        # Append-only by construction; someone editing the file directly is caught by 'audit verify'.
        *(f"""CREATE TRIGGER {table}_append_only_{op} BEFORE {op.upper()} ON {table}
              BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"""
          for table in ("audit_entries", "audit_nodes", "audit_checkpoints") for op in ("update", "delete")),
    ]),
    ("0006_people_and_access", [
        # Catalogue identity fields of a dossier (DA/T 31 著录): who it belongs to and what kind it is.
        "ALTER TABLE dossiers ADD COLUMN sex TEXT",
        "ALTER TABLE dossiers ADD COLUMN birth_date TEXT",
        "ALTER TABLE dossiers ADD COLUMN post TEXT",
        "ALTER TABLE dossiers ADD COLUMN kind TEXT NOT NULL DEFAULT 'personnel'",
        """CREATE TABLE units (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            dossiers_expected INTEGER,
            created_at TEXT NOT NULL)""",
        # People who use the archive. Tokens are stored only as SHA-256 of a 256-bit random secret.
        """CREATE TABLE users (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            roles TEXT NOT NULL,
            units TEXT NOT NULL,
            own_archive_no TEXT,
            token_sha256 TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            disabled_at TEXT)""",
        # Dossiers a user may never consult: relatives (回避).
        """CREATE TABLE user_relations (
            user_id TEXT NOT NULL REFERENCES users (id),
            archive_no TEXT NOT NULL,
            relation TEXT NOT NULL,
            PRIMARY KEY (user_id, archive_no))""",
        """CREATE TABLE consultations (
            id INTEGER PRIMARY KEY,
            reader TEXT NOT NULL REFERENCES users (id),
            archive_no TEXT NOT NULL,
            purpose TEXT NOT NULL,
            days INTEGER NOT NULL,
            export_requested INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('requested', 'approved', 'refused')),
            export_state TEXT NOT NULL CHECK (export_state IN ('none', 'requested', 'approved', 'refused')),
            filed_at TEXT NOT NULL,
            decided_by TEXT,
            decided_at TEXT,
            decision_reason TEXT,
            expires_at TEXT,
            export_decided_by TEXT)""",
        # Four eyes (双人复核): a change proposed by one person, applied only when a second approves.
        """CREATE TABLE changes (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            payload TEXT NOT NULL,
            reason TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('proposed', 'applied', 'refused')),
            proposed_by TEXT NOT NULL,
            proposed_at TEXT NOT NULL,
            decided_by TEXT,
            decided_at TEXT)""",
        # Earlier versions of a replaced or withdrawn material, with who/when/why.
        """CREATE TABLE material_versions (
            archive_no TEXT NOT NULL,
            item TEXT NOT NULL,
            version INTEGER NOT NULL,
            bundle_id TEXT NOT NULL,
            title TEXT NOT NULL,
            page_count INTEGER NOT NULL,
            pages TEXT NOT NULL,
            catalogued_at TEXT NOT NULL,
            ended_at TEXT NOT NULL,
            ended_how TEXT NOT NULL CHECK (ended_how IN ('replaced', 'withdrawn')),
            change_id INTEGER NOT NULL REFERENCES changes (id),
            PRIMARY KEY (archive_no, item, version))""",
        "ALTER TABLE materials ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE stations ADD COLUMN suspended_at TEXT",
        # A quarantined bundle that a four-eyes replacement later catalogued stays on record, released.
        "ALTER TABLE quarantine ADD COLUMN released_by_change INTEGER REFERENCES changes (id)",
        # QC acceptance (数据验收): per committed bundle, a random sample judged by an inspector.
        """CREATE TABLE qc_batches (
            bundle_id TEXT PRIMARY KEY REFERENCES bundles (id),
            station_id TEXT NOT NULL,
            operator TEXT NOT NULL,
            inspector TEXT NOT NULL,
            sample TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('sampling', 'accepted', 'returned')),
            started_at TEXT NOT NULL,
            decided_at TEXT,
            good_share REAL)""",
        """CREATE TABLE qc_judgements (
            bundle_id TEXT NOT NULL REFERENCES qc_batches (bundle_id),
            n INTEGER NOT NULL,
            good INTEGER NOT NULL,
            reason TEXT,
            judged_at TEXT NOT NULL,
            PRIMARY KEY (bundle_id, n))""",
        # What a station is told outside a receipt: rescan requests after a returned QC batch.
        """CREATE TABLE station_notices (
            id INTEGER PRIMARY KEY,
            station_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at TEXT NOT NULL)""",
    ]),
    ("0007_profile_versions", [
        # What each standards profile name and version meant when it first judged a bundle here: its
        # content hash and canonical content. The same name and version with other content is refused.
        """CREATE TABLE profile_versions (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            content BLOB NOT NULL,
            path TEXT NOT NULL,
            first_used_at TEXT NOT NULL,
            PRIMARY KEY (name, version))""",
        "ALTER TABLE quarantine ADD COLUMN profile_sha256 TEXT",
    ]),
    ("0008_web_console", [
        # Passwords for the web console beside the tokens: argon2id hashes (the PHC string keeps its
        # parameters); one set by an administrator must be changed at the first sign-in.
        "ALTER TABLE users ADD COLUMN password_hash TEXT",
        "ALTER TABLE users ADD COLUMN password_must_change INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE users ADD COLUMN password_set_at TEXT",
        # Server-side sessions: the cookie holds a random secret, the catalogue only its SHA-256.
        """CREATE TABLE web_sessions (
            token_sha256 TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users (id),
            csrf TEXT NOT NULL,
            address TEXT NOT NULL,
            created_at TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            ended_at TEXT,
            ended_how TEXT)""",
        "CREATE INDEX web_sessions_user ON web_sessions (user_id, ended_at)",
        # Failed sign-ins per account ("user:ID") and per address ("addr:IP"), for lockout with back-off.
        """CREATE TABLE signin_failures (
            key TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            last_at TEXT NOT NULL,
            locked_until TEXT)""",
    ]),
    ("0009_sealing", [
        # A sealed dossier (封存) names the applied four-eyes change that sealed it; NULL: not sealed.
        "ALTER TABLE dossiers ADD COLUMN sealed_by_change INTEGER REFERENCES changes (id)",
    ]),
    ("0010_blob_sm3", [
        # Each blob's SM3 (GB/T 32905) beside its SHA-256, for 密评; NULL until 'quire-central sm3-backfill'
        # has hashed a blob stored before this migration.
        "ALTER TABLE blobs ADD COLUMN sm3 TEXT",
    ]),
    ("0011_transfer", [
        # A dossier transferred (转递) to another organisation: the applied four-eyes change and the recipient.
        "ALTER TABLE dossiers ADD COLUMN transferred_by_change INTEGER REFERENCES changes (id)",
        "ALTER TABLE dossiers ADD COLUMN transferred_to TEXT",
    ]),
    ("0012_explicit_order", [
        # The order blobs and bundles were recorded in, as a column both databases keep (SQLite's rowid
        # is its own); and what the statistics group by, taken from the manifest when it is offered.
        # A PostgreSQL catalogue is made by running every migration before its first row: nothing to fill.
        "ALTER TABLE blobs ADD COLUMN seq INTEGER",
        Dialects("UPDATE blobs SET seq = rowid", None),
        "CREATE UNIQUE INDEX blobs_seq ON blobs (seq)",
        "ALTER TABLE bundles ADD COLUMN seq INTEGER",
        Dialects("UPDATE bundles SET seq = rowid", None),
        "CREATE UNIQUE INDEX bundles_seq ON bundles (seq)",
        "ALTER TABLE bundles ADD COLUMN operator TEXT",
        "ALTER TABLE bundles ADD COLUMN archive_no TEXT",
        "ALTER TABLE bundles ADD COLUMN pages INTEGER",
        Dialects("UPDATE bundles SET operator = json_extract(CAST(manifest AS TEXT), '$.batch.operator'),"
                 " archive_no = json_extract(CAST(manifest AS TEXT), '$.dossier.archive_no'),"
                 " pages = json_array_length(CAST(manifest AS TEXT), '$.pages')"
                 " WHERE json_valid(CAST(manifest AS TEXT))", None),
        "CREATE INDEX bundles_station ON bundles (station_id, state)",
    ]),
    ("0013_search_indexes", [
        # Search and listing stay index lookups at millions of pages (bench/catalogue_scale.py): a unit's
        # dossiers in number order; on PostgreSQL also a number's first characters (its collation is not C,
        # so the primary key cannot serve LIKE 'D123%') and any part of a name (trigrams, pg_trgm).
        "CREATE INDEX dossiers_unit ON dossiers (unit, archive_no)",
        Dialects(None, "CREATE INDEX dossiers_archive_no_prefix ON dossiers (archive_no text_pattern_ops)"),
        Dialects(None, "CREATE EXTENSION IF NOT EXISTS pg_trgm"),
        Dialects(None, "CREATE INDEX dossiers_name_trigrams ON dossiers USING gin (name gin_trgm_ops)"),
    ]),
    ("0014_call_nonces", [
        # Signed calls' nonces, shared by every archive process on one PostgreSQL (store/nonces.py); on
        # SQLite they stay in a file of their own, so that a nonce per call does not queue behind the writer.
        Dialects(None, "CREATE TABLE call_nonces (guard TEXT NOT NULL, caller TEXT NOT NULL, nonce TEXT NOT NULL,"
                       " time_ms BIGINT NOT NULL, PRIMARY KEY (guard, caller, nonce))"),
        Dialects(None, "CREATE INDEX call_nonces_time ON call_nonces (time_ms)"),
    ]),
    ("0015_material_station", [
        # The station that sent each material's bundle, kept on the material when it is catalogued: a
        # dossier's listing reads its materials alone, not one bundle row each (at ten million pages those
        # rows, keyed by hash, are scattered over a table the size of every manifest; bench/catalogue_scale.py).
        "ALTER TABLE materials ADD COLUMN station_id TEXT",
        "UPDATE materials SET station_id = (SELECT b.station_id FROM bundles b WHERE b.id = materials.bundle_id)",
    ]),
]


class WriterBusy(Exception):
    """``transaction(wait=False)`` found another transaction holding the catalogue's writer lock."""


class CatalogueStore:
    """What every kind of catalogue offers: ``transaction()`` (a write transaction whose ``execute`` takes
    named ``:param`` SQL; with ``wait=False``, WriterBusy instead of waiting for another writer),
    ``insert_many`` (one statement over many rows), ``query``/``one`` (reads, as dicts),
    ``copy_to``/``replace_from``, ``close``."""

    kind = ""

    def insert_many(self, sql: str, params: list[dict]) -> None:
        """Run one write statement (named ``:param`` SQL) once per dict of ``params``, all in one write
        transaction (a savepoint inside one already open): every row is written, or none."""
        raise NotImplementedError


class Catalogue(CatalogueStore):
    """The catalogue in one SQLite file; one lock serialises its use across the server's threads."""

    kind = "sqlite"

    def __init__(self, path: Path):
        self.db: sqlite_utils.Database = open_db(path, MIGRATIONS)
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self, wait: bool = True) -> Iterator[sqlite_utils.Database]:
        """Exclusive use of the database inside one transaction. ``wait=False`` still waits for this
        process's other threads (its reads wait for them alike), not for another process's write."""
        self._lock.acquire()
        began = False
        try:
            if not wait and not self.db.conn.in_transaction:
                self._begin_at_once()
                began = True
            with atomic(self.db) as db:   # inside the one just begun: a savepoint
                yield db
            if began:
                self.db.conn.execute("COMMIT")
        except BaseException:
            if began and self.db.conn.in_transaction:
                self.db.conn.execute("ROLLBACK")
            raise
        finally:
            self._lock.release()

    def _begin_at_once(self) -> None:
        """BEGIN IMMEDIATE without waiting out the busy timeout for another process's write."""
        conn = self.db.conn
        waits_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:   # extended codes keep the primary in the low byte
                raise
            raise WriterBusy("another process is writing to the catalogue") from None
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(waits_ms)}")

    def insert_many(self, sql: str, params: list[dict]) -> None:
        with self.transaction() as db:
            db.conn.executemany(sql, params)

    def query(self, sql: str, params=()) -> list[dict]:
        with self._lock:
            return _rows(self.db, sql, params)

    def one(self, sql: str, params=()) -> dict | None:
        with self._lock:
            return one(self.db, sql, params)

    def copy_to(self, target: sqlite3.Connection) -> None:
        """Copy the whole catalogue, one committed state, into ``target`` (SQLite's backup API)."""
        with self._lock:
            self.db.conn.backup(target)

    def replace_from(self, source: sqlite3.Connection) -> None:
        """Replace the whole catalogue with ``source``'s, in one step (SQLite's backup API)."""
        with self._lock:
            source.backup(self.db.conn)

    def close(self) -> None:
        with self._lock:
            self.db.close()


def rows(source, sql: str, params: dict | list | None = None) -> list[dict]:
    """A query's rows as dicts, from the Catalogue (under its lock), or from inside a transaction
    (``Catalogue.transaction``'s database, or a plain sqlite3 connection to a snapshot)."""
    if isinstance(source, CatalogueStore):
        return source.query(sql, params or {})
    cursor = source.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def insert_rows(db, table: str, columns: Sequence[str], items: Sequence[dict], per_statement: int = 100) -> None:
    """Insert ``items`` (dicts keyed by ``columns``) inside the caller's transaction, up to ``per_statement``
    rows in each INSERT: on PostgreSQL each statement is a round trip, which the archive process and the
    database both pay for."""
    for start in range(0, len(items), per_statement):
        chunk = items[start:start + per_statement]
        params = {f"{c}_{i}": item[c] for i, item in enumerate(chunk) for c in columns}
        values = ", ".join("(" + ", ".join(f":{c}_{i}" for c in columns) + ")" for i in range(len(chunk)))
        db.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}", params)


def within(column: str, values, name: str = "v") -> tuple[str, dict]:
    """A condition keeping ``column`` to ``values`` (None: no limit), with its named parameters."""
    if values is None:
        return "1 = 1", {}
    params = {f"{name}{i}": v for i, v in enumerate(sorted(values))}
    if not params:
        return "1 = 0", {}
    return f"{column} IN ({', '.join(':' + k for k in params)})", params
