"""The central catalogue in SQLite: stations, bundles, blobs, dossiers, materials, pages."""

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlite_utils

from quire.db import atomic, one, open_db, rows

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
]


class Catalogue:
    """The catalogue database; one lock serialises its use across the server's threads."""

    def __init__(self, path: Path):
        self.db: sqlite_utils.Database = open_db(path, MIGRATIONS)
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """Exclusive use of the database inside one transaction."""
        with self._lock, atomic(self.db) as db:
            yield db

    def query(self, sql: str, params=()) -> list[dict]:
        with self._lock:
            return rows(self.db, sql, params)

    def one(self, sql: str, params=()) -> dict | None:
        with self._lock:
            return one(self.db, sql, params)

    def close(self) -> None:
        with self._lock:
            self.db.close()
