"""Offline backups of the archive with restic: encrypted, deduplicated snapshots of a consistent
catalogue and the blobs as they lie, and their restore into a fresh home.

Consistency comes from the order: the catalogue is copied first with SQLite's online backup API (one
read transaction, so one committed state), then restic reads the blobs. A blob is in the store before
the catalogue row that names it is committed, and blobs are never changed or removed, so every blob the
copied catalogue names is there when restic reads the store; blobs that arrived later are only extra.

Backups and restores are host jobs (a systemd timer, an operator at the console): whoever runs them
reads the archive's files directly, so they act as the host's user, named in the audit log.
"""

import fcntl
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from quire import keys
from quire.db import utcnow

from . import audit
from .archive import Archive
from .errors import CentralError
from .store import audit_log, blob_index

FORMAT = "quire.backup/1"
KNOWN_FORMATS = (FORMAT,)
STAGE = ".backup-stage"           # inside the home: the catalogue's copy and the backup's index
INDEX = "quire-backup.json"
TAG = "quire-central"
# The live catalogue (copied through SQLite instead), partial uploads, and our own scratch.
LOCK = ".backup.lock"
SKIPPED = {"central.db", "central.db-wal", "central.db-shm", "uploads", STAGE, LOCK, ".restic-cache"}


class BackupError(CentralError):
    """restic or the backup repository refused; the message says what to do."""

    exit_code = 1


@dataclass(frozen=True)
class Snapshot:
    id: str
    files: int
    bytes_added: int
    blobs: int
    audit_size: int


def password_file(given: str | os.PathLike | None, configured: Path | None = None) -> Path:
    """The restic password file: ``--password-file``, else $RESTIC_PASSWORD_FILE, else the config's;
    it must exist and be readable by its owner only (0600)."""
    raw = given or os.environ.get("RESTIC_PASSWORD_FILE") or configured
    if not raw:
        raise BackupError("no password for the backup repository: give --password-file FILE (mode 0600), set "
                          "RESTIC_PASSWORD_FILE, or set backup_password_file in central.toml")
    path = Path(raw)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise BackupError(f"cannot read the backup password file {path}: {exc.strerror}; "
                          "create it with one line of password, mode 0600") from None
    if mode & 0o077:
        raise BackupError(f"the backup password file {path} is readable by others; run: chmod 600 {path}")
    return path


def shown(repo: str) -> str:
    """The repository as it may be logged: a URL's user and password left out."""
    parts = urlsplit(repo.split(":", 1)[1] if repo.startswith("rest:") else repo)
    if parts.password is None and parts.username is None:
        return repo
    host = parts.hostname or ""
    cleaned = urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))
    return ("rest:" if repo.startswith("rest:") else "") + cleaned


def backup(archive: Archive, repo: str, secret: Path, init: bool = False, after_catalogue=None) -> Snapshot:
    """Snapshot the archive into the restic repository ``repo`` (created first when ``init``); log it.

    ``after_catalogue`` is called once the catalogue is copied and before restic reads anything (tests
    write to the archive there, as a station syncing during a backup would).
    """
    home = archive.config.home
    if archive.config.blobs:
        raise BackupError(f"the blobs are kept in {archive.config.blobs}, not in {home}: restic here backs up an "
                          "archive whose blobs are in its home. Keep the bucket's copies with the object store's own "
                          "versioning and replication, or an off-site copy of the archive")
    with _only_backup(home):
        return _backup(archive, repo, secret, init, after_catalogue)


def _backup(archive: Archive, repo: str, secret: Path, init: bool, after_catalogue) -> Snapshot:
    home = archive.config.home
    stage = home / STAGE
    shutil.rmtree(stage, ignore_errors=True)   # a stage an interrupted backup left
    stage.mkdir(mode=0o700)
    try:
        index = _copy_catalogue(archive, stage / "central.db")
        (stage / INDEX).write_text(json.dumps(index, indent=1) + "\n")
        if after_catalogue:
            after_catalogue()
        if init and not _exists(repo, secret, home):
            _restic(["init"], repo, secret, home)
        paths = sorted(p.name for p in home.iterdir() if p.name not in SKIPPED) + [STAGE]
        tags = ["--tag", TAG, "--tag", _archive_tag(archive)]
        out = _restic(["backup", "--json", "--quiet", "--host", socket.gethostname(), *tags,
                       *_excludes(archive), *paths], repo, secret, home)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    summary = next((m for m in map(_json, out.splitlines()) if m.get("message_type") == "summary"), None)
    if summary is None:
        raise BackupError(f"restic gave no summary of the backup to {shown(repo)}; run 'restic -r REPO snapshots' "
                          "to see whether it was saved, and run the backup again")
    snap = Snapshot(summary["snapshot_id"], summary.get("total_files_processed", 0), summary.get("data_added", 0),
                    index["blobs"], index["audit_size"])
    with archive.catalogue.transaction() as db:
        audit.record(db, archive, "archive.backup", snap.id, {
            "repository": shown(repo), "snapshot": snap.id, "blobs": snap.blobs, "audit_size": snap.audit_size,
            "files": snap.files, "bytes_added": snap.bytes_added}, by=audit.local_user())
    return snap


def check(archive: Archive, repo: str, secret: Path, period_days: int, today: date | None = None) -> str:
    """Check the repository's structure and re-read tonight's part of its data (1/``period_days`` of it,
    a different part each night), so the copy to restore from is read whole within the period; log it.
    Returns the part read ("K/N")."""
    n = max(1, period_days)
    part = f"{(today or date.today()).toordinal() % n + 1}/{n}"
    with _only_backup(archive.config.home):
        proc = _run(["check", f"--read-data-subset={part}"], repo, secret, archive.config.home)
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    found = [line.strip() for line in said if any(word in line.lower() for word in
                                                  ("pack", "error", "fail", "damaged", "does not match"))
             and not line.lower().startswith(("load ", "check ", "read ", "no errors"))]
    with archive.catalogue.transaction() as db:
        audit.record(db, archive, "archive.backup_check", shown(repo), {
            "repository": shown(repo), "part": part, "ok": proc.returncode == 0, "problems": found[:20]},
            by=audit.local_user())
    if proc.returncode != 0:
        refused = _refused(proc, repo)
        if "wrong password" in proc.stderr or "Is there a repository" in proc.stderr:
            raise refused
        detail = "; ".join(found[:3]) or (said[-1] if said else f"restic exit status {proc.returncode}")
        raise BackupError(f"the backup repository {shown(repo)} failed its check (data part {part}): {detail}. "
                          "Its snapshots may not restore: take a backup into another repository now, then "
                          "repair or replace this one (restic -r REPO check --read-data names every damaged pack)")
    return part


@contextmanager
def _only_backup(home: Path):
    """Hold the archive's backup lock (one backup at a time shares the stage) or refuse."""
    fd = os.open(home / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup of {home} is running; wait for it to finish "
                              "(systemctl status quire-backup) and run this one again") from None
        yield
    finally:
        os.close(fd)


def restore(repo: str, secret: Path, to: Path, snapshot: str = "latest") -> dict:
    """Restore a snapshot into the new home ``to`` (absent or empty); return the backup's index."""
    to = Path(to)
    if to.exists() and any(to.iterdir()):
        raise BackupError(f"{to} is not empty; restore into a new directory (the archive there is left alone)")
    to.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=to.parent, prefix=f".{to.name}.restoring."))
    try:
        args = ["restore", snapshot, "--target", str(scratch)]
        if snapshot == "latest":
            args += ["--tag", TAG]
        _restic(args, repo, secret, scratch)
        stage = scratch / STAGE
        try:
            index = json.loads((stage / INDEX).read_text())
        except (OSError, ValueError):
            raise BackupError(f"snapshot {snapshot} of {shown(repo)} is not a Quire archive's backup "
                              f"(no {STAGE}/{INDEX}); list the archive's with 'restic -r REPO snapshots "
                              f"--tag {TAG}'") from None
        if index.get("format") not in KNOWN_FORMATS:
            raise BackupError(f"backup format {index.get('format')!r} is unknown to this version (knows "
                              f"{', '.join(KNOWN_FORMATS)}); restore with the Quire version that made it")
        os.replace(stage / "central.db", scratch / "central.db")
        shutil.rmtree(stage)
        scratch.chmod(0o700)
        if to.exists():
            to.rmdir()
        os.replace(scratch, to)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return index


def _copy_catalogue(archive: Archive, target: Path) -> dict:
    """Copy the catalogue in one read transaction; return what the copy holds."""
    copy = sqlite3.connect(target)
    try:
        # Every page in one step: one committed state. A PostgreSQL catalogue refuses, naming pg_dump.
        archive.catalogue.copy_to(copy)
        blobs = blob_index.count(copy)
        size = audit_log.size(copy)
        copy.execute("PRAGMA journal_mode = DELETE")   # one file to back up, no WAL beside it
    finally:
        copy.close()
    os.chmod(target, 0o600)
    return {"format": FORMAT, "at": utcnow(), "home": str(archive.config.home),
            "archive_key": keys.fingerprint(archive.public_key), "blobs": blobs, "audit_size": size}


# The one place that knows the blob store lies in the home as files (restic reads and restores them there).

def _excludes(archive: Archive) -> list[str]:
    """The blob store's scratch folder: files not yet renamed into place."""
    return ["--exclude", str(archive.config.blobs_dir.resolve() / "tmp")]


def blob_in_snapshot(archive: Archive, sha256: str) -> str:
    """A restic --include pattern for one blob's file in this archive's snapshots."""
    return f"/{archive.config.blobs_dir.name}/{sha256[:2]}/{sha256}"


def _archive_tag(archive: Archive) -> str:
    return "archive-" + keys.fingerprint(archive.public_key).split(":", 1)[-1][:16]


def _exists(repo: str, secret: Path, cwd: Path) -> bool:
    proc = _run(["cat", "config"], repo, secret, cwd)
    if proc.returncode == 0:
        return True
    if "Is there a repository at the following location?" in proc.stderr:
        return False
    raise _refused(proc, repo)


def _restic(args: list[str], repo: str, secret: Path, cwd: Path) -> str:
    proc = _run(args, repo, secret, cwd)
    if proc.returncode != 0:
        raise _refused(proc, repo)
    return proc.stdout


def _run(args: list[str], repo: str, secret: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND")}
    env.update(RESTIC_REPOSITORY=repo, RESTIC_PASSWORD_FILE=str(Path(secret).resolve()))
    # restic's cache: $RESTIC_CACHE_DIR (the systemd unit's cache directory), else one beside the archive;
    # a restore reads once and keeps none (it would land in the new home).
    if args[0] == "restore":
        cache = ["--no-cache"]
    else:
        cache = ["--cache-dir", str(cwd / ".restic-cache")] if "RESTIC_CACHE_DIR" not in env else []
    try:
        return subprocess.run(["restic", "--quiet", *cache, *args], cwd=cwd, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise BackupError("restic is not installed; install Debian's package: apt-get install restic") from None


def _refused(proc: subprocess.CompletedProcess, repo: str) -> BackupError:
    said = proc.stderr.strip()
    if "wrong password" in said:
        return BackupError(f"the backup repository {shown(repo)} refused the password: wrong password, or a key "
                           "of another repository; give the password file this repository was created with")
    if "Is there a repository at the following location?" in said:
        return BackupError(f"there is no backup repository at {shown(repo)}; create it with "
                           "'quire-central backup --repo REPO --init' (keep the password file safe: without it "
                           "the backups cannot be read)")
    last = said.splitlines()[-1] if said else f"exit status {proc.returncode}"
    return BackupError(f"restic failed on {shown(repo)}: {last}")


def _json(line: str) -> dict:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
