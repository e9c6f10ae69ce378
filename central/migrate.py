"""Moving an archive up: copy a SQLite catalogue and its page files into another catalogue (PostgreSQL)
and blob store (an S3-compatible bucket), then check the copy — every table's row count, every blob's
SHA-256 read back from the far side, the audit log's tree size and root — before anyone switches.

Offline, not live: refused while a process holds the source catalogue open (stop every ``serve``
first). The source is opened read-only and never written. A run cut short is run again: rows already
copied stay (``ON CONFLICT DO NOTHING``), blobs already stored at their size are not sent again (the
check re-hashes them all anyway). A target holding another archive (in its catalogue or its blob store),
or this one served since, is refused.

Like backup and replication, this is a whole-archive tool that reads the source file directly: the
table-by-table copy is the one place outside ``store`` that names tables, because it names all of them.
"""

import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from quire import merkle

from .config import CentralConfig
from .errors import CentralError, ConfigError
from .problems import Problem
from .store import audit_log
from .store.blobs import BlobStore
from .store.catalogue import MIGRATIONS, CatalogueStore, rows

UPLOADER = "quire-migrate"      # whose partial uploads the copy's staged parts are, in the target store
BATCH_ROWS = 2000               # rows copied in one target transaction
CHUNK_BYTES = 1 << 20           # bytes of a blob read and sent at once
BLOB_PAGE = 1000                # blobs listed at once in the target store, looking for another archive's
BOOKKEEPING = ("_migrations",)  # each side records its own migrations; compared by name, not copied


class ArchiveInUse(CentralError):
    """A process holds the source catalogue open: migrate copies a stopped archive only."""

    exit_code = 75   # EX_TEMPFAIL: stop the processes, then run it again


class TargetNotEmpty(CentralError):
    """The target holds another archive, or this one has been served from there since."""

    exit_code = 73   # EX_CANTCREAT


def RowCountMismatch(table, source, target):
    return Problem("RowCountMismatch", f"table {table}", f"{source} row(s) in the source, {target} in the target")


def BlobNotCopied(sha, detail):
    return Problem("BlobNotCopied", f"blob {sha}", detail)


def BlobMismatch(where, expected, found):
    return Problem("BlobMismatch", where, f"expected SHA-256 {expected}, the target's bytes hash to {found}; "
                                          "delete that object and run migrate again")


def Sm3Mismatch(where, expected, found):
    return Problem("Sm3Mismatch", where, f"the source records SM3 {expected}, the target's bytes give {found}")


def AuditRootMismatch(detail):
    return Problem("AuditRootMismatch", "audit log", detail)


@dataclass
class TableCount:
    name: str
    source: int
    target: int


@dataclass
class Report:
    """What was copied and what the check found; ``ok`` when every count, hash and root agrees."""

    tables: list[TableCount] = field(default_factory=list)
    blobs: int = 0
    blobs_copied: int = 0
    bytes_copied: int = 0
    audit_size: int = 0
    audit_root: bytes = merkle.EMPTY_ROOT
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def processes_holding(path: Path) -> list[int]:
    """Ids of other processes on this machine with ``path`` open (those whose /proc we may read)."""
    try:
        wanted = os.path.realpath(path)
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == wanted:
                    found.append(int(entry.name))
                    break
            except OSError:
                continue
    return sorted(found)


def refuse_if_served(cfg: CentralConfig) -> None:
    """Refuse while any process (a ``serve``, a command in progress) has the source catalogue open."""
    holders = processes_holding(cfg.db_path)
    if holders:
        names = ", ".join(f"{pid} ({_command_of(pid)})" for pid in holders)
        raise ArchiveInUse(f"{cfg.db_path} is open in process(es) {names}: migrate copies a stopped archive only "
                           "— stop every 'quire-central serve' of this home (systemctl stop 'quire-central*'), "
                           "then run migrate again")


def _command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except OSError:
        return "?"


def open_source(cfg: CentralConfig) -> sqlite3.Connection:
    """The source catalogue, read-only, at exactly this version's migrations."""
    if not cfg.db_path.exists():
        raise ConfigError(f"no catalogue at {cfg.db_path}; --home must name the archive to copy")
    # A catalogue closed cleanly has no -wal file: opened immutable, SQLite creates none (mode=ro alone
    # would leave an empty -wal and a -shm beside it). After a crash the -wal holds committed rows, so
    # it is read through (no process holds the file: refuse_if_served checked).
    wal = cfg.db_path.with_name(cfg.db_path.name + "-wal").exists()
    conn = sqlite3.connect(f"{cfg.db_path.absolute().as_uri()}?{'mode=ro' if wal else 'immutable=1'}", uri=True,
                           check_same_thread=False)
    applied = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    known = sorted(name for name, _ in MIGRATIONS)
    if applied != known:
        conn.close()
        newer = sorted(set(applied) - set(known))
        raise ConfigError(f"{cfg.db_path} is at another schema than this Quire ("
                          + (f"it has migrations this version lacks: {', '.join(newer)}; run the newer Quire"
                             if newer else "upgrade it first: run 'quire-central info' once with this version")
                          + "); nothing was copied")
    return conn


def tables_in_order(source: sqlite3.Connection) -> list[str]:
    """The source's tables, each after every table it references (so foreign keys hold as rows arrive)."""
    names = [r[0] for r in source.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                          "'sqlite%' ORDER BY name") if r[0] not in BOOKKEEPING]
    refs = {n: {r[2] for r in source.execute(f"PRAGMA foreign_key_list({_quoted(n)})")} - {n} for n in names}
    # The audit log first: its first entry is what tells a partial copy of this archive from another one.
    ordered, placed = [], set()
    for name in sorted(names, key=lambda n: n != "audit_entries"):
        _place(name, refs, placed, ordered)
    return ordered


def _place(name: str, refs: dict, placed: set, ordered: list) -> None:
    if name in placed:
        return
    placed.add(name)
    for other in sorted(refs.get(name, ())):
        if other in refs:
            _place(other, refs, placed, ordered)
    ordered.append(name)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _count(source, table: str) -> int:
    return rows(source, f"SELECT COUNT(*) AS n FROM {_quoted(table)}")[0]["n"]


def _first_entry(source) -> bytes | None:
    found = audit_log.entries(source, 0, 1)
    return bytes(found[0]["entry"]) if found and found[0]["idx"] == 0 else None


def check_target(source: sqlite3.Connection, target: CatalogueStore, tables: list[str], target_name: str) -> None:
    """Refuse a target that holds another archive, or this one with a log longer than the source's."""
    held = {t: n for t in tables if (n := _count(target, t))}
    if not held:
        return
    first = _first_entry(target)
    if first is None or first != _first_entry(source):
        listed = ", ".join(f"{t} {n}" for t, n in sorted(held.items())[:5])
        raise TargetNotEmpty(f"{target_name} already holds another archive ({listed} row(s)"
                             f"{', …' if len(held) > 5 else ''}; its audit log does not begin with this one's): "
                             "nothing was copied — give migrate an empty database")
    source_size, target_size = audit_log.size(source), audit_log.size(target)
    if target_size > source_size:
        raise TargetNotEmpty(f"{target_name} holds this archive and has been served from since: its audit log "
                             f"has {target_size} entries, the source {source_size}; the move is done — serve from "
                             "the target (nothing was copied)")


def check_blob_target(source: sqlite3.Connection, target: BlobStore) -> None:
    """Refuse a blob store that holds page files this archive lacks: another archive's (its catalogue may be
    elsewhere). Blobs of this archive are left by a run cut short, and welcome. Every stored blob is looked
    at, a page of BLOB_PAGE listed at a time: another archive's pages may sort after a run's worth of ours."""
    listed, after = 0, ""
    while page := target.sample(BLOB_PAGE, after):
        listed += len(page)
        known = set()
        for start in range(0, len(page), 500):   # SQLite's limit on parameters is not reached
            part = page[start:start + 500]
            marks = ", ".join("?" * len(part))
            known |= {row["sha256"] for row in rows(source, f"SELECT sha256 FROM blobs WHERE sha256 IN ({marks})",
                                                    part)}
        foreign = [sha for sha in page if sha not in known]
        if foreign:
            raise TargetNotEmpty(f"{target.location()} already holds page files of another archive ({len(foreign)} "
                                 f"of the first {listed} listed are not this archive's, e.g. {foreign[0]}): nothing "
                                 "was copied — give --blobs a prefix of its own that holds nothing yet "
                                 "(s3://BUCKET/NEW-PREFIX)")
        after = page[-1]


def copy_table(source: sqlite3.Connection, target: CatalogueStore, table: str) -> int:
    """Copy every row the target lacks, in the source's order, a batch per transaction; rows read."""
    columns = [r[1] for r in source.execute(f"PRAGMA table_info({_quoted(table)})")]
    present = _target_columns(target, table)
    missing = [c for c in columns if c not in present]
    if missing:
        raise ConfigError(f"the target's table {table} lacks column(s) {', '.join(missing)}: it was made by "
                          "another Quire version; run migrate with the version that runs the source")
    select = (f"SELECT rowid AS quire_rowid, {', '.join(map(_quoted, columns))} FROM {_quoted(table)} "
              "WHERE rowid > :after ORDER BY rowid LIMIT :limit")
    insert = (f"INSERT INTO {_quoted(table)} ({', '.join(map(_quoted, columns))}) VALUES "
              f"({', '.join(f':c{i}' for i in range(len(columns)))}) ON CONFLICT DO NOTHING")
    copied, after = 0, -(1 << 63)
    while True:
        batch = source.execute(select, {"after": after, "limit": BATCH_ROWS}).fetchall()
        if not batch:
            break
        target.insert_many(insert, [{f"c{i}": v for i, v in enumerate(row[1:])} for row in batch])
        copied += len(batch)
        after = batch[-1][0]
    _after_copy(target, table, source)
    return copied


def _target_columns(target: CatalogueStore, table: str) -> set[str]:
    with target.transaction() as db:
        cursor = db.execute(f"SELECT * FROM {_quoted(table)} WHERE 1 = 0")
        names = {d[0] for d in cursor.description}
        cursor.fetchall()
    return names


def _after_copy(target: CatalogueStore, table: str, source: sqlite3.Connection) -> None:
    """Move an identity column's sequence past the ids copied in (PostgreSQL; SQLite needs nothing)."""
    if target.kind != "postgresql":
        return
    keys = [r[1] for r in source.execute(f"PRAGMA table_info({_quoted(table)})") if r[5] == 1 and r[2].upper() ==
            "INTEGER"]
    if len(keys) != 1 or len([r for r in source.execute(f"PRAGMA table_info({_quoted(table)})") if r[5]]) != 1:
        return
    with target.transaction() as db:
        db.execute(f"SELECT setval(pg_get_serial_sequence(:table, :column), MAX({_quoted(keys[0])})) "
                   f"FROM {_quoted(table)} HAVING MAX({_quoted(keys[0])}) IS NOT NULL",
                   {"table": table, "column": keys[0]})


def source_blobs(source: sqlite3.Connection) -> Iterator[dict]:
    """Every catalogued blob (sha256, bytes, sm3), by digest, read a batch at a time."""
    after = ""
    while True:
        batch = rows(source, "SELECT sha256, bytes, sm3 FROM blobs WHERE sha256 > :after ORDER BY sha256 "
                             "LIMIT :limit", {"after": after, "limit": 1000})
        if not batch:
            return
        yield from batch
        after = batch[-1]["sha256"]


def copy_blob(src: BlobStore, dst: BlobStore, sha256: str, size: int) -> tuple[int, Problem | None]:
    """Stream one blob into ``dst`` unless it is there at its size; (bytes sent, problem or None).

    The target store hashes the bytes as they arrive and keeps them only under the name they hash to;
    a cut copy resumes from the parts the target kept."""
    stored = dst.stat(sha256)
    if stored == size:
        return 0, None
    if stored is not None:
        return 0, BlobMismatch(dst.where(sha256), f"{size} bytes", f"{stored} bytes stored there")
    sent = 0
    upload = dst.open_upload(UPLOADER, sha256, size)
    try:
        with src.open(sha256) as fh:
            fh.seek(upload.size)
            while chunk := fh.read(CHUNK_BYTES):
                upload.append(upload.size, chunk)
                sent += len(chunk)
    except FileNotFoundError:
        upload.close()
        return 0, BlobNotCopied(sha256, f"the source has no file for it ({src.where(sha256)}); run "
                                        "'quire-central verify' on the source and restore it from a backup")
    except BaseException:
        upload.close()
        raise
    refused = dst.finish_many([upload])
    if sha256 in refused:
        return sent, BlobNotCopied(sha256, f"the target refused it: {refused[sha256]}")
    return sent, None


def audit_head(source) -> tuple[int, bytes]:
    """(tree size, root hash) recomputed from the stored entries, holding only the newest complete
    subtree of each height (what appending and the root need), so a log of millions fits in memory."""
    frontier: dict[int, tuple[int, bytes]] = {}

    def perfect(level: int, index: int) -> bytes:
        held = frontier[level]
        assert held[0] == index, (level, index, held[0])
        return held[1]

    size = 0
    while batch := audit_log.entries(source, size, 10_000):
        for row in batch:
            for level, index, h in merkle.completed_nodes(perfect, size, merkle.leaf_hash(bytes(row["entry"]))):
                frontier[level] = (index, h)
            size += 1
    return size, merkle.root_hash(perfect, size)


def check(source: sqlite3.Connection, target: CatalogueStore, src_blobs: BlobStore, dst_blobs: BlobStore | None,
          tables: list[str], report: Report, progress: Callable[[str], None]) -> None:
    """Compare the copy with the source: row counts, every blob re-read from the target, the log's root."""
    for table in tables:
        count = TableCount(table, _count(source, table), _count(target, table))
        report.tables.append(count)
        if count.source != count.target:
            report.problems.append(RowCountMismatch(table, count.source, count.target))
    store = dst_blobs or src_blobs
    checked = 0
    for blob in source_blobs(source):
        found = store.rehash(blob["sha256"])
        if found is None:
            report.problems.append(BlobNotCopied(blob["sha256"], f"{store.where(blob['sha256'])} is missing"))
        elif found[0] != blob["sha256"]:
            report.problems.append(BlobMismatch(store.where(blob["sha256"]), blob["sha256"], found[0]))
        elif blob["sm3"] and found[1] != blob["sm3"]:
            report.problems.append(Sm3Mismatch(store.where(blob["sha256"]), blob["sm3"], found[1]))
        checked += 1
        if checked % 1000 == 0:
            progress(f"checked {checked} blobs")
    report.blobs = checked
    source_head, target_head = audit_head(source), audit_head(target)
    latest = audit_log.latest_checkpoint(source)
    signed = (latest.tree_size, latest.root_hash) if latest else (0, merkle.EMPTY_ROOT)
    report.audit_size, report.audit_root = target_head
    if target_head != source_head:
        report.problems.append(AuditRootMismatch(
            f"the target's {target_head[0]} entries hash to {target_head[1].hex()}, the source's {source_head[0]} "
            f"to {source_head[1].hex()}"))
    elif source_head != signed:
        report.problems.append(AuditRootMismatch(
            f"the source's entries ({source_head[0]}, root {source_head[1].hex()}) do not match its latest signed "
            f"checkpoint ({signed[0]}, {signed[1].hex()}): run 'quire-central audit verify' on the source"))
    elif target_head[0]:
        stored = merkle.root_hash(_stored_nodes(target), target_head[0])
        if stored != target_head[1]:
            report.problems.append(AuditRootMismatch(f"the target's stored tree nodes give root {stored.hex()}, its "
                                                     f"entries {target_head[1].hex()}"))


def _stored_nodes(source):
    def perfect(level: int, index: int) -> bytes:
        found = rows(source, "SELECT hash FROM audit_nodes WHERE level = :level AND idx = :idx",
                     {"level": level, "idx": index})
        if not found:
            raise audit_log.AuditBroken(f"the target's audit log lacks node ({level}, {index})")
        return bytes(found[0]["hash"])
    return perfect


def migrate(cfg: CentralConfig, target: CatalogueStore, target_name: str, src_blobs: BlobStore,
            dst_blobs: BlobStore | None, progress: Callable[[str], None] = lambda line: None) -> Report:
    """Copy the stopped archive at ``cfg.home`` into ``target`` (and its blobs into ``dst_blobs``; None:
    they stay where they are), then check the copy. Refusals raise before anything is written."""
    refuse_if_served(cfg)
    source = open_source(cfg)
    try:
        tables = tables_in_order(source)
        check_target(source, target, tables, target_name)
        if dst_blobs is not None:
            check_blob_target(source, dst_blobs)
        report = Report()
        if dst_blobs is not None:
            for n, blob in enumerate(source_blobs(source), 1):
                sent, problem = copy_blob(src_blobs, dst_blobs, blob["sha256"], blob["bytes"])
                report.bytes_copied += sent
                report.blobs_copied += bool(sent)
                if problem:
                    report.problems.append(problem)
                if n % 1000 == 0:
                    progress(f"blobs: {n} done, {report.blobs_copied} sent ({report.bytes_copied} bytes)")
            progress(f"blobs: {report.blobs_copied} sent ({report.bytes_copied} bytes), the rest already there")
        for table in tables:
            if _count(target, table) == _count(source, table):
                continue   # copied by an earlier run
            copied = copy_table(source, target, table)
            progress(f"table {table}: {copied} row(s) copied")
        check(source, target, src_blobs, dst_blobs, tables, report, progress)
        return report
    finally:
        source.close()
