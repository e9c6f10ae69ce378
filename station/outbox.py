"""The outbox: sealing a finished batch into a signed bundle, and each bundle's sync state.

States: sealed → uploading → committed (receipt stored) → purged; or rejected, with the central
service's reasons, until an operator acts (`quire-station outbox retry` queues it again).
"""

import json
import socket

from quire import manifest as manifest_format
from quire.db import atomic, one, rows, utcnow

from .errors import StoreError
from .store import Store

PENDING = ("sealed", "uploading")


class PageCountMismatch(StoreError):
    """The pages scanned are not as many as the directory lists; the batch waits in review, nothing lost."""

    exit_code = 7


def seal_batch(store: Store, batch_id: str, station_id: str, key, review: bool = False,
               confirmation: dict | None = None) -> str | None:
    """Sign the manifest of a finished batch and queue it; returns the bundle id.

    A batch scanned to be reviewed first is kept open in 'review' (None is returned) unless ``review`` says
    the operator is sealing it now. A page count that differs from the dossier's directory keeps the batch
    in review too, and raises, until the operator confirms it with a ``confirmation`` ({reason, operator}).
    """
    batch = one(store.db, "SELECT * FROM batches WHERE id = ?", [batch_id])
    if batch is None:
        raise StoreError(f"no batch {batch_id}")
    if batch["state"] == "sealed":
        raise StoreError(f"{batch['archive_no']} {batch['item']} is sealed already; nothing changes after sealing")
    pages = store.pages(batch_id)
    if not pages:
        raise StoreError(f"batch {batch_id} has no pages; nothing to seal")
    if batch["hold_for_review"] and not review:
        store.hold(batch_id, f"kept open for review: {len(pages)} pages; seal it when checked "
                             f"('quire-station seal {batch['archive_no']} {batch['item']}')")
        return None
    blank = sum(1 for p in pages if json.loads(p["record_json"]).get("blank"))
    count_check = _count_check(store, batch, len(pages), blank, confirmation)
    ended_at = utcnow()
    material = json.loads(batch["material_json"])
    manifest = {
        "station_id": station_id,
        "station_host": socket.gethostname(),
        "created_at": ended_at,
        "batch": {
            "id": batch["id"],
            "operator": batch["operator"],
            "source": batch["source"],
            "started_at": batch["started_at"],
            "ended_at": ended_at,
        },
        "dossier": json.loads(batch["dossier_json"]),
        "material": dict(material, page_count=len(pages)),
        "pages": [
            {
                "n": p["n"],
                "sha256": p["sha256"],
                "bytes": p["bytes"],
                "media_type": p["media_type"],
                "width_px": p["width_px"],
                "height_px": p["height_px"],
                "dpi": p["dpi"],
                "colour": p["colour"],
                "captured_at": p["captured_at"],
                "record": json.loads(p["record_json"]),
            }
            for p in pages
        ],
    }
    edits = store.edits(batch_id)
    if edits:
        manifest["page_edits"] = [{k: e[k] for k in ("action", "n", "sha256", "removed_sha256", "reason", "operator",
                                                     "at") if e[k] is not None} for e in edits]
    if count_check:
        manifest["count_check"] = count_check
    signed = manifest_format.seal(manifest, key, _format([page["record"] for page in manifest["pages"]]))
    with atomic(store.db):
        store.db.execute(
            "INSERT INTO bundles (id, batch_id, manifest, signature, state, created_at)"
            " VALUES (?, ?, ?, ?, 'sealed', ?)",
            [signed.bundle_id, batch_id, signed.data, signed.signature, ended_at],
        )
        store.db.execute("UPDATE batches SET state = 'sealed', ended_at = ? WHERE id = ?", [ended_at, batch_id])
    return signed.bundle_id


def _count_check(store: Store, batch: dict, found: int, blank: int, confirmation: dict | None) -> dict | None:
    """The page count against the directory, with the operator's confirmation when they differ; a difference
    not confirmed puts the batch in review and raises.

    A directory's 页数 counts the pages with something on them, so the count matches when it equals the
    pages scanned, or those not flagged blank (the empty backs of a duplex feed, kept and flagged).
    """
    entry = store.directory_entry(batch["archive_no"], batch["item"])
    if entry is None:
        return None
    check = {"expected": entry["pages"], "found": found, "blank": blank, "source": entry["source"]}
    if manifest_format.count_matches(check):
        return check
    if confirmation is None and batch["count_confirmation"]:
        kept = json.loads(batch["count_confirmation"])
        if kept.get("found") == found:      # confirmed for this very count, not for one before a rescan
            confirmation = kept
    if confirmation is None:
        where = f"{batch['archive_no']} {batch['item']}"
        flagged = f" ({blank} flagged blank)" if blank else ""
        message = (f"{where}: {found} pages scanned{flagged} but the directory lists {entry['pages']} — the batch is kept "
                   f"open for review, nothing is lost: feed the missing sheets and scan {where} again, or fix "
                   f"pages with 'quire-station review', or, when the directory is wrong, confirm the count with "
                   f"'quire-station seal {batch['archive_no']} {batch['item']} --confirm-count \"REASON\"'")
        store.hold(batch["id"], message)
        raise PageCountMismatch(message)
    check["confirmation"] = {k: confirmation[k] for k in ("reason", "operator", "at")}
    return check


def _format(records: list[dict]) -> str:
    """quire.bundle/2, or /1 for a batch with pages stored before the station was upgraded to /2 (resumed
    after the upgrade): what the colour guard measured on those pages was never kept, so their records
    cannot be completed honestly, and /1 takes records as they come (the archive still reads it)."""
    before = any(not all(field in r for field in manifest_format.ADDED_IN_2) for r in records)
    return manifest_format.FORMAT_1 if before else manifest_format.FORMAT


def pending(store: Store) -> list[dict]:
    """Bundles waiting for the central service, oldest first."""
    return rows(store.db, "SELECT * FROM bundles WHERE state IN ('sealed', 'uploading') ORDER BY created_at")


def rejected(store: Store) -> list[dict]:
    """Bundles the central service refused, kept with its reasons until an operator acts."""
    return rows(store.db, "SELECT * FROM bundles WHERE state = 'rejected' ORDER BY created_at")


def bundles(store: Store) -> list[dict]:
    return rows(
        store.db,
        "SELECT b.id, b.state, b.created_at, b.attempts, b.last_error, b.committed_at, b.uploaded_bytes,"
        " t.archive_no, t.item, t.title,"
        " (SELECT COUNT(*) FROM pages p WHERE p.batch_id = b.batch_id) AS pages,"
        " (SELECT COALESCE(SUM(bytes), 0) FROM pages p WHERE p.batch_id = b.batch_id) AS bytes"
        " FROM bundles b JOIN batches t ON t.id = b.batch_id ORDER BY b.created_at",
    )


def mark_uploading(store: Store, bundle_id: str) -> None:
    with atomic(store.db):
        store.db.execute(
            "UPDATE bundles SET state = 'uploading', attempts = attempts + 1 WHERE id = ? AND state IN ('sealed', 'uploading')",
            [bundle_id],
        )


def note_progress(store: Store, bundle_id: str, uploaded_bytes: int) -> None:
    """How many bytes of the bundle's pages the archive holds now."""
    with atomic(store.db):
        store.db.execute("UPDATE bundles SET uploaded_bytes = ? WHERE id = ?", [uploaded_bytes, bundle_id])


def note_failure(store: Store, bundle_id: str, reason: str) -> None:
    """Record why the last attempt failed; the bundle stays queued."""
    with atomic(store.db):
        store.db.execute("UPDATE bundles SET last_error = ? WHERE id = ?", [reason, bundle_id])


def mark_rejected(store: Store, bundle_id: str, reasons: str) -> None:
    """The central service refused the bundle; keep it, with the reasons, for an operator."""
    with atomic(store.db):
        store.db.execute(
            "UPDATE bundles SET state = 'rejected', last_error = ? WHERE id = ?", [reasons, bundle_id]
        )


def mark_committed(store: Store, bundle_id: str, receipt: bytes, signature: bytes) -> None:
    """Store the verified receipt; from now on the bundle's pages may be purged."""
    with atomic(store.db):
        store.db.execute(
            "UPDATE bundles SET state = 'committed', receipt = ?, receipt_signature = ?,"
            " committed_at = ?, last_error = NULL WHERE id = ?",
            [receipt, signature, utcnow(), bundle_id],
        )


def requeue(store: Store, bundle_id: str, reason: str | None = None) -> None:
    """Put a bundle back in the queue, sealed: one the archive would not take from this station for now
    (``reason`` says why), or a rejected one an operator retries."""
    with atomic(store.db):
        store.db.execute("UPDATE bundles SET state = 'sealed', last_error = ? WHERE id = ?"
                         " AND state IN ('sealed', 'uploading', 'rejected')", [reason, bundle_id])


def retry(store: Store, prefix: str | None) -> list[dict]:
    """Queue again the rejected bundle whose id starts with ``prefix`` (every rejected one for None);
    returns them."""
    found = [b for b in rejected(store) if prefix is None or b["id"].startswith(prefix.lower())]
    if prefix is not None and len(found) != 1:
        listed = [b["id"][:12] for b in bundles(store) if b["id"].startswith(prefix.lower())]
        if not found:
            raise StoreError(f"no rejected bundle {prefix}" + (f" ({listed[0]} is not rejected)" if listed else "")
                             + "; 'quire-station status' lists the rejected ones")
        raise StoreError(f"{prefix} matches {len(found)} rejected bundles; give more of the id")
    for bundle in found:
        requeue(store, bundle["id"])
    return found


def get(store: Store, bundle_id: str) -> dict:
    row = one(store.db, "SELECT * FROM bundles WHERE id = ?", [bundle_id])
    if row is None:
        raise StoreError(f"no bundle {bundle_id}")
    return row


def receipts(store: Store) -> list[dict]:
    """The receipts kept for committed (and purged) bundles, to be checked again."""
    return rows(store.db, "SELECT id, receipt, receipt_signature FROM bundles"
                          " WHERE state IN ('committed', 'purged') AND receipt IS NOT NULL ORDER BY created_at")
