"""Ingest: verify a station's bundle before trusting any of it, then store and catalogue it."""

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from quire import keys
from quire import manifest as manifest_format
from quire import receipt as receipt_format
from quire.canonical import sha256_hex
from quire.catalogue import parse_item
from quire.cas import is_sha256_hex
from quire.db import utcnow
from quire.errors import BadSignature, ContractError

from . import audit, profile, quarantine, stations, uploads
from .archive import Archive
from .errors import (BlobRejected, BlobsMissing, BundleRejected, ManifestRejected,
                     ManifestSignatureInvalid, UnknownBundle)
from .store import blob_index, bundles, materials
from .store import dossiers as store_dossiers
from .store import stations as store_stations


@dataclass
class Offer:
    bundle_id: str
    missing: list[str]
    receipt: tuple[bytes, bytes] | None = None
    committed_sizes: list[int] = field(default_factory=list)   # resume point of each missing blob


def offer(archive: Archive, station_id: str, data: bytes, signature: bytes) -> Offer:
    """Check who sent the manifest and that it is intact; answer which blobs are still needed."""
    station = stations.active(archive, station_id)
    try:
        manifest_format.verify(data, signature, bytes(station["public_key"]))
    except BadSignature as exc:
        raise ManifestSignatureInvalid(f"station {station_id}: {exc}; nothing from this bundle was accepted") from None
    bundle_id = sha256_hex(data)
    # Only signed bytes are parsed: an unknown version or a malformed field is the station's word.
    try:
        manifest = _READ.read(bundle_id, data)
    except ContractError as exc:
        raise ManifestRejected(f"station {station_id}: {exc}; nothing from this bundle was accepted") from None
    if manifest["station_id"] != station_id:
        raise ManifestRejected(
            f"manifest names station {manifest['station_id']!r} but was sent by {station_id!r}"
        )
    stations.check_unit(archive, station, manifest["dossier"], bundle_id)  # before any page byte is accepted
    # A bundle offered before (a station offers again after every pause) is answered from its row, without
    # the writer lock every commit on every process waits for; only a new one is recorded under it.
    row = bundles.get(archive.catalogue, bundle_id)
    if row is None:
        with archive.catalogue.transaction() as db:
            row = bundles.get(db, bundle_id)
            if row is None:
                bundles.add_offered(db, bundle_id, station_id, data, signature, utcnow())
    if row is not None and row["state"] == "committed":
        return Offer(bundle_id, [], (bytes(row["receipt"]), bytes(row["receipt_signature"])))
    if row is not None and row["state"] == "rejected":
        raise BundleRejected(bundle_id, json.loads(row["problems"]))
    # The pages, and a cover sheet's image kept as evidence. A blob the catalogue has no record of is asked
    # for without asking the blob store (a request to an object store costs the archive more CPU than a
    # query): should it be stored all the same (the archive stopped before recording it), its upload
    # finds it there. A recorded one is looked up: one lost from the store is asked for again.
    digests = list(dict.fromkeys(page["sha256"] for page in manifest_format.blobs(manifest)))
    recorded = {r["sha256"] for r in blob_index.some(archive.catalogue, digests)}
    missing = [sha for sha in digests if sha not in recorded or not archive.blobs.has(sha)]
    return Offer(bundle_id, missing, committed_sizes=archive.blobs.committed_sizes(station_id, missing))


class _ReadManifests:
    """``manifest_format.read`` remembering, by their SHA-256, the last ``size`` manifests that passed it:
    a manifest offered again (after every pause of a busy archive) is parsed, not checked again (its
    canonical form and model took 0.7 of an offer's 2.3 ms CPU). The checks depend on the bytes alone."""

    def __init__(self, size: int = 4096):
        self.size, self._passed, self._lock = size, OrderedDict(), threading.Lock()

    def read(self, sha256: str, data: bytes) -> dict:
        with self._lock:
            known = sha256 in self._passed
            if known:
                self._passed.move_to_end(sha256)
        if known:
            return json.loads(data)
        manifest = manifest_format.read(data)
        with self._lock:
            self._passed[sha256] = None
            while len(self._passed) > self.size:
                self._passed.popitem(last=False)
        return manifest


_READ = _ReadManifests()


def _offered(archive: Archive, station_id: str, bundle_id: str) -> dict:
    stations.active(archive, station_id)
    row = bundles.offered_by(archive.catalogue, bundle_id, station_id)
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


def write(archive: Archive, chunks) -> uploads.Written:
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
    # Which of the bundle's blobs are recorded, asked once for the stream rather than once a blob: one that
    # arrives from another station meanwhile is only stored again (its put finds it there).
    recorded = {r["sha256"] for r in blob_index.some(archive.catalogue, list(declared))}
    completed, msg, broken_off = [], first, None
    finisher = uploads.GroupCommit(archive)
    try:
        while msg is not None:
            sha256 = msg.sha256
            if not is_sha256_hex(sha256):
                raise BlobRejected(f"{sha256!r} is not a SHA-256 hex digest; each blob's first message must name it")
            size, msg = uploads.write_blob(archive, station_id, sha256, _declared_size(declared, sha256, bundle_id),
                                           msg, chunks, finisher, recorded=sha256 in recorded)
            if msg is None:  # the stream ended inside this blob: the station resumes it later
                broken_off = size
                break
            completed.append(sha256)
            msg = next(chunks, None)
    finally:
        finisher.close()  # what arrived whole is stored (or refused) whatever broke the stream
    if broken_off is not None:
        return uploads.Written(broken_off, False, completed)
    return uploads.Written(declared[completed[-1]], True, completed)


def commit(archive: Archive, station_id: str, bundle_id: str) -> tuple[bytes, bytes]:
    """Catalogue an offered bundle whose blobs all arrived; answer with the signed receipt.

    A bundle that breaks its unit's standards profile, or conflicts with the catalogue, is
    quarantined instead, and the station is told every reason.
    """
    row = _offered(archive, station_id, bundle_id)
    if row["state"] == "committed":
        return bytes(row["receipt"]), bytes(row["receipt_signature"])
    if row["state"] == "rejected":
        raise BundleRejected(bundle_id, json.loads(row["problems"]))
    manifest = json.loads(row["manifest"])
    # Everything asked of the blob store is asked here, before the transaction: on PostgreSQL it holds
    # the archive's one writer lock, and no other commit should wait on object-store round trips.
    records = _records(archive.catalogue, manifest)
    sizes = _stored_sizes(archive, manifest, records)
    missing = [p["sha256"] for p in manifest_format.blobs(manifest) if sizes[p["sha256"]] is None]
    if missing:
        raise BlobsMissing(
            f"bundle {bundle_id[:12]}: {len(missing)} page file(s) not uploaded yet "
            f"(first {missing[0][:12]}); offer the bundle again and upload them"
        )
    station = stations.active(archive, station_id)
    # Re-reads page headers, outside the lock; a recorded blob's size was taken from its record, so a blob
    # lost from the store shows here, and is asked for again rather than judged unreadable.
    findings = profile.check_bundle(archive, manifest, station["unit"], _opener(archive, bundle_id))
    sm3s, unrecorded = {}, {sha for sha in sizes if sha not in records}
    while True:
        sm3s.update(_sm3_of_unrecorded(archive, unrecorded - sm3s.keys()))
        with archive.catalogue.transaction() as db:
            if bundles.get(db, bundle_id)["state"] != "offered":
                # A concurrent commit of this bundle finished first: answer as it was answered.
                return commit(archive, station_id, bundle_id)
            unrecorded = _unrecorded(db, manifest)
            if unrecorded - sm3s.keys():
                continue  # a record went missing meanwhile: hash that blob too, outside the transaction
            for sha in dict.fromkeys(p["sha256"] for p in manifest_format.blobs(manifest)):
                if sha in unrecorded:  # recorded as stored, unless the archive stopped in between
                    uploads.record_blob(db, sha, sizes[sha], sm3s[sha])
            conflicts = _catalogue_problems(db, manifest, sizes)
            problems = conflicts + findings.reasons()
            if problems:
                bundles.mark_rejected(db, bundle_id, json.dumps(problems, ensure_ascii=False))
                quarantine.hold(db, archive, bundle_id, station, manifest, findings, conflicts)
                rejected = BundleRejected(bundle_id, problems)
            else:
                rejected = None
                data, signature = catalogue_bundle(db, archive, station, bundle_id, manifest, findings)
        break
    if rejected:
        raise rejected
    return data, signature


def catalogue_bundle(db, archive: Archive, station: dict, bundle_id: str, manifest: dict, findings,
                     replaces: dict | None = None, by: str | None = None) -> tuple[bytes, bytes]:
    """Inside the caller's transaction: catalogue a verified bundle (as a new version of ``replaces``
    when given), log it, mark it committed and return the signed receipt."""
    dossier, material, pages = manifest["dossier"], manifest["material"], manifest["pages"]
    now = utcnow()
    store_dossiers.add(db, dossier["archive_no"], station["unit"], dossier, now)
    fields = {"title": material["title"], "date_formed": material.get("date_formed"),
              "page_count": material["page_count"], "remarks": material.get("remarks"), "bundle_id": bundle_id,
              "catalogued_at": now}
    if replaces is None:
        material_id = materials.add(db, dossier["archive_no"], material["item"],
                                    parse_item(material["item"]).category, fields)
    else:
        material_id = replaces["id"]
        materials.replace(db, material_id, fields)
    materials.add_pages(db, material_id, pages)
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
    bundles.mark_committed(db, bundle_id, now, data, signature)
    return data, signature


def _records(source, manifest: dict) -> dict[str, dict]:
    """The catalogue's records of the bundle's blobs that it has, by digest, in one query."""
    digests = list(dict.fromkeys(page["sha256"] for page in manifest_format.blobs(manifest)))
    return {r["sha256"]: r for r in blob_index.some(source, digests)}


def _stored_sizes(archive: Archive, manifest: dict, records: dict[str, dict]) -> dict[str, int | None]:
    """The stored size of each blob of a bundle (None when not stored): a recorded blob's from its record
    (``records``), the others' asked of the blob store (a request to an object store costs more than one
    query for all)."""
    sizes = {}
    for sha in dict.fromkeys(page["sha256"] for page in manifest_format.blobs(manifest)):
        sizes[sha] = records[sha]["bytes"] if sha in records else archive.blobs.stat(sha)
    return sizes


def _opener(archive: Archive, bundle_id: str):
    """The blob store's open, saying a missing blob is to be uploaded again."""
    def open_blob(sha256: str):
        try:
            return archive.blobs.open(sha256)
        except FileNotFoundError:
            raise BlobsMissing(f"bundle {bundle_id[:12]}: page file {sha256[:12]} is no longer in the blob store; "
                               "offer the bundle again and upload it") from None
    return open_blob


def _unrecorded(source, manifest: dict, known=()) -> set[str]:
    """The bundle's blobs the catalogue has no record of (leaving out ``known``), asked in one query."""
    digests = [sha for sha in dict.fromkeys(p["sha256"] for p in manifest_format.blobs(manifest)) if sha not in known]
    recorded = {r["sha256"] for r in blob_index.some(source, digests)}
    return {sha for sha in digests if sha not in recorded}


def _sm3_of_unrecorded(archive: Archive, shas: set[str]) -> dict[str, str]:
    """The SM3 of each stored blob in ``shas``, read back from the blob store (to record it)."""
    found = {}
    for sha in shas:
        hashed = archive.blobs.rehash(sha)
        if hashed is None:
            raise BlobsMissing(f"page file {sha[:12]} is no longer in the blob store; offer the bundle again and "
                               "upload it")
        found[sha] = hashed[1]
    return found


def _catalogue_problems(db, manifest: dict, sizes: dict[str, int | None]) -> list[str]:
    problems = []
    dossier, material = manifest["dossier"], manifest["material"]
    owner = store_dossiers.get(db, dossier["archive_no"])
    station_unit = store_stations.unit_of(db, manifest["station_id"])
    if owner and station_unit and owner["unit"] != station_unit:
        problems.append(f"dossier {dossier['archive_no']} belongs to unit {owner['unit']}; station "
                        f"{manifest['station_id']} uploads only into unit {station_unit}")
    if owner and owner["sealed_by_change"] is not None:
        problems.append(f"dossier {dossier['archive_no']} is sealed (封存): nothing is added to it until two "
                        "archivists of its unit unseal it")
    if owner and owner["transferred_to"] is not None:
        problems.append(f"dossier {dossier['archive_no']} was transferred to {owner['transferred_to']} (转递): "
                        "nothing is added to it here")
    existing = materials.get(db, dossier["archive_no"], material["item"])
    if existing:
        problems.append(
            f"material {material['item']} of dossier {dossier['archive_no']} is already catalogued "
            f"(bundle {existing['bundle_id'][:12]}); replacing a material needs the replacement workflow"
        )
    for p in manifest["pages"]:
        size = sizes[p["sha256"]]   # stat()ed before the transaction
        if size != p["bytes"]:
            problems.append(f"page {p['n']}: stored blob has {size} bytes, manifest says {p['bytes']}")
    return problems
