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

from .archive import Archive


@dataclass(frozen=True)
class Problem:
    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.detail}"


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
    for blob in cat.query("SELECT sha256, bytes, sm3 FROM blobs ORDER BY sha256"):
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
    stations = {s["id"]: bytes(s["public_key"]) for s in cat.query("SELECT id, public_key FROM stations")}
    for bundle in cat.query("SELECT * FROM bundles WHERE state = 'committed' ORDER BY committed_at"):
        report.bundles += 1
        report.problems.extend(_check_bundle(archive, bundle, stations, full, report))
    report.problems.extend(_quarantine_problems(archive))
    report.problems.extend(_station_problems(archive))
    report.problems.extend(_seal_problems(archive))
    # Catalogued material that no committed bundle accounts for was inserted behind our back.
    for m in cat.query("SELECT m.archive_no, m.item, m.bundle_id FROM materials m"
                       " LEFT JOIN bundles b ON b.id = m.bundle_id AND b.state = 'committed'"
                       " WHERE b.id IS NULL"):
        report.problems.append(CatalogueMismatch(
            f"material {m['archive_no']} {m['item']}", f"no committed bundle {m['bundle_id']} backs it"))
    from . import audit  # audit builds on this module's Problem

    # The catalogue against the audit log (cheap); full: the log against its signed checkpoints too.
    report.problems.extend(audit.catalogue_problems(archive))
    from .dossiers import identity_problems

    report.problems.extend(identity_problems(archive))
    if full:
        report.problems.extend(audit.verify_log(archive).problems)
    report.problems = list(dict.fromkeys(report.problems))  # one line per problem, however found
    return report


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
    row = archive.catalogue.one("SELECT * FROM materials WHERE bundle_id = ?", [bid])
    if row is None:
        yield from _check_earlier_version(archive, bid, manifest, subject)
        return
    signed = {"archive_no": dossier, "item": material, "category": parse_item(material).category,
              **{f: manifest["material"].get(f) for f in MATERIAL_FIELDS}}
    for name, value in signed.items():
        if row[name] != value:
            yield FieldMismatch(subject, name, row[name], value)
    pages = archive.catalogue.query("SELECT * FROM pages WHERE material_id = ? ORDER BY n", [row["id"]])
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
    row = archive.catalogue.one("SELECT v.*, c.state AS change_state FROM material_versions v"
                                " LEFT JOIN changes c ON c.id = v.change_id WHERE v.bundle_id = ?", [bid])
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
    for row in archive.catalogue.query("SELECT q.*, b.id, b.station_id AS bundle_station, b.manifest"
                                       " FROM quarantine q JOIN bundles b ON b.id = q.bundle_id ORDER BY q.bundle_id"):
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
    for row in archive.catalogue.query("SELECT event, subject, entry FROM audit_entries"
                                       " WHERE event IN ('station.register', 'station.revoke') ORDER BY idx"):
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
    for station in archive.catalogue.query("SELECT * FROM stations ORDER BY id"):
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
    for row in archive.catalogue.query("SELECT event, entry FROM audit_entries WHERE event IN"
                                       " ('dossier.seal', 'dossier.unseal', 'dossier.transfer') ORDER BY idx"):
        try:
            entry = json.loads(row["entry"])
        except ValueError:
            continue  # the log check names a damaged entry
        column = "transferred_by_change" if row["event"] == "dossier.transfer" else "sealed_by_change"
        logged.setdefault(entry.get("archive_no"), {})[column] = (
            None if row["event"] == "dossier.unseal" else entry.get("change"))
    problems = []
    for d in archive.catalogue.query("SELECT archive_no, sealed_by_change, transferred_by_change FROM dossiers"
                                     " ORDER BY archive_no"):
        for column, what in (("sealed_by_change", "sealed"), ("transferred_by_change", "transferred")):
            want = logged.get(d["archive_no"], {}).get(column)
            if d[column] != want:
                said = f"{what} by change #{want}" if want else f"not {what}"
                problems.append(CatalogueMismatch(
                    f"dossier {d['archive_no']}",
                    f"{column} is {d[column]!r} in the catalogue, but the audit log says {said}"))
    return problems
