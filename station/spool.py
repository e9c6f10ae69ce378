"""The capture spool: each raw page kept outside the process the moment it is scanned, until its final page is stored.

A spooled page is an uncompressed ``.npy`` file (written to a temporary name, then renamed) plus a
row in the station's SQLite, committed before the scanner is asked for the next page (on a duplex
feed, the next sheet: the front's file is written at once, so the station holds no front in memory
while the back is scanned, and the sheet's two rows are committed together). Neither is
flushed to the disk: the file lives in the kernel's page cache, which outlives a killed or crashed
station process but not a power cut, and a page is stored and reported within seconds, so most
spool files are deleted before the kernel ever writes them (an SD card cannot take 60 MB/s of
fsynced raw pages). Each row names the boot it was spooled in; after a power cut or reboot the
pages spooled before it are dropped, and the batch resumes at the first sheet not stored, which
the operator is told to feed again. The page store itself is flushed page by page, so every page
reported stored is stored. The row is deleted once the processed page is in the page store; a
page found in both after a crash is stored already and only its spool entry is cleared.
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
from typing import NoReturn

import numpy as np

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
    ("spool_0004_boot", [
        # The boot a page was spooled in (its file is not flushed); NULL: spooled fsynced, before this column.
        "ALTER TABLE spool ADD COLUMN boot_id TEXT",
        # Batches fed as duplex sheets, so the sheet to feed again can be named.
        "CREATE TABLE spool_duplex (batch_id TEXT PRIMARY KEY)",
    ]),
]
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_SUFFIX = ".npy"
# The header np.save writes for a page (uint8, C order): H×W grey or H×W×3 colour.
_PAGE_HEADER = re.compile(r"\{'descr': '\|u1', 'fortran_order': False, 'shape': \((\d+), (\d+)(?:, (3))?\), \}\s*")


@dataclass(frozen=True)
class Spooled:
    """One page waiting in the spool."""

    batch_id: str
    n: int
    path: Path
    side: str                   # "front" or "back": a back follows its sheet's front


@dataclass(frozen=True)
class Staged:
    """A raw page written to its spool file, not yet named by a row: what the row will say, without the pixels."""

    path: Path
    nbytes: int
    dpi: int
    side: str
    origin: str
    area_mm: tuple[float, float] | None
    dpi_source: str


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
        # A spool row may be lost with the power (its page is fed again then); the database may not.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.boot = boot_id()
        # The capture thread adds and the store thread clears: one connection, used by one at a time.
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()
        os.close(self._owner)

    def stage(self, batch_id: str, n: int, page: RawPage) -> Staged:
        """Write page ``n``'s file now (temporary name, then renamed; not flushed) and keep only its details:
        a duplex sheet's front waits for its back on the disk, not in memory. No row names the file
        until ``put`` commits the sheet, so a run that dies first leaves a file ``sweep`` deletes."""
        final = self.dir / f"{batch_id}-{n:06d}{_SUFFIX}"
        try:
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{batch_id}-{n:06d}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(page.image), allow_pickle=False)
                os.replace(tmp, final)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            self._refuse([final], exc, page.image.nbytes)
        return Staged(final, page.image.nbytes, page.dpi, page.side, page.origin, page.area_mm, page.dpi_source)

    def put(self, batch_id: str, n: int, pages: list[RawPage | Staged]) -> list[Path]:
        """Spool raw pages numbered from ``n`` together (files renamed into place, then their rows committed
        in one transaction, neither flushed): a duplex sheet's two sides are spooled both or neither.
        A page ``stage`` already wrote is only named."""
        staged: list[Staged] = []
        try:
            for i, page in enumerate(pages):
                staged.append(page if isinstance(page, Staged) else self.stage(batch_id, n + i, page))
            with self._lock, atomic(self.db):
                for i, page in enumerate(staged):
                    self.db.execute("INSERT OR REPLACE INTO spool VALUES (?,?,?,?,?,?,?,?,?,?)",
                                    [batch_id, n + i, page.path.name, page.dpi, page.side, page.origin, utcnow(),
                                     json.dumps(list(page.area_mm)) if page.area_mm else None, page.dpi_source,
                                     self.boot])
                if len(pages) == 2:
                    self.db.execute("INSERT OR IGNORE INTO spool_duplex VALUES (?)", [batch_id])
        except (OSError, sqlite3.OperationalError, StationDiskFull) as exc:
            self._refuse([self.dir / f"{batch_id}-{n + i:06d}{_SUFFIX}" for i in range(len(pages))], exc,
                         max(page.nbytes if isinstance(page, Staged) else page.image.nbytes for page in pages))
        return [page.path for page in staged]

    def _refuse(self, finals: list[Path], exc: BaseException, largest: int) -> NoReturn:
        """Re-raise a failed spool write; a full disk as StationDiskFull, its pages' files deleted (they are
        scanned again)."""
        if isinstance(exc, StationDiskFull):
            for final in finals:
                final.unlink(missing_ok=True)
            raise exc
        # numpy reports a short write without an errno, so the free space itself is asked too.
        if (getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in str(exc)
                or shutil.disk_usage(self.dir).free < largest):
            for final in finals:
                final.unlink(missing_ok=True)
            raise StationDiskFull(str(exc)) from None
        raise exc

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
            found = rows(self.db, "SELECT batch_id, n, file, side FROM spool ORDER BY batch_id, n")
        return [Spooled(r["batch_id"], r["n"], self.dir / r["file"], r["side"]) for r in found]

    def forget_lost(self) -> dict[str, list[int]]:
        """Drop the pages spooled before this boot and not stored since (a power cut or reset took their
        files from the page cache); their numbers, per batch."""
        lost_where = ("FROM spool WHERE boot_id IS NOT NULL AND boot_id != ? AND NOT EXISTS"
                      " (SELECT 1 FROM pages p WHERE p.batch_id = spool.batch_id AND p.n = spool.n)")
        with self._lock, atomic(self.db):
            found = rows(self.db, f"SELECT batch_id, n, file {lost_where} ORDER BY batch_id, n", [self.boot])
            self.db.execute(f"DELETE {lost_where}", [self.boot])
        lost: dict[str, list[int]] = {}
        for r in found:
            (self.dir / r["file"]).unlink(missing_ok=True)
            lost.setdefault(r["batch_id"], []).append(r["n"])
        return lost

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
    # Pages spooled before this boot are not counted: a power cut or reset took them (the next scan drops them).
    this_boot = (" AND (s.boot_id IS NULL OR s.boot_id = ?)", [boot_id()])
    if "boot_id" not in {c["name"] for c in rows(db, "PRAGMA table_info(spool)")}:
        this_boot = ("", [])  # no scan since the upgrade: every page there was spooled fsynced
    found = rows(db, "SELECT batch_id, COUNT(*) AS pages FROM spool s WHERE NOT EXISTS"
                     " (SELECT 1 FROM pages p WHERE p.batch_id = s.batch_id AND p.n = s.n)"
                     f"{this_boot[0]} GROUP BY batch_id", this_boot[1])
    return {r["batch_id"]: r["pages"] for r in found}


def feed_again(db, batch_id: str, pages: int) -> str:
    """What the operator feeds next into a batch that holds ``pages`` pages: the sheet and its first page."""
    duplex = one(db, "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'spool_duplex'") and one(
        db, "SELECT 1 AS x FROM spool_duplex WHERE batch_id = ?", [batch_id])
    if duplex:
        return f"feed again from sheet {pages // 2 + 1} (page {pages + 1}, its front)"
    return f"feed again from sheet {pages + 1} (page {pages + 1})"


def boot_id() -> str:
    """This boot of the machine (the kernel's random boot id): the page cache outlives nothing else."""
    return _BOOT_ID.read_text().strip()


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
