"""The capture spool: each raw page made durable the moment it is scanned, until its final page is stored.

A spooled page is an uncompressed ``.npy`` file (written to a temporary name, fsynced, renamed)
plus a row in the station's SQLite, committed before the scanner is asked for the next page. The
row is deleted once the processed page is in the page store; a page found in both after a crash
is stored already and only its spool entry is cleared.
"""

import errno
import fcntl
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quire.cas import fsync_dir
from quire.db import atomic, one, open_db, rows, utcnow

from .capture import RawPage
from .errors import StationDiskFull, StoreError

MIGRATIONS = [
    ("spool_0001_initial", [
        """CREATE TABLE spool (
            batch_id TEXT NOT NULL,
            n INTEGER NOT NULL,
            file TEXT NOT NULL,
            dpi INTEGER NOT NULL,
            side TEXT NOT NULL,
            origin TEXT NOT NULL,
            spooled_at TEXT NOT NULL,
            PRIMARY KEY (batch_id, n))""",
    ]),
    ("spool_0002_area", [
        "ALTER TABLE spool ADD COLUMN area_mm TEXT",   # JSON [width, height], or NULL when unknown
    ]),
    ("spool_0003_dpi_source", [
        # NULL: spooled before the source was recorded, so the resolution is not known to be measured.
        "ALTER TABLE spool ADD COLUMN dpi_source TEXT",
    ]),
]
_SUFFIX = ".npy"
# The header np.save writes for a page (uint8, C order): H×W grey or H×W×3 colour.
_PAGE_HEADER = re.compile(r"\{'descr': '\|u1', 'fortran_order': False, 'shape': \((\d+), (\d+)(?:, (3))?\), \}\s*")


@dataclass(frozen=True)
class Spooled:
    """One page waiting in the spool."""

    batch_id: str
    n: int
    path: Path


class Spool:
    """Raw pages captured but not yet processed and stored, in files beside a table of the station's SQLite."""

    def __init__(self, db_path: Path, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        # One scan at a time per station: a second would take the first one's spooled pages for a
        # killed run's and store them twice. The kernel drops the lock when its holder dies.
        self._owner = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._owner)
            raise StoreError("another scan is running on this station; wait for it to finish, "
                             "or stop it, then scan again") from None
        self.db = open_db(db_path, MIGRATIONS)
        # The capture thread adds and the store thread clears: one connection, used by one at a time.
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()
        os.close(self._owner)

    def put(self, batch_id: str, n: int, pages: list[RawPage]) -> list[Path]:
        """Make raw pages numbered from ``n`` durable together (files fsynced and renamed, then their
        rows committed in one transaction): a duplex sheet's two sides are spooled both or neither."""
        finals = [self.dir / f"{batch_id}-{n + i:06d}{_SUFFIX}" for i in range(len(pages))]
        try:
            for i, (page, final) in enumerate(zip(pages, finals)):
                fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{batch_id}-{n + i:06d}.", suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        np.save(fh, np.ascontiguousarray(page.image), allow_pickle=False)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, final)
                finally:
                    Path(tmp).unlink(missing_ok=True)
            fsync_dir(self.dir)
            with self._lock, atomic(self.db):
                for i, page in enumerate(pages):
                    self.db.execute("INSERT OR REPLACE INTO spool VALUES (?,?,?,?,?,?,?,?,?)",
                                    [batch_id, n + i, finals[i].name, page.dpi, page.side, page.origin, utcnow(),
                                     json.dumps(list(page.area_mm)) if page.area_mm else None, page.dpi_source])
        except (OSError, sqlite3.OperationalError) as exc:
            # numpy reports a short write without an errno, so the free space itself is asked too.
            full = (getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in str(exc)
                    or shutil.disk_usage(self.dir).free < max(page.image.nbytes for page in pages))
            if full:
                for final in finals:  # the pages were not captured durably: they are scanned again
                    final.unlink(missing_ok=True)
                raise StationDiskFull(str(exc)) from None
            raise
        return finals

    def load(self, batch_id: str, n: int) -> RawPage:
        """The spooled raw page, as it was captured."""
        with self._lock:
            row = one(self.db, "SELECT * FROM spool WHERE batch_id = ? AND n = ?", [batch_id, n])
        if row is None:
            raise KeyError(f"page {n} of batch {batch_id} is not in the spool")
        image = _load_page(self.dir / row["file"])
        area = tuple(json.loads(row["area_mm"])) if row["area_mm"] else None
        return RawPage(image, row["dpi"], dpi_source=row["dpi_source"] or "assumed", side=row["side"],
                       origin=row["origin"], area_mm=area)

    def done(self, batch_id: str, n: int) -> None:
        """Forget a page that is now in the page store: its row, then its file."""
        with self._lock, atomic(self.db):
            row = one(self.db, "SELECT file FROM spool WHERE batch_id = ? AND n = ?", [batch_id, n])
            self.db.execute("DELETE FROM spool WHERE batch_id = ? AND n = ?", [batch_id, n])
        if row:
            (self.dir / row["file"]).unlink(missing_ok=True)

    def waiting(self) -> list[Spooled]:
        """Every spooled page, by batch and page number."""
        with self._lock:
            found = rows(self.db, "SELECT batch_id, n, file FROM spool ORDER BY batch_id, n")
        return [Spooled(r["batch_id"], r["n"], self.dir / r["file"]) for r in found]

    def sweep(self) -> int:
        """Delete files no row names (a write cut short by a crash); how many. Only while nothing is spooling."""
        named = {s.path.name for s in self.waiting()}
        removed = 0
        for path in self.dir.iterdir():
            if path.is_file() and path.name not in named and path.name != ".lock":
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def waiting_per_batch(db) -> dict[str, int]:
    """How many pages each batch has in the spool and not yet in the page store, read without the scan lock."""
    if not one(db, "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'spool'"):
        return {}  # no scan has run on this station yet
    found = rows(db, "SELECT batch_id, COUNT(*) AS pages FROM spool s WHERE NOT EXISTS"
                     " (SELECT 1 FROM pages p WHERE p.batch_id = s.batch_id AND p.n = s.n) GROUP BY batch_id")
    return {r["batch_id"]: r["pages"] for r in found}


def _load_page(path: Path) -> np.ndarray:
    """A spooled page, read without np.load's header parser.

    np.load parses the header with ast.literal_eval, and CPython 3.11 before 3.11.8 keeps the AST
    converter's recursion depth in one process-wide variable: worker threads loading pages at the
    same time fail at random with "SystemError: AST constructor recursion depth mismatch".
    """
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise StoreError(f"spooled page {path.name} has .npy version {version}, which this station does not read")
        size = int.from_bytes(fh.read(2 if version == (1, 0) else 4), "little")
        header = _PAGE_HEADER.fullmatch(fh.read(size).decode("latin1"))
        if header is None:
            raise StoreError(f"spooled page {path.name} is not a uint8 page image")
        shape = tuple(int(d) for d in header.groups() if d)
        image = np.fromfile(fh, np.uint8, count=int(np.prod(shape)))
    if image.size != int(np.prod(shape)):
        raise StoreError(f"spooled page {path.name} is cut short")
    return image.reshape(shape)
