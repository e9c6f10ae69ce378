"""The station's page store: page files named by SHA-256 plus their rows in SQLite."""

import errno
import json
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

from quire.cas import ContentStore
from quire.db import atomic, one, open_db, rows, utcnow

from .errors import StationDiskFull, StoreError

MIGRATIONS = [
    ("0001_initial", [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE batches (
            id TEXT PRIMARY KEY,
            archive_no TEXT NOT NULL,
            item TEXT NOT NULL,
            title TEXT NOT NULL,
            dossier_json TEXT NOT NULL,
            material_json TEXT NOT NULL,
            source TEXT NOT NULL,
            operator TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('open', 'interrupted', 'sealed')),
            started_at TEXT NOT NULL,
            ended_at TEXT,
            last_error TEXT)""",
        # One material is captured by one batch; a second scan of it resumes that batch.
        "CREATE UNIQUE INDEX batches_material ON batches (archive_no, item)",
        """CREATE TABLE pages (
            batch_id TEXT NOT NULL REFERENCES batches (id),
            n INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            media_type TEXT NOT NULL,
            width_px INTEGER NOT NULL,
            height_px INTEGER NOT NULL,
            dpi INTEGER NOT NULL,
            colour TEXT NOT NULL,
            record_json TEXT NOT NULL,
            captured_at TEXT NOT NULL,
            PRIMARY KEY (batch_id, n))""",
        """CREATE TABLE bundles (
            id TEXT PRIMARY KEY,
            batch_id TEXT NOT NULL UNIQUE REFERENCES batches (id),
            manifest BLOB NOT NULL,
            signature BLOB NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('sealed', 'uploading', 'committed', 'rejected', 'purged')),
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            receipt BLOB,
            receipt_signature BLOB,
            committed_at TEXT)""",
    ]),
    ("0002_upload_progress", [
        # Bytes of the bundle's pages the archive holds, so status can say "uploading 40 %".
        "ALTER TABLE bundles ADD COLUMN uploaded_bytes INTEGER NOT NULL DEFAULT 0",
    ]),
    ("0003_rescans", [
        # A material may be scanned again (a QC rescan request), but only one batch of it is ever unsealed.
        "DROP INDEX batches_material",
        "CREATE UNIQUE INDEX batches_material_unsealed ON batches (archive_no, item) WHERE state != 'sealed'",
        "CREATE INDEX batches_material ON batches (archive_no, item)",
    ]),
    ("0004_witness_baseline", [
        # The station compares each new audit checkpoint with the largest it has witnessed (it compared
        # with the latest received, which a restored archive's smaller log replaced).
        "INSERT OR IGNORE INTO meta (key, value) SELECT 'witnessed_receipt', CAST(receipt AS TEXT) FROM bundles"
        " WHERE json_extract(CAST(receipt AS TEXT), '$.audit.checkpoint.body.tree_size') IS NOT NULL"
        " ORDER BY json_extract(CAST(receipt AS TEXT), '$.audit.checkpoint.body.tree_size') DESC LIMIT 1",
    ]),
    ("0005_requeue_station_refusals", [
        # Before refusals carried their scope, a refusal of the station itself (clock off, not
        # registered, suspended or revoked, a call signature) marked the bundle rejected for good.
        # Those rows carry only the archive's message, so this one upgrade goes by its words — the
        # only place a message is read: a wrong guess costs one more offer, after which the archive's
        # typed scope decides again.
        "UPDATE bundles SET state = 'sealed' WHERE state = 'rejected' AND ("
        " last_error LIKE '%call time is%from the archive''s clock%'"
        " OR last_error LIKE '%is not registered with this archive%'"
        " OR last_error LIKE '%is suspended since%pending its revocation%'"
        " OR last_error LIKE '%was revoked at%its uploads are refused%'"
        " OR last_error LIKE '%signature does not verify%; call refused%'"
        " OR last_error LIKE '%unsigned call; stations sign every call%'"
        " OR last_error LIKE '%replayed call refused%'"
        " OR last_error LIKE '%call signed by station%claims to be%')",
    ]),
]

SUFFIX = {"image/jpeg": ".jpg", "image/tiff": ".tif"}


@dataclass(frozen=True)
class Batch:
    id: str
    archive_no: str
    item: str
    title: str
    state: str
    next_n: int          # the page number the next captured page gets

    @property
    def resumed(self) -> bool:
        return self.next_n > 1


class Store:
    """Batches, pages and bundles of one station, in one SQLite file and one page directory."""

    def __init__(self, db_path: Path, pages_dir: Path):
        self.db = open_db(db_path, MIGRATIONS)
        self.jpeg = ContentStore(pages_dir, ".jpg")
        self.tiff = ContentStore(pages_dir, ".tif")

    def close(self) -> None:
        self.db.close()

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = one(self.db, "SELECT value FROM meta WHERE key = ?", [key])
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with atomic(self.db):
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    # -- batches ---------------------------------------------------------------------------

    def open_batch(self, dossier: dict, material: dict, source: str, operator: str) -> Batch:
        """Start the batch for this material, or resume it when it was interrupted; a material already
        sealed is scanned again only when ``material['rescan']`` says so (a QC rescan request)."""
        archive_no, item = dossier["archive_no"], material["item"]
        with atomic(self.db):
            row = one(self.db, "SELECT * FROM batches WHERE archive_no = ? AND item = ?"
                      " ORDER BY started_at DESC, rowid DESC LIMIT 1", [archive_no, item])
            if row is None or row["state"] == "sealed" and material.get("rescan"):
                batch_id = uuid.uuid4().hex
                self.db.execute(
                    "INSERT INTO batches (id, archive_no, item, title, dossier_json, material_json,"
                    " source, operator, state, started_at) VALUES (?,?,?,?,?,?,?,?, 'open', ?)",
                    [batch_id, archive_no, item, material["title"], json.dumps(dossier, ensure_ascii=False),
                     json.dumps(material, ensure_ascii=False), source, operator, utcnow()],
                )
            elif row["state"] == "sealed":
                bundle = one(self.db, "SELECT id FROM bundles WHERE batch_id = ?", [row["id"]])
                raise StoreError(
                    f"material {item} of dossier {archive_no} is already sealed "
                    f"(bundle {bundle['id'][:12] if bundle else '?'}); scan a new material number, "
                    "or rescan it for a replacement with --rescan (an archivist then replaces it centrally)"
                )
            else:
                batch_id = row["id"]
                self.db.execute("UPDATE batches SET state = 'open', last_error = NULL WHERE id = ?", [batch_id])
        return self.batch(batch_id)

    def batch(self, batch_id: str) -> Batch:
        row = one(self.db, "SELECT * FROM batches WHERE id = ?", [batch_id])
        if row is None:
            raise StoreError(f"no batch {batch_id}")
        last = one(self.db, "SELECT MAX(n) AS n FROM pages WHERE batch_id = ?", [batch_id])["n"] or 0
        return Batch(row["id"], row["archive_no"], row["item"], row["title"], row["state"], last + 1)

    def interrupt(self, batch_id: str, reason: str) -> None:
        try:
            with atomic(self.db):
                self.db.execute(
                    "UPDATE batches SET state = 'interrupted', last_error = ? WHERE id = ?", [reason, batch_id]
                )
        except sqlite3.OperationalError:
            pass  # e.g. the disk is full: the batch stays 'open', which resumes just the same

    def batches(self, state: str | None = None) -> list[dict]:
        sql = ("SELECT b.*, (SELECT COUNT(*) FROM pages p WHERE p.batch_id = b.id) AS pages"
               " FROM batches b")
        return rows(self.db, sql + (" WHERE state = ?" if state else "") + " ORDER BY started_at", [state] if state else [])

    # -- pages -----------------------------------------------------------------------------

    def add_page(self, batch_id: str, n: int, page) -> str:
        """Store one processed page durably: file fsynced and renamed, then its row committed."""
        files = self._files(page.media_type)
        try:
            sha = files.put(page.data)
            with atomic(self.db):
                self.db.execute(
                    "INSERT INTO pages VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    [batch_id, n, sha, len(page.data), page.media_type, page.width_px, page.height_px,
                     page.dpi, page.colour, json.dumps(page.record, ensure_ascii=False), utcnow()],
                )
        except (OSError, sqlite3.OperationalError) as exc:
            if getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in str(exc):
                raise StationDiskFull(str(exc)) from None
            raise
        return sha

    def pages(self, batch_id: str) -> list[dict]:
        return rows(self.db, "SELECT * FROM pages WHERE batch_id = ? ORDER BY n", [batch_id])

    def page_path(self, sha256: str, media_type: str) -> Path:
        return self._files(media_type).path(sha256)

    def page_intact(self, sha256: str, media_type: str) -> bool:
        """Whether the stored page file is there and still hashes to its name."""
        return self._files(media_type).rehash(sha256) == sha256

    def _files(self, media_type: str) -> ContentStore:
        if media_type == "image/jpeg":
            return self.jpeg
        if media_type == "image/tiff":
            return self.tiff
        raise StoreError(f"cannot store pages of type {media_type}")
