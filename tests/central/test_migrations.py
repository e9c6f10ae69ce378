"""Archives in the field open unchanged: the migrations they applied are the same, by name and by statement."""

import hashlib
import json
import sqlite3
from pathlib import Path

from central.store.catalogue import MIGRATIONS, Catalogue

# A catalogue made by the release before the storage layer moved into central/store (its iterdump).
BEFORE = Path(__file__).parent / "data" / "catalogue-0011.sql"
APPLIED_IN_THE_FIELD = ["0001_initial", "0002_enrolment", "0003_unit_profiles", "0004_quarantine", "0005_audit_log",
                        "0006_people_and_access", "0007_profile_versions", "0008_web_console", "0009_sealing",
                        "0010_blob_sm3", "0011_transfer"]
# SHA-256 of json.dumps of those migrations (names and statements) as that release shipped them.
THEIR_STATEMENTS = "321683e9f4ba8ac5fc7e70c4189ddb52e2e07beb5df50447bf7b80f3efc0282e"


def _schema(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    finally:
        conn.close()


def _applied(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT name, applied_at FROM _migrations ORDER BY name").fetchall()
    finally:
        conn.close()


def test_the_shipped_migrations_are_unchanged_and_first():
    """New migrations may follow; none that a home has applied is renamed, reordered or edited."""
    shipped = MIGRATIONS[:len(APPLIED_IN_THE_FIELD)]
    assert [name for name, _ in shipped] == APPLIED_IN_THE_FIELD
    digest = hashlib.sha256(json.dumps(shipped, ensure_ascii=False).encode()).hexdigest()
    assert digest == THEIR_STATEMENTS, "a shipped migration's statements changed: add a new migration instead"


def test_a_home_from_the_release_before_opens_unchanged(tmp_path):
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.executescript(BEFORE.read_text(encoding="utf-8"))
    conn.close()
    schema, applied = _schema(old), _applied(old)
    Catalogue(old).close()
    assert _applied(old)[:len(applied)] == applied   # nothing it applied was applied again
    fresh = tmp_path / "fresh.db"
    Catalogue(fresh).close()
    assert _schema(fresh) == _schema(old)             # a home made today has the same tables as the old one
    if len(MIGRATIONS) == len(APPLIED_IN_THE_FIELD):
        assert _schema(old) == schema                 # and, with no migration since, not one byte of schema moved
