"""Fixity audits: each night a share of the blobs is re-read and re-hashed (SHA-256, and SM3 where
recorded) so that every blob is read once within ``scrub_period_days``; each run is logged.

Where a run got to is the audit log's last ``blobs.scrub`` entry: blobs are taken in the order of their
SHA-256 after the last one checked, and a cycle ends when the last digest is passed. Each run takes
its share of what the cycle has left, spread over the nights the period has left (counted in runs, or
in days where more days than runs have passed), so a missed night is made up. A blob stored behind the
cursor was hashed as it arrived and is read in the next cycle. A blob found damaged is read again every
night, and every run fails, until it is restored.
"""

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone


from . import audit
from .archive import Archive
from .backup import blob_in_snapshot, shown
from .store import audit_log, blob_index, materials

EVENT = "blobs.scrub"
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Damage:
    """A blob whose bytes are gone or no longer what was stored, where it is used, and where to get it back."""

    sha256: str
    problem: str
    used_by: tuple[str, ...]
    restore_from: str

    def __str__(self) -> str:
        used = "; ".join(self.used_by) if self.used_by else "no catalogued page (an earlier version's or unused)"
        return f"DAMAGED blob {self.sha256}: {self.problem}. It holds {used}. {self.restore_from}"


@dataclass
class ScrubReport:
    cycle_started: str
    first: str | None = None   # the first and last digests this run read
    last: str | None = None
    blobs: int = 0
    bytes: int = 0
    left_in_cycle: int = 0
    cycle_done: bool = False
    rechecked: int = 0           # blobs found damaged before, read again
    damaged: list[Damage] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)   # blobs found damaged before that are good again

    @property
    def ok(self) -> bool:
        return not self.damaged

    def status_line(self) -> str:
        """One line for systemd's status and the journal."""
        read = f"{self.blobs} blob(s), {self.bytes / 1e6:.1f} MB re-hashed"
        where = "cycle complete" if self.cycle_done else f"{self.left_in_cycle} left this cycle"
        if self.restored:
            where += f", {len(self.restored)} damaged blob(s) restored"
        if self.ok:
            return f"scrub OK: {read}, {where}"
        return f"scrub FOUND {len(self.damaged)} DAMAGED blob(s) (first {self.damaged[0].sha256[:16]}): {read}, {where}"


def position(archive: Archive) -> dict:
    """Where the scrub stands: the cycle's start, the last digest read (None at a cycle's start), the runs
    this cycle, and the blobs the last run found damaged (read again each night until they are restored)."""
    row = audit_log.newest(archive.catalogue, EVENT)
    if row is None:
        return {"cycle_started": None, "after": None, "runs": 0, "open": []}
    entry = _parse(row["entry"])
    still = [d["sha256"] for d in entry.get("damaged", [])]
    if entry.get("cycle_done"):
        return {"cycle_started": None, "after": None, "runs": 0, "open": still}
    return {"cycle_started": entry.get("cycle_started"), "after": entry.get("last"), "runs": entry.get("run", 0),
            "open": still}


def scrub(archive: Archive, period_days: int, everything: bool = False, now: datetime | None = None) -> ScrubReport:
    """Re-hash tonight's share of the blobs (``everything``: all the cycle has left); log the run."""
    now = now or datetime.now(timezone.utc)
    where = position(archive)
    # A new cycle starts at this run's own time (not a moment later), so the nights counted from it are whole.
    started = where["cycle_started"] or now.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
    after = where["after"] or ""
    left = blob_index.count_after(archive.catalogue, after)
    nights_left = max(1, period_days - max(where["runs"], _days_since(started, now)))
    share = left if everything else math.ceil(left / nights_left)
    rows = blob_index.after(archive.catalogue, after, share)
    report = ScrubReport(cycle_started=started)
    share_shas = {row["sha256"] for row in rows}
    again = [r for r in blob_index.some(archive.catalogue, where["open"]) if r["sha256"] not in share_shas]
    for row in again:   # damage found before: the alarm stands until the blob is restored
        problem = check(archive, row)
        report.rechecked += 1
        if problem:
            report.damaged.append(_damage(archive, row["sha256"], problem))
        else:
            report.restored.append(row["sha256"])
    for row in rows:
        problem = check(archive, row)
        report.blobs += 1
        report.bytes += row["bytes"]
        report.first = report.first or row["sha256"]
        report.last = row["sha256"]
        if problem:
            report.damaged.append(_damage(archive, row["sha256"], problem))
    report.left_in_cycle = left - len(rows)
    report.cycle_done = report.left_in_cycle == 0
    with archive.catalogue.transaction() as db:
        audit.record(db, archive, EVENT, "blobs", {
            "cycle_started": started, "run": where["runs"] + 1, "period_days": period_days,
            "first": report.first, "last": report.last,
            "blobs": report.blobs, "bytes": report.bytes, "left_in_cycle": report.left_in_cycle,
            "cycle_done": report.cycle_done, "rechecked": report.rechecked, "restored": report.restored,
            "damaged": [{"sha256": d.sha256, "problem": d.problem, "used_by": list(d.used_by)}
                        for d in report.damaged]}, by=audit.local_user())
    return report


def _damage(archive: Archive, sha256: str, problem: str) -> Damage:
    return Damage(sha256, problem, used_by(archive, sha256), restore_hint(archive, sha256))


def check(archive: Archive, row: dict) -> str | None:
    """What is wrong with one stored blob (None: nothing), read once through the blob store."""
    digests = archive.blobs.rehash(row["sha256"], CHUNK_BYTES)
    if digests is None:
        return "its file is gone"
    found, found_sm3 = digests
    if found != row["sha256"]:
        return f"its bytes now hash to SHA-256 {found} (changed, cut short or replaced)"
    if row["sm3"] is not None and found_sm3 != row["sm3"]:
        return f"its SM3 is {found_sm3}, not the recorded {row['sm3']}"
    return None


def used_by(archive: Archive, sha256: str) -> tuple[str, ...]:
    """The dossiers, materials and pages that hold this blob, now and in earlier versions."""
    places = [f"{r['archive_no']} {r['item']} page {r['n']}"
              for r in materials.places_of_blob(archive.catalogue, sha256)]
    for r in materials.versions_naming(archive.catalogue, sha256):
        places += [f"{r['archive_no']} {r['item']} version {r['version']} page {n}"
                   for n, sha, _ in _parse(r["pages"]) if sha == sha256]
    return tuple(places)


def restore_hint(archive: Archive, sha256: str) -> str:
    """Which copy to restore the blob from, and how."""
    cfg, ways = archive.config, []
    if cfg.backup_repo and not cfg.blobs:   # restic holds blobs kept in the home (backup.py)
        ways.append(f"the backup repository {shown(cfg.backup_repo)} (restic -r {shown(cfg.backup_repo)} restore "
                    f"latest --tag quire-central --include {blob_in_snapshot(archive, sha256)} --target DIR, "
                    "then put the file back in its place)")
    if cfg.offsite_copy:
        ways.append(f"the off-site copy {cfg.offsite_copy}")
    if not ways:
        return ("No backup repository or off-site copy is configured (backup_repo, offsite_copy in central.toml): "
                "restore it from wherever this archive is copied, then run 'quire-central verify'.")
    return "Restore it from " + " or ".join(ways) + ", then run 'quire-central verify'."


def _days_since(started: str, now: datetime) -> int:
    begun = datetime.fromisoformat(started.replace("Z", "+00:00"))
    if begun.tzinfo is None:
        begun = begun.replace(tzinfo=timezone.utc)
    return (now - begun).days


def _parse(data):
    return json.loads(bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else data)
