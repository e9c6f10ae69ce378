"""Freeing disk: page files of committed bundles go once their retention has passed."""

import json
from datetime import datetime, timedelta, timezone

from quire.db import atomic, rows

from .home import Station


def purge(station: Station, retention_days: float | None = None, now: datetime | None = None) -> tuple[int, int]:
    """Delete page files of bundles committed more than ``retention_days`` ago; returns (bundles, files).

    Only bundles with a verified receipt are touched; a file still used by a page of any bundle not
    yet purged (the same image in another material) is kept.
    """
    days = station.config.retention_days if retention_days is None else retention_days
    cutoff = ((now or datetime.now(timezone.utc)) - timedelta(days=days)).isoformat(timespec="milliseconds")
    cutoff = cutoff.replace("+00:00", "Z")
    due = rows(station.store.db, "SELECT id, batch_id FROM bundles WHERE state = 'committed'"
               " AND receipt IS NOT NULL AND committed_at <= ?", [cutoff])
    files = 0
    for bundle in due:
        with atomic(station.store.db):
            station.store.db.execute("UPDATE bundles SET state = 'purged' WHERE id = ?", [bundle["id"]])
        for page in station.store.pages(bundle["batch_id"]):
            in_use = rows(station.store.db,
                          "SELECT 1 FROM pages p JOIN batches t ON t.id = p.batch_id"
                          " LEFT JOIN bundles b ON b.batch_id = t.id"
                          " WHERE p.sha256 = ? AND (b.state IS NULL OR b.state != 'purged') LIMIT 1",
                          [page["sha256"]])
            path = station.store.page_path(page["sha256"], page["media_type"])
            if not in_use and path.exists():
                path.unlink()
                files += 1
            files += _purge_master(station, json.loads(page["record_json"]).get("master"))
        files += _purge_cover_sheet(station, bundle["batch_id"])
    return len(due), files


def _purge_cover_sheet(station: Station, batch_id: str) -> int:
    """Delete the images of the cover sheet the batch was split at, both sides (its evidence, now in the archive)."""
    batch = rows(station.store.db, "SELECT material_json FROM batches WHERE id = ?", [batch_id])
    sheet = json.loads(batch[0]["material_json"]).get("cover_sheet") if batch else None
    if not sheet:
        return 0
    return sum(_purge_sheet_side(station, side) for side in [sheet] + ([sheet["back"]] if sheet.get("back") else []))


def _purge_sheet_side(station: Station, sheet: dict) -> int:
    in_use = rows(station.store.db,
                  "SELECT 1 FROM batches t LEFT JOIN bundles b ON b.batch_id = t.id"
                  " WHERE instr(t.material_json, ?) AND (b.state IS NULL OR b.state != 'purged') LIMIT 1",
                  [sheet["sha256"]])
    path = station.store.page_path(sheet["sha256"], sheet["media_type"])
    if in_use or not path.exists():
        return 0
    path.unlink()
    return 1


def _purge_master(station: Station, master: dict | None) -> int:
    """Delete a page's preservation master unless a page of a bundle not yet purged keeps it too."""
    if not master:
        return 0
    in_use = rows(station.store.db,
                  "SELECT 1 FROM pages p JOIN batches t ON t.id = p.batch_id"
                  " LEFT JOIN bundles b ON b.batch_id = t.id"
                  " WHERE instr(p.record_json, ?) AND (b.state IS NULL OR b.state != 'purged') LIMIT 1",
                  [master["sha256"]])
    path = station.store.page_path(master["sha256"], master["media_type"])
    if in_use or not path.exists():
        return 0
    path.unlink()
    return 1
