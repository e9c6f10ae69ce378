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
    ("0006_review", [
        # A batch may wait for the operator's review before it is sealed ('review': a page count that
        # differs from the directory, or held on purpose). SQLite cannot change a CHECK in place, and
        # pages and bundles refer to batches, so they are set aside while the table is rebuilt.
        "CREATE TABLE _pages_kept AS SELECT * FROM pages",
        "CREATE TABLE _bundles_kept AS SELECT * FROM bundles",
        "DELETE FROM bundles",
        "DELETE FROM pages",
        """CREATE TABLE _batches_new (
            id TEXT PRIMARY KEY,
            archive_no TEXT NOT NULL,
            item TEXT NOT NULL,
            title TEXT NOT NULL,
            dossier_json TEXT NOT NULL,
            material_json TEXT NOT NULL,
            source TEXT NOT NULL,
            operator TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('open', 'interrupted', 'review', 'sealed')),
            started_at TEXT NOT NULL,
            ended_at TEXT,
            last_error TEXT,
            hold_for_review INTEGER NOT NULL DEFAULT 0)""",
        "INSERT INTO _batches_new (id, archive_no, item, title, dossier_json, material_json, source, operator,"
        " state, started_at, ended_at, last_error) SELECT id, archive_no, item, title, dossier_json, material_json,"
        " source, operator, state, started_at, ended_at, last_error FROM batches",
        "DROP TABLE batches",
        "ALTER TABLE _batches_new RENAME TO batches",
        "CREATE UNIQUE INDEX batches_material_unsealed ON batches (archive_no, item) WHERE state != 'sealed'",
        "CREATE INDEX batches_material ON batches (archive_no, item)",
        "INSERT INTO pages SELECT * FROM _pages_kept",
        "INSERT INTO bundles SELECT * FROM _bundles_kept",
        "DROP TABLE _pages_kept",
        "DROP TABLE _bundles_kept",
        # Every change to a batch's pages before sealing: nothing leaves without a trace. ``n`` is the
        # page's number when the edit was made; a replaced or removed page's hash stays as evidence.
        """CREATE TABLE page_edits (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            batch_id TEXT NOT NULL REFERENCES batches (id),
            action TEXT NOT NULL CHECK (action IN ('rescan', 'insert', 'remove')),
            n INTEGER NOT NULL,
            sha256 TEXT,
            removed_sha256 TEXT,
            reason TEXT NOT NULL,
            operator TEXT NOT NULL,
            at TEXT NOT NULL)""",
        # The operator's confirmation that a page count differing from the directory is right.
        "ALTER TABLE batches ADD COLUMN count_confirmation TEXT",
        # Dossiers' directories (目录): each material's expected page count, checked when it is sealed.
        """CREATE TABLE directory (
            archive_no TEXT NOT NULL,
            item TEXT NOT NULL,
            position INTEGER NOT NULL,
            title TEXT NOT NULL,
            date_formed TEXT,
            pages INTEGER NOT NULL CHECK (pages >= 0),
            remarks TEXT,
            source TEXT NOT NULL,
            imported_at TEXT NOT NULL,
            PRIMARY KEY (archive_no, item))""",
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
        material = dict(material)
        hold = bool(material.pop("review", False))   # keep it open for review instead of sealing it
        with atomic(self.db):
            row = one(self.db, "SELECT * FROM batches WHERE archive_no = ? AND item = ?"
                      " ORDER BY started_at DESC, rowid DESC LIMIT 1", [archive_no, item])
            if row is None or row["state"] == "sealed" and material.get("rescan"):
                batch_id = uuid.uuid4().hex
                self.db.execute(
                    "INSERT INTO batches (id, archive_no, item, title, dossier_json, material_json,"
                    " source, operator, state, started_at, hold_for_review) VALUES (?,?,?,?,?,?,?,?, 'open', ?, ?)",
                    [batch_id, archive_no, item, material["title"], json.dumps(dossier, ensure_ascii=False),
                     json.dumps(material, ensure_ascii=False), source, operator, utcnow(), int(hold)],
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
                self.db.execute("UPDATE batches SET state = 'open', last_error = NULL, hold_for_review = ?"
                                " WHERE id = ?", [int(hold), batch_id])
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

    def hold(self, batch_id: str, reason: str) -> None:
        """Keep an unsealed batch open for the operator's review ('review'), saying why."""
        with atomic(self.db):
            self.db.execute("UPDATE batches SET state = 'review', last_error = ? WHERE id = ? AND state != 'sealed'",
                            [reason, batch_id])

    def batch_row(self, batch_id: str) -> dict:
        row = one(self.db, "SELECT * FROM batches WHERE id = ?", [batch_id])
        if row is None:
            raise StoreError(f"no batch {batch_id}")
        return row

    def unsealed_batch(self, archive_no: str, item: str) -> dict | None:
        """The batch of this material not sealed yet (open, interrupted or in review), if any."""
        return one(self.db, "SELECT * FROM batches WHERE archive_no = ? AND item = ? AND state != 'sealed'",
                   [archive_no, item])

    def last_batch(self, archive_no: str, item: str) -> dict | None:
        return one(self.db, "SELECT * FROM batches WHERE archive_no = ? AND item = ?"
                   " ORDER BY started_at DESC, rowid DESC LIMIT 1", [archive_no, item])

    def batches(self, state: str | None = None) -> list[dict]:
        sql = ("SELECT b.*, (SELECT COUNT(*) FROM pages p WHERE p.batch_id = b.id) AS pages"
               " FROM batches b")
        return rows(self.db, sql + (" WHERE state = ?" if state else "") + " ORDER BY started_at", [state] if state else [])

    # -- pages -----------------------------------------------------------------------------

    def add_page(self, batch_id: str, n: int, page) -> str:
        """Store one processed page durably: file fsynced and renamed, then its row committed."""
        files = self._files(page.media_type)
        try:
            if getattr(page, "master", None):   # the untouched capture, kept where the profile asks
                self.tiff.put(page.master)
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

    def spooled(self, batch_id: str) -> int:
        """Pages of the batch captured but not stored yet (a killed scan left them in the spool)."""
        try:
            return one(self.db, "SELECT COUNT(*) AS n FROM spool WHERE batch_id = ?", [batch_id])["n"]
        except sqlite3.OperationalError:  # no spool table: this station never scanned through one
            return 0

    # -- pre-seal edits ----------------------------------------------------------------------

    def replace_page(self, batch_id: str, n: int, page, edit: dict) -> dict:
        """Put ``page`` in place of page ``n``; the edit (and the replaced page's hash) recorded with it."""
        self._page(batch_id, n)
        sha = self._put(page)
        with atomic(self.db):
            old = self._page(batch_id, n)
            self.db.execute("DELETE FROM pages WHERE batch_id = ? AND n = ?", [batch_id, n])
            self._insert_page(batch_id, n, sha, page)
            return self._record_edit(batch_id, "rescan", n, sha, old["sha256"], edit)

    def insert_page(self, batch_id: str, after: int, page, edit: dict) -> dict:
        """Insert ``page`` after page ``after`` (0: first); the pages behind it move up by one."""
        last = self.batch(batch_id).next_n - 1
        if not 0 <= after <= last:
            raise StoreError(f"there is no page {after} to insert after: the batch has pages 1–{last} "
                             f"(insert after 0 to put a page first)")
        sha = self._put(page)
        with atomic(self.db):
            self._renumber(batch_id, after + 1, +1)
            self._insert_page(batch_id, after + 1, sha, page)
            return self._record_edit(batch_id, "insert", after + 1, sha, None, edit)

    def remove_page(self, batch_id: str, n: int, edit: dict) -> dict:
        """Take page ``n`` out of the batch (its file and hash stay, as evidence); the pages behind it move down."""
        with atomic(self.db):
            old = self._page(batch_id, n)
            self.db.execute("DELETE FROM pages WHERE batch_id = ? AND n = ?", [batch_id, n])
            self._renumber(batch_id, n + 1, -1)
            return self._record_edit(batch_id, "remove", n, None, old["sha256"], edit)

    def edits(self, batch_id: str) -> list[dict]:
        return rows(self.db, "SELECT * FROM page_edits WHERE batch_id = ? ORDER BY seq", [batch_id])

    def confirm_count(self, batch_id: str, confirmation: dict) -> None:
        with atomic(self.db):
            self.db.execute("UPDATE batches SET count_confirmation = ? WHERE id = ?",
                            [json.dumps(confirmation, ensure_ascii=False), batch_id])

    def _page(self, batch_id: str, n: int) -> dict:
        found = one(self.db, "SELECT * FROM pages WHERE batch_id = ? AND n = ?", [batch_id, n])
        if found is None:
            last = self.batch(batch_id).next_n - 1
            raise StoreError(f"there is no page {n}: the batch has pages 1–{last}" if last else
                             f"there is no page {n}: the batch has no pages yet")
        return found

    def _put(self, page) -> str:
        try:
            if getattr(page, "master", None):   # the untouched capture, kept where the profile asks
                self.tiff.put(page.master)
            return self._files(page.media_type).put(page.data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StationDiskFull(str(exc)) from None
            raise

    def _insert_page(self, batch_id: str, n: int, sha: str, page) -> None:
        self.db.execute(
            "INSERT INTO pages VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [batch_id, n, sha, len(page.data), page.media_type, page.width_px, page.height_px,
             page.dpi, page.colour, json.dumps(page.record, ensure_ascii=False), utcnow()],
        )

    def _renumber(self, batch_id: str, first: int, by: int) -> None:
        """Pages ``first`` and after move by ``by`` (through negative numbers: (batch, n) stays unique)."""
        self.db.execute("UPDATE pages SET n = -n WHERE batch_id = ? AND n >= ?", [batch_id, first])
        self.db.execute("UPDATE pages SET n = -n + ? WHERE batch_id = ? AND n < 0", [by, batch_id])

    def _record_edit(self, batch_id: str, action: str, n: int, sha: str | None, removed: str | None,
                     edit: dict) -> dict:
        at = utcnow()
        seq = self.db.execute(
            "INSERT INTO page_edits (batch_id, action, n, sha256, removed_sha256, reason, operator, at)"
            " VALUES (?,?,?,?,?,?,?,?)", [batch_id, action, n, sha, removed, edit["reason"], edit["operator"], at],
        ).lastrowid
        return one(self.db, "SELECT * FROM page_edits WHERE seq = ?", [seq])

    # -- directories -------------------------------------------------------------------------

    def replace_directory(self, archive_no: str, entries: list[dict], source: str) -> None:
        """The dossier's directory becomes ``entries`` (in their order), all at once."""
        now = utcnow()
        with atomic(self.db):
            self.db.execute("DELETE FROM directory WHERE archive_no = ?", [archive_no])
            for position, e in enumerate(entries, 1):
                self.db.execute(
                    "INSERT INTO directory VALUES (?,?,?,?,?,?,?,?,?)",
                    [archive_no, e["item"], position, e["title"], e.get("date_formed"), e["pages"],
                     e.get("remarks"), source, now])

    def put_directory_entry(self, archive_no: str, entry: dict, source: str, replacing: str | None = None) -> None:
        """Add one material to the dossier's directory (last), or correct it in its place (the row of item
        ``replacing`` when given, whose item may change)."""
        with atomic(self.db):
            row = one(self.db, "SELECT position FROM directory WHERE archive_no = ? AND item = ?",
                      [archive_no, replacing or entry["item"]])
            if row and replacing and replacing != entry["item"]:     # the corrected row keeps its place
                self.db.execute("DELETE FROM directory WHERE archive_no = ? AND item = ?", [archive_no, replacing])
            position = row["position"] if row else one(
                self.db, "SELECT COALESCE(MAX(position), 0) + 1 AS p FROM directory WHERE archive_no = ?",
                [archive_no])["p"]
            self.db.execute("INSERT OR REPLACE INTO directory VALUES (?,?,?,?,?,?,?,?,?)",
                            [archive_no, entry["item"], position, entry["title"], entry.get("date_formed"),
                             entry["pages"], entry.get("remarks"), source, utcnow()])

    def remove_directory_entry(self, archive_no: str, item: str) -> None:
        """Take one material out of the dossier's directory; the rows below it move up."""
        with atomic(self.db):
            row = one(self.db, "SELECT position FROM directory WHERE archive_no = ? AND item = ?", [archive_no, item])
            if row:
                self.db.execute("DELETE FROM directory WHERE archive_no = ? AND item = ?", [archive_no, item])
                self.db.execute("UPDATE directory SET position = position - 1 WHERE archive_no = ? AND position > ?",
                                [archive_no, row["position"]])

    def directory(self, archive_no: str) -> list[dict]:
        return rows(self.db, "SELECT * FROM directory WHERE archive_no = ? ORDER BY position", [archive_no])

    def directory_entry(self, archive_no: str, item: str) -> dict | None:
        return one(self.db, "SELECT * FROM directory WHERE archive_no = ? AND item = ?", [archive_no, item])

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
