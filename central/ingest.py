"""Ingest: verify a station's bundle before trusting any of it, then store and catalogue it."""

import contextlib
import json
import queue
import threading
from dataclasses import dataclass, field

import google_crc32c

from quire import keys
from quire import manifest as manifest_format
from quire import receipt as receipt_format
from quire.canonical import sha256_hex
from quire.catalogue import parse_item
from quire.cas import is_sha256_hex
from quire.db import utcnow
from quire.errors import BadSignature, ContractError

from . import stations
from .archive import Archive
from .errors import (BlobRejected, BlobsMissing, BundleRejected, ManifestRejected,
                     ManifestSignatureInvalid, UnknownBundle, UploadDamaged)


@dataclass
class Offer:
    bundle_id: str
    missing: list[str]
    receipt: tuple[bytes, bytes] | None = None
    committed_sizes: list[int] = field(default_factory=list)   # resume point of each missing blob


@dataclass
class Written:
    """What one Write stream achieved: every blob it completed, and where its last blob stands."""

    size: int
    complete: bool
    completed: list[str]


def offer(archive: Archive, station_id: str, data: bytes, signature: bytes) -> Offer:
    """Check who sent the manifest and that it is intact; answer which blobs are still needed."""
    station = stations.active(archive, station_id)
    try:
        manifest_format.verify(data, signature, bytes(station["public_key"]))
    except BadSignature as exc:
        raise ManifestSignatureInvalid(f"station {station_id}: {exc}; nothing from this bundle was accepted") from None
    # Only signed bytes are parsed: an unknown version or a malformed field is the station's word.
    try:
        manifest = manifest_format.read(data)
    except ContractError as exc:
        raise ManifestRejected(f"station {station_id}: {exc}; nothing from this bundle was accepted") from None
    if manifest["station_id"] != station_id:
        raise ManifestRejected(
            f"manifest names station {manifest['station_id']!r} but was sent by {station_id!r}"
        )
    bundle_id = sha256_hex(data)
    stations.check_unit(archive, station, manifest["dossier"], bundle_id)  # before any page byte is accepted
    with archive.catalogue.transaction() as db:
        row = db.execute("SELECT state, receipt, receipt_signature, problems FROM bundles WHERE id = ?",
                         [bundle_id]).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO bundles (id, station_id, manifest, signature, state, offered_at)"
                " VALUES (?, ?, ?, ?, 'offered', ?)",
                [bundle_id, station_id, data, signature, utcnow()],
            )
        elif row[0] == "committed":
            return Offer(bundle_id, [], (bytes(row[1]), bytes(row[2])))
        elif row[0] == "rejected":
            raise BundleRejected(bundle_id, json.loads(row[3]))
    missing = []
    for page in manifest_format.blobs(manifest):   # the pages, and a cover sheet's image kept as evidence
        if page["sha256"] not in missing and not archive.blobs.has(page["sha256"]):
            missing.append(page["sha256"])
    return Offer(bundle_id, missing, committed_sizes=[archive.blobs.committed_size(station_id, sha)
                                                      for sha in missing])


def _offered(archive: Archive, station_id: str, bundle_id: str) -> dict:
    stations.active(archive, station_id)
    row = archive.catalogue.one("SELECT * FROM bundles WHERE id = ? AND station_id = ?", [bundle_id, station_id])
    if row is None:
        raise UnknownBundle(f"bundle {bundle_id[:12]} was not offered by station {station_id}; offer it first")
    return row


def _declared_sizes(row: dict) -> dict[str, int]:
    """Each page blob of an offered bundle with the size its manifest declares."""
    return {page["sha256"]: page["bytes"] for page in manifest_format.blobs(json.loads(row["manifest"]))}


def _declared_size(sizes: dict[str, int], sha256: str, bundle_id: str) -> int:
    if sha256 not in sizes:
        raise BlobRejected(f"blob {sha256[:12]} is not listed in bundle {bundle_id[:12]}")
    return sizes[sha256]


def write_status(archive: Archive, station_id: str, bundle_id: str, sha256: str) -> tuple[int, bool]:
    """The resume point of one blob: (bytes committed, complete)."""
    size = _declared_size(_declared_sizes(_offered(archive, station_id, bundle_id)), sha256, bundle_id)
    if archive.blobs.has(sha256):
        return size, True
    return archive.blobs.committed_size(station_id, sha256), False


def write(archive: Archive, chunks) -> Written:
    """Take the chunks of one Write stream: one blob after another, each named by its first message.

    Blobs whose last chunk arrived are flushed, checked against their digests and stored on a
    thread of their own while the next blob's chunks come in; the answer waits until every
    finished blob is stored. A stream that breaks off leaves the blob in hand at its last whole
    chunk, to resume.
    """
    first = next(chunks, None)
    if first is None:
        raise BlobRejected("empty upload: the first message must name station, bundle and blob")
    station_id, bundle_id = first.station_id, first.bundle_id
    declared = _declared_sizes(_offered(archive, station_id, bundle_id))
    completed, msg, broken_off = [], first, None
    finisher = _GroupCommit(archive)
    try:
        while msg is not None:
            sha256 = msg.sha256
            if not is_sha256_hex(sha256):
                raise BlobRejected(f"{sha256!r} is not a SHA-256 hex digest; each blob's first message must name it")
            size, msg = _write_blob(archive, station_id, sha256, _declared_size(declared, sha256, bundle_id),
                                    msg, chunks, finisher)
            if msg is None:  # the stream ended inside this blob: the station resumes it later
                broken_off = size
                break
            completed.append(sha256)
            msg = next(chunks, None)
    finally:
        finisher.close()  # what arrived whole is stored (or refused) whatever broke the stream
    if broken_off is not None:
        return Written(broken_off, False, completed)
    return Written(declared[completed[-1]], True, completed)


def _write_blob(archive: Archive, station_id: str, sha256: str, declared: int, msg, chunks, finisher):
    """Append one blob's chunks from ``msg`` on and hand a finished one to ``finisher`` to store;
    return (size, its finishing message or None)."""
    if archive.blobs.has(sha256):  # another station's copy arrived meanwhile: skip this one's bytes
        while msg is not None and not msg.finish_write:
            msg = next(chunks, None)
        return declared, msg
    upload, handed_over = archive.blobs.open_upload(station_id, sha256, declared), False
    try:
        while msg is not None:
            # Read once: each access of a bytes field copies it (a whole chunk, every time).
            data = msg.data
            _check_crc(sha256, msg, data)
            if data:
                upload.append(msg.write_offset, data)
            if msg.finish_write:
                finisher.submit(upload)
                handed_over = True
                return declared, msg
            msg = next(chunks, None)
        return upload.size, None
    finally:
        if not handed_over:  # broken off or refused: the partial keeps its last whole chunk, to resume
            upload.close()


class _GroupCommit:
    """Stores a Write stream's finished blobs on a thread of its own, each time all that have
    queued up together: their files flushed, their digests checked, renamed into the store with
    one directory flush per folder and recorded in one catalogue transaction. When the disk is
    slow to flush, groups grow instead of the stream waiting on one blob after another."""

    def __init__(self, archive: Archive):
        self.archive = archive
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._refused: dict[str, BaseException] = {}
        self._order: list[str] = []
        self._thread = threading.Thread(target=self._run, name="quire-blob-finish", daemon=True)
        self._thread.start()

    def submit(self, upload) -> None:
        self._order.append(upload.sha256)
        self._queue.put(upload)

    def close(self) -> None:
        """Wait until every submitted blob is stored or refused; raise the first refusal."""
        self._queue.put(None)
        self._thread.join()
        for sha256 in self._order:
            if sha256 in self._refused:
                raise self._refused[sha256]

    def _run(self) -> None:
        ending = False
        while not ending:
            group = [self._queue.get()]
            while True:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            ending = group[-1] is None
            uploads = [upload for upload in group if upload is not None]
            if uploads:
                self._store(uploads)

    def _store(self, uploads: list) -> None:
        try:
            refused = self.archive.blobs.finish_many(uploads)
            stored = [u for u in uploads if u.sha256 not in refused]
            if stored:
                with self.archive.catalogue.transaction() as db:
                    for upload in stored:
                        record_blob(db, upload.sha256, upload.limit, upload.sm3)
        except BaseException as exc:  # noqa: BLE001 - raised on the stream's thread by close()
            # Noted before anything else can fail: a refusal lost here would let the Write call answer
            # as if these blobs were stored.
            self._refused.update({u.sha256: exc for u in uploads})
            for upload in uploads:
                with contextlib.suppress(OSError):
                    upload.close()
            return
        self._refused.update(refused)


def record_blob(db, sha256: str, size: int, sm3: str) -> None:
    db.execute("INSERT OR IGNORE INTO blobs (sha256, bytes, stored_at, sm3) VALUES (?, ?, ?, ?)",
               [sha256, size, utcnow(), sm3])


def _check_crc(sha256: str, msg, data: bytes) -> None:
    if not msg.HasField("data_crc32c"):
        raise BlobRejected(f"blob {sha256[:12]}: the chunk at offset {msg.write_offset} carries no data_crc32c; "
                           "every chunk must (update the station)")
    found = google_crc32c.value(data)
    if found != msg.data_crc32c:
        raise UploadDamaged(f"blob {sha256[:12]}: the chunk at offset {msg.write_offset} arrived damaged (CRC-32C "
                            f"{found:08x}, the station sent {msg.data_crc32c:08x}); nothing of it was "
                            "written, send it again from the committed offset")


def commit(archive: Archive, station_id: str, bundle_id: str) -> tuple[bytes, bytes]:
    """Catalogue an offered bundle whose blobs all arrived; answer with the signed receipt.

    A bundle that breaks its unit's standards profile, or conflicts with the catalogue, is
    quarantined instead, and the station is told every reason.
    """
    from . import quarantine, standards

    row = _offered(archive, station_id, bundle_id)
    if row["state"] == "committed":
        return bytes(row["receipt"]), bytes(row["receipt_signature"])
    if row["state"] == "rejected":
        raise BundleRejected(bundle_id, json.loads(row["problems"]))
    manifest = json.loads(row["manifest"])
    missing = [p["sha256"] for p in manifest_format.blobs(manifest) if not archive.blobs.has(p["sha256"])]
    if missing:
        raise BlobsMissing(
            f"bundle {bundle_id[:12]}: {len(missing)} page file(s) not uploaded yet "
            f"(first {missing[0][:12]}); offer the bundle again and upload them"
        )
    station = stations.active(archive, station_id)
    findings = standards.check_bundle(archive, manifest, station["unit"])  # re-reads page headers: outside the lock
    with archive.catalogue.transaction() as db:
        if db.execute("SELECT state FROM bundles WHERE id = ?", [bundle_id]).fetchone()[0] != "offered":
            # A concurrent commit of this bundle finished first: answer as it was answered.
            return commit(archive, station_id, bundle_id)
        for page in manifest_format.blobs(manifest):  # recorded as stored, unless the archive stopped in between
            if not db.execute("SELECT 1 FROM blobs WHERE sha256 = ?", [page["sha256"]]).fetchone():
                record_blob(db, page["sha256"], page["bytes"], archive.blobs.rehash(page["sha256"])[1])
        conflicts = _catalogue_problems(db, archive, manifest)
        problems = conflicts + findings.reasons()
        if problems:
            db.execute("UPDATE bundles SET state = 'rejected', problems = ? WHERE id = ?",
                       [json.dumps(problems, ensure_ascii=False), bundle_id])
            quarantine.hold(db, archive, bundle_id, station, manifest, findings, conflicts)
            rejected = BundleRejected(bundle_id, problems)
        else:
            rejected = None
            data, signature = catalogue_bundle(db, archive, station, bundle_id, manifest, findings)
    if rejected:
        raise rejected
    return data, signature


def catalogue_bundle(db, archive: Archive, station: dict, bundle_id: str, manifest: dict, findings,
                     replaces: dict | None = None, by: str | None = None) -> tuple[bytes, bytes]:
    """Inside the caller's transaction: catalogue a verified bundle (as a new version of ``replaces``
    when given), log it, mark it committed and return the signed receipt."""
    from . import audit

    dossier, material, pages = manifest["dossier"], manifest["material"], manifest["pages"]
    now = utcnow()
    db.execute(
        "INSERT OR IGNORE INTO dossiers (archive_no, name, unit, created_at, sex, birth_date, post, kind)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [dossier["archive_no"], dossier.get("name"), station["unit"], now, dossier.get("sex"),
         dossier.get("birth_date"), dossier.get("post"), dossier.get("kind") or "personnel"],
    )
    fields = [material["title"], material.get("date_formed"), material["page_count"], material.get("remarks"),
              bundle_id, now]
    if replaces is None:
        material_id = db.execute(
            "INSERT INTO materials (archive_no, item, category, title, date_formed, page_count,"
            " remarks, bundle_id, catalogued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [dossier["archive_no"], material["item"], parse_item(material["item"]).category, *fields],
        ).lastrowid
    else:
        material_id = replaces["id"]
        db.execute("DELETE FROM pages WHERE material_id = ?", [material_id])
        db.execute("UPDATE materials SET title = ?, date_formed = ?, page_count = ?, remarks = ?, bundle_id = ?,"
                   " catalogued_at = ?, version = version + 1 WHERE id = ?", [*fields, material_id])
    for p in pages:
        db.execute(
            "INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [material_id, p["n"], p["sha256"], p["bytes"], p["media_type"], p["width_px"],
             p["height_px"], p["dpi"], p["colour"], json.dumps(p["record"], ensure_ascii=False)],
        )
    data, signature = receipt_format.issue({
        "bundle_id": bundle_id,
        "station_id": station["id"],
        "archive_no": dossier["archive_no"],
        "item": material["item"],
        "pages": len(pages),
        "bytes": sum(p["bytes"] for p in pages),
        "received_at": now,
        "central_key": keys.fingerprint(archive.public_key),
        "audit": audit.ingested(db, archive, bundle_id, station, manifest, findings.profile.label, by=by),
        "standards": findings.receipt_field(),
    }, archive.key)
    db.execute("UPDATE bundles SET state = 'committed', committed_at = ?, receipt = ?, receipt_signature = ?,"
               " problems = NULL WHERE id = ?", [now, data, signature, bundle_id])
    return data, signature


def _catalogue_problems(db, archive: Archive, manifest: dict) -> list[str]:
    problems = []
    dossier, material = manifest["dossier"], manifest["material"]
    owner = db.execute("SELECT unit, sealed_by_change, transferred_to FROM dossiers WHERE archive_no = ?",
                       [dossier["archive_no"]]).fetchone()
    station_unit = db.execute("SELECT unit FROM stations WHERE id = ?", [manifest["station_id"]]).fetchone()
    if owner and station_unit and owner[0] != station_unit[0]:
        problems.append(f"dossier {dossier['archive_no']} belongs to unit {owner[0]}; station "
                        f"{manifest['station_id']} uploads only into unit {station_unit[0]}")
    if owner and owner[1] is not None:
        problems.append(f"dossier {dossier['archive_no']} is sealed (封存): nothing is added to it until two "
                        "archivists of its unit unseal it")
    if owner and owner[2] is not None:
        problems.append(f"dossier {dossier['archive_no']} was transferred to {owner[2]} (转递): nothing is added "
                        "to it here")
    existing = db.execute("SELECT bundle_id FROM materials WHERE archive_no = ? AND item = ?",
                          [dossier["archive_no"], material["item"]]).fetchone()
    if existing:
        problems.append(
            f"material {material['item']} of dossier {dossier['archive_no']} is already catalogued "
            f"(bundle {existing[0][:12]}); replacing a material needs the replacement workflow"
        )
    for p in manifest["pages"]:
        size = archive.blobs.stat(p["sha256"])
        if size != p["bytes"]:
            problems.append(f"page {p['n']}: stored blob has {size} bytes, manifest says {p['bytes']}")
    return problems
