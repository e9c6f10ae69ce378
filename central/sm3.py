"""SM3 beside SHA-256: the backfill for blobs stored before the archive recorded their SM3."""

from quire.db import utcnow

from . import audit
from .archive import Archive
from .errors import CentralError
from .store import blob_index

BATCH = 64   # blobs hashed per transaction: an interrupted backfill keeps what it did and resumes


def backfill(archive: Archive, by: str) -> dict:
    """Hash every stored blob that has no SM3 yet (checking its SHA-256 on the way); log the run."""
    done, damaged, started = 0, [], utcnow()
    while True:
        batch = blob_index.without_sm3(archive.catalogue, damaged, BATCH)
        if not batch:
            break
        found = {}
        for row in batch:
            digests = archive.blobs.rehash(row["sha256"])
            if digests is None or digests[0] != row["sha256"]:
                damaged.append(row["sha256"])  # no SM3 for bytes that are not the blob: verify names them
                continue
            found[row["sha256"]] = digests[1]
        with archive.catalogue.transaction() as db:
            for sha256, value in found.items():
                blob_index.set_sm3(db, sha256, value)
        done += len(found)
    with archive.catalogue.transaction() as db:
        audit.record(db, archive, "blobs.sm3_backfill", "blobs",
                     {"blobs": done, "damaged": damaged, "started_at": started}, by=by)
    if damaged:
        raise CentralError(f"{done} blob(s) given their SM3, but {len(damaged)} are missing or damaged "
                           f"(first {damaged[0]}) and were left without one; run 'quire-central verify' "
                           "and restore them from a copy")
    return {"blobs": done}
