"""Re-check the whole archive: blobs against their digests, bundles against their signatures,
the catalogue against the signed manifests. Reports every problem, not the first."""

import json
from dataclasses import dataclass, field

from quire import keys
from quire import manifest as manifest_format
from quire import receipt as receipt_format
from quire.canonical import sha256_hex
from quire.catalogue import parse_item
from quire.errors import ContractError

from . import audit
from .archive import Archive
from .changes import IDENTITY_FIELDS
from .problems import Problem
from .store import audit_log, blob_index, bundles, materials
from .store import dossiers as store_dossiers
from .store import quarantine as store_quarantine
from .store import stations as store_stations


def DigestMismatch(path, expected, found):
    return Problem("DigestMismatch", str(path), f"expected {expected}, found {found}")


def BlobMissing(path, sha):
    return Problem("BlobMissing", str(path), f"blob {sha} is catalogued but its file is gone")


def Sm3Missing(path, sha):
    return Problem("Sm3Missing", str(path), f"blob {sha} has no SM3 recorded; run 'quire-central sm3-backfill'")


def SizeMismatch(path, expected, found):
    return Problem("SizeMismatch", str(path), f"expected {expected} bytes, found {found}")


def SignatureInvalid(bundle_id, detail):
    return Problem("SignatureInvalid", f"bundle {bundle_id}", detail)


def CatalogueMismatch(subject, detail):
    return Problem("CatalogueMismatch", subject, detail)


def FieldMismatch(subject, name, catalogue, source_value, source="the signed manifest"):
    return Problem("FieldMismatch", subject,
                   f"{name} is {catalogue!r} in the catalogue but {source_value!r} in {source}")


def SenderMismatch(subject, recorded, signer, bundle_id):
    held = f"station {recorded!r}" if recorded is not None else "no station"
    return Problem("SenderMismatch", subject,
                   f"the catalogue records {held} as its sender, but its bundle {bundle_id[:12]} was signed by "
                   f"station {signer!r}; the signed bundle is the record: find who changed the catalogue, then set "
                   f"the material's station_id back to {signer!r} (or restore the catalogue from a backup)")


def NotInLog(subject, detail):
    return Problem("NotInLog", subject, detail)


def LogWithoutRecord(subject, detail):
    return Problem("LogWithoutRecord", subject, detail)


def LogMismatch(subject, detail):
    return Problem("LogMismatch", subject, detail)


# Catalogue columns copied from a signed manifest's material and page entries at ingest.
MATERIAL_FIELDS = ("title", "date_formed", "page_count", "remarks")
PAGE_FIELDS = ("sha256", "bytes", "media_type", "width_px", "height_px", "dpi", "colour")


@dataclass
class Report:
    blobs: int = 0
    bytes: int = 0
    bundles: int = 0
    pages: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(archive: Archive, full: bool = True) -> Report:
    """Full: re-hash every blob, re-check every signature and the audit log. Quick: sizes and counts only.

    Both check the catalogue against the audit log's ingest and quarantine entries.
    """
    report = Report()
    cat = archive.catalogue
    for blob in blob_index.every(cat):
        report.blobs += 1
        path = archive.blobs.where(blob["sha256"])
        size = archive.blobs.stat(blob["sha256"])
        if size is None:
            report.problems.append(BlobMissing(path, blob["sha256"]))
            continue
        report.bytes += size
        if blob["sm3"] is None:
            report.problems.append(Sm3Missing(path, blob["sha256"]))
        if size != blob["bytes"]:
            report.problems.append(SizeMismatch(path, blob["bytes"], size))
        elif full:
            found, found_sm3 = archive.blobs.rehash(blob["sha256"]) or (None, None)
            if found != blob["sha256"]:
                report.problems.append(DigestMismatch(path, blob["sha256"], found))
            elif blob["sm3"] is not None and found_sm3 != blob["sm3"]:
                report.problems.append(DigestMismatch(path, f"SM3 {blob['sm3']}", f"SM3 {found_sm3}"))
    stations = store_stations.keys(cat)
    for bundle in bundles.committed(cat):
        report.bundles += 1
        report.problems.extend(_check_bundle(archive, bundle, stations, full, report))
    report.problems.extend(_quarantine_problems(archive))
    report.problems.extend(_station_problems(archive))
    report.problems.extend(_seal_problems(archive))
    # Catalogued material that no committed bundle accounts for was inserted behind our back.
    for m in materials.without_committed_bundle(cat):
        report.problems.append(CatalogueMismatch(
            f"material {m['archive_no']} {m['item']}", f"no committed bundle {m['bundle_id']} backs it"))
    # The catalogue against the audit log (cheap); full: the log against its signed checkpoints too.
    report.problems.extend(catalogue_problems(archive))
    report.problems.extend(identity_problems(archive))
    if full:
        report.problems.extend(audit.verify_log(archive).problems)
    report.problems = list(dict.fromkeys(report.problems))  # one line per problem, however found
    return report


def catalogue_problems(archive: Archive) -> list[Problem]:
    """Every committed or quarantined bundle has its log entry, every such entry its bundle, and they agree."""
    problems = []
    logged = {"ingest": {}, "quarantine": {}}
    for row in audit_log.of_events(archive.catalogue, ("ingest", "quarantine")):
        try:
            body = json.loads(row["entry"])
            logged[row["event"]][body["bundle_id"]] = dict(body, idx=row["idx"])
        except (ValueError, KeyError, TypeError):
            continue  # verify_log names the damaged entry
    committed = bundles.committed_ids(archive.catalogue)
    for bundle_id in sorted(committed - set(logged["ingest"])):
        problems.append(NotInLog(f"bundle {bundle_id[:12]}", "committed, but the audit log has no ingest entry"))
    for bundle_id in sorted(set(logged["ingest"]) - committed):
        entry = logged["ingest"][bundle_id]
        problems.append(LogWithoutRecord(
            f"material {entry.get('archive_no')} {entry.get('item')}",
            f"audit entry #{entry['idx']} records bundle {bundle_id[:12]} as ingested, "
            "but it is no longer committed in the catalogue"))
    for m in materials.page_counts(archive.catalogue):
        entry = logged["ingest"].get(m["bundle_id"])
        if entry is None:
            continue
        said = (entry.get("archive_no"), entry.get("item"), entry.get("pages"))
        if said != (m["archive_no"], m["item"], m["pages"]):
            problems.append(LogMismatch(
                f"material {m['archive_no']} {m['item']}",
                f"catalogued from bundle {m['bundle_id'][:12]} with {m['pages']} pages, which audit entry "
                f"#{entry['idx']} records as {said[0]} {said[1]} with {said[2]} pages"))
    held = store_quarantine.bundle_ids(archive.catalogue)
    for bundle_id in sorted(held - set(logged["quarantine"])):
        problems.append(NotInLog(f"quarantined bundle {bundle_id[:12]}", "the audit log has no quarantine entry"))
    for bundle_id in sorted(set(logged["quarantine"]) - held):
        problems.append(LogWithoutRecord(f"quarantined bundle {bundle_id[:12]}",
                                         f"audit entry #{logged['quarantine'][bundle_id]['idx']} records it, "
                                         "but the quarantine no longer holds it"))
    return problems


def identity_problems(archive: Archive) -> list[Problem]:
    """Each dossier's identity fields equal the first signed manifest's, and its unit the first ingest's,
    as amended by applied four-eyes edits."""
    expected: dict[str, dict] = {}
    for row in audit_log.of_events(archive.catalogue, ("ingest", "change.apply")):
        try:
            entry = json.loads(row["entry"])
        except ValueError:
            continue  # the log check names a damaged entry
        if row["event"] == "ingest" and entry.get("archive_no") not in expected:
            data = bundles.manifest(archive.catalogue, entry.get("bundle_id"))
            if data:
                dossier = json.loads(data)["dossier"]
                expected[dossier["archive_no"]] = {f: dossier.get(f) for f in IDENTITY_FIELDS}
                expected[dossier["archive_no"]]["kind"] = dossier.get("kind") or "personnel"
                expected[dossier["archive_no"]]["unit"] = entry.get("unit")  # the uploading station's
        elif row["event"] == "change.apply" and entry.get("kind") == "edit_dossier":
            payload = entry.get("payload") or {}
            expected.setdefault(payload.get("archive_no"), {}).update(payload.get("fields") or {})
    problems = []
    for d in store_dossiers.every(archive.catalogue):
        want = expected.get(d["archive_no"])
        if want is None:
            problems.append(CatalogueMismatch(f"dossier {d['archive_no']}", "no ingest in the audit log created it"))
            continue
        problems += [FieldMismatch(f"dossier {d['archive_no']}", f, d[f], want[f],
                                   "the signed manifest and the approved changes")
                     for f in (*IDENTITY_FIELDS, "unit") if f in want and d[f] != want[f]]
    return problems


def _check_bundle(archive: Archive, bundle: dict, stations: dict, full: bool, report: Report):
    bid = bundle["id"]
    data = bytes(bundle["manifest"])
    if full:
        key = stations.get(bundle["station_id"])
        try:
            if key is None:
                raise ContractError(f"station {bundle['station_id']} is not registered")
            manifest_format.verify(data, bytes(bundle["signature"]), key)
            receipt_format.verify(bytes(bundle["receipt"]), bytes(bundle["receipt_signature"]),
                                  archive.public_key, bid)
        except ContractError as exc:
            yield SignatureInvalid(bid, str(exc))
    manifest = json.loads(data)
    dossier, material = manifest["dossier"]["archive_no"], manifest["material"]["item"]
    subject = f"material {dossier} {material}"
    yield from _bundle_row_problems(bundle, data, manifest)
    row = materials.of_bundle(archive.catalogue, bid)
    if row is None:
        yield from _check_earlier_version(archive, bid, manifest, subject)
        return
    signed = {"archive_no": dossier, "item": material, "category": parse_item(material).category,
              **{f: manifest["material"].get(f) for f in MATERIAL_FIELDS}}
    for name, value in signed.items():
        if row[name] != value:
            yield FieldMismatch(subject, name, row[name], value)
    # The sender a dossier's listing shows (kept on the row since migration 0015) is the one that signed.
    if row["station_id"] != manifest["station_id"]:
        yield SenderMismatch(subject, row["station_id"], manifest["station_id"], bid)
    pages = materials.pages_of(archive.catalogue, row["id"])
    report.pages += len(pages)
    yield from _page_problems(subject, pages, manifest["pages"])
    for page in pages:
        if not archive.blobs.has(page["sha256"]):
            yield BlobMissing(archive.blobs.where(page["sha256"]), page["sha256"])


def _bundle_row_problems(bundle: dict, data: bytes, manifest: dict):
    """A bundle's id is the digest of its manifest, and its station the one the manifest names."""
    subject = f"bundle {bundle['id'][:12]}"
    if sha256_hex(data) != bundle["id"]:
        yield CatalogueMismatch(subject, f"its manifest's SHA-256 is {sha256_hex(data)}, not the bundle's id")
    if bundle["station_id"] != manifest["station_id"]:
        yield FieldMismatch(subject, "station_id", bundle["station_id"], manifest["station_id"])


def _page_problems(subject: str, stored: list[dict], signed: list[dict]):
    """Each catalogued page against its signed manifest entry, field by field (the record key by key)."""
    catalogued, listed = {p["n"]: p for p in stored}, {p["n"]: p for p in signed}
    for n in sorted(catalogued.keys() | listed.keys()):
        where = f"{subject} page {n}"
        if n not in catalogued:
            yield CatalogueMismatch(where, "listed in the signed manifest but not catalogued")
            continue
        if n not in listed:
            yield CatalogueMismatch(where, "catalogued but not listed in the signed manifest")
            continue
        page, entry = catalogued[n], listed[n]
        for name in PAGE_FIELDS:
            if page[name] != entry[name]:
                yield FieldMismatch(where, name, page[name], entry[name])
        record = json.loads(page["record_json"])
        for key in sorted(record.keys() | entry["record"].keys()):
            if record.get(key) != entry["record"].get(key):
                yield FieldMismatch(where, f"record.{key}", record.get(key), entry["record"].get(key))


def _check_earlier_version(archive: Archive, bid: str, manifest: dict, subject: str):
    """A committed bundle no longer current must be a recorded earlier version, ended by an applied change."""
    row = materials.version_of_bundle(archive.catalogue, bid)
    if row is None:
        yield CatalogueMismatch(subject, f"bundle {bid[:12]} is committed but not catalogued, now or as an earlier version")
        return
    if row["change_state"] != "applied":
        yield CatalogueMismatch(subject, f"version {row['version']} ended without an applied four-eyes change")
    where = f"{subject} version {row['version']}"
    signed = {"archive_no": manifest["dossier"]["archive_no"], "item": manifest["material"]["item"],
              "title": manifest["material"]["title"], "page_count": manifest["material"]["page_count"],
              "pages": [[p["n"], p["sha256"], p["bytes"]] for p in manifest["pages"]]}
    stored = dict(row, pages=json.loads(row["pages"]))
    for name, value in signed.items():
        if stored[name] != value:
            yield FieldMismatch(where, name, stored[name], value)


def _quarantine_problems(archive: Archive) -> list[Problem]:
    """Each quarantined bundle's dossier, item and station as its signed manifest gives them."""
    problems = []
    for row in store_quarantine.every_with_bundle(archive.catalogue):
        data = bytes(row["manifest"])
        manifest = json.loads(data)
        problems += _bundle_row_problems(dict(row, station_id=row["bundle_station"]), data, manifest)
        signed = {"archive_no": manifest["dossier"]["archive_no"], "item": manifest["material"]["item"],
                  "station_id": manifest["station_id"]}
        problems += [FieldMismatch(f"quarantined bundle {row['bundle_id'][:12]}", name, row[name], value)
                     for name, value in signed.items() if row[name] != value]
    return problems


def _station_problems(archive: Archive) -> list[Problem]:
    """Each station's unit and key as its last registration logged them, and revoked if the log says so."""
    logged: dict[str, dict] = {}
    revoked = set()
    for row in audit_log.of_events(archive.catalogue, ("station.register", "station.revoke")):
        try:
            entry = json.loads(row["entry"])
        except ValueError:
            continue  # the log check names a damaged entry
        if row["event"] == "station.register":
            logged[row["subject"]] = entry
        else:
            revoked.add(row["subject"])
    problems = []
    source = "the audit log's registration"
    for station in store_stations.every(archive.catalogue):
        subject, entry = f"station {station['id']}", logged.get(station["id"])
        if entry is None:
            problems.append(CatalogueMismatch(subject, "no registration in the audit log created it"))
            continue
        key = keys.fingerprint(bytes(station["public_key"]))
        for name, value, said in (("unit", station["unit"], entry.get("unit")), ("key", key, entry.get("key"))):
            if value != said:
                problems.append(FieldMismatch(subject, name, value, said, source))
        if station["id"] in revoked and not station["revoked_at"]:
            problems.append(CatalogueMismatch(subject, "the audit log records its revocation but the catalogue "
                                                       "does not: its uploads would be accepted"))
    return problems


def _seal_problems(archive: Archive) -> list[Problem]:
    """Each dossier is sealed, and transferred, exactly when the audit log's last such entry of it says so."""
    logged: dict[str, dict] = {}
    for row in audit_log.of_events(archive.catalogue, ("dossier.seal", "dossier.unseal", "dossier.transfer")):
        try:
            entry = json.loads(row["entry"])
        except ValueError:
            continue  # the log check names a damaged entry
        column = "transferred_by_change" if row["event"] == "dossier.transfer" else "sealed_by_change"
        logged.setdefault(entry.get("archive_no"), {})[column] = (
            None if row["event"] == "dossier.unseal" else entry.get("change"))
    problems = []
    for d in store_dossiers.every(archive.catalogue):
        for column, what in (("sealed_by_change", "sealed"), ("transferred_by_change", "transferred")):
            want = logged.get(d["archive_no"], {}).get(column)
            if d[column] != want:
                said = f"{what} by change #{want}" if want else f"not {what}"
                problems.append(CatalogueMismatch(
                    f"dossier {d['archive_no']}",
                    f"{column} is {d[column]!r} in the catalogue, but the audit log says {said}"))
    return problems
