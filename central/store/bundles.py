"""The ``bundles`` table: every bundle a station offered, by the SHA-256 of its signed manifest, and
how it ended (offered → committed with its signed receipt, or rejected with every reason)."""

import json

from .catalogue import rows


def get(source, bundle_id: str) -> dict | None:
    """The bundle's row, or None."""
    found = rows(source, "SELECT * FROM bundles WHERE id = :id", {"id": bundle_id})
    return found[0] if found else None


def offered_by(source, bundle_id: str, station_id: str) -> dict | None:
    """The bundle's row if ``station_id`` offered it, else None."""
    found = rows(source, "SELECT * FROM bundles WHERE id = :id AND station_id = :station",
                 {"id": bundle_id, "station": station_id})
    return found[0] if found else None


def manifest(source, bundle_id: str) -> bytes | None:
    """The signed manifest's bytes as the station sent them, or None."""
    found = rows(source, "SELECT manifest FROM bundles WHERE id = :id", {"id": bundle_id})
    return bytes(found[0]["manifest"]) if found else None


def committed_by_prefix(source, prefix: str) -> list[dict]:
    """Committed bundles whose id starts with ``prefix`` (lower case hex)."""
    return rows(source, "SELECT * FROM bundles WHERE id LIKE :prefix || '%' AND state = 'committed'",
                {"prefix": prefix.lower()})


def committed(source) -> list[dict]:
    """Every committed bundle's row, in the order they were committed."""
    return rows(source, "SELECT * FROM bundles WHERE state = 'committed' ORDER BY committed_at")


def committed_ids(source) -> set[str]:
    return {r["id"] for r in rows(source, "SELECT id FROM bundles WHERE state = 'committed'")}


def committed_receipts(source) -> list[dict]:
    """Each committed bundle's id and receipt bytes."""
    return rows(source, "SELECT id, receipt FROM bundles WHERE state = 'committed'")


def count(source, state: str | None = None) -> int:
    """How many bundles there are (in ``state`` when given)."""
    if state is None:
        return rows(source, "SELECT COUNT(*) AS n FROM bundles")[0]["n"]
    return rows(source, "SELECT COUNT(*) AS n FROM bundles WHERE state = :state", {"state": state})[0]["n"]


def last_receipt(db, station_id: str) -> bytes | None:
    """The receipt of the station's most recently committed bundle, inside the caller's transaction."""
    found = rows(db, "SELECT receipt FROM bundles WHERE station_id = :station AND state = 'committed'"
                     " ORDER BY committed_at DESC, seq DESC LIMIT 1", {"station": station_id})
    return bytes(found[0]["receipt"]) if found else None


def add_offered(db, bundle_id: str, station_id: str, manifest_bytes: bytes, signature: bytes, at: str) -> None:
    """Record an offered bundle (once: offering it again changes nothing), numbered in the order offered,
    with the manifest's operator, archive number and page count for the statistics."""
    facts = _facts(manifest_bytes)
    db.execute("INSERT INTO bundles (id, station_id, manifest, signature, state, offered_at, seq, operator, archive_no,"
               " pages) VALUES (:id, :station, :manifest, :signature, 'offered', :at,"
               " (SELECT COALESCE(MAX(seq), 0) + 1 FROM bundles), :operator, :archive_no, :pages)"
               " ON CONFLICT (id) DO NOTHING",
               {"id": bundle_id, "station": station_id, "manifest": manifest_bytes, "signature": signature, "at": at,
                **facts})


def _facts(manifest_bytes: bytes) -> dict:
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict):   # refused later with its reasons; nothing to count
        return {"operator": None, "archive_no": None, "pages": None}
    batch, dossier, pages = manifest.get("batch"), manifest.get("dossier"), manifest.get("pages")
    return {"operator": batch.get("operator") if isinstance(batch, dict) else None,
            "archive_no": dossier.get("archive_no") if isinstance(dossier, dict) else None,
            "pages": len(pages) if isinstance(pages, list) else None}


def mark_rejected(db, bundle_id: str, problems_json: str) -> None:
    db.execute("UPDATE bundles SET state = 'rejected', problems = :problems WHERE id = :id",
               {"problems": problems_json, "id": bundle_id})


def mark_committed(db, bundle_id: str, at: str, receipt: bytes, receipt_signature: bytes) -> None:
    db.execute("UPDATE bundles SET state = 'committed', committed_at = :at, receipt = :receipt,"
               " receipt_signature = :signature, problems = NULL WHERE id = :id",
               {"at": at, "receipt": receipt, "signature": receipt_signature, "id": bundle_id})
