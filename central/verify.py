"""Re-check the whole archive: blobs against their digests, bundles against their signatures,
the catalogue against the signed manifests. Reports every problem, not the first."""

import json
from dataclasses import dataclass, field

from quire import manifest as manifest_format
from quire import receipt as receipt_format
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


def SizeMismatch(path, expected, found):
    return Problem("SizeMismatch", str(path), f"expected {expected} bytes, found {found}")


def SignatureInvalid(bundle_id, detail):
    return Problem("SignatureInvalid", f"bundle {bundle_id}", detail)


def CatalogueMismatch(subject, detail):
    return Problem("CatalogueMismatch", subject, detail)


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
    for blob in cat.query("SELECT sha256, bytes FROM blobs ORDER BY sha256"):
        report.blobs += 1
        path = archive.blobs.path(blob["sha256"])
        if not path.exists():
            report.problems.append(BlobMissing(path, blob["sha256"]))
            continue
        size = path.stat().st_size
        report.bytes += size
        if size != blob["bytes"]:
            report.problems.append(SizeMismatch(path, blob["bytes"], size))
        elif full:
            found = archive.blobs.files.rehash(blob["sha256"])
            if found != blob["sha256"]:
                report.problems.append(DigestMismatch(path, blob["sha256"], found))
    stations = {s["id"]: bytes(s["public_key"]) for s in cat.query("SELECT id, public_key FROM stations")}
    for bundle in cat.query("SELECT * FROM bundles WHERE state = 'committed' ORDER BY committed_at"):
        report.bundles += 1
        report.problems.extend(_check_bundle(archive, bundle, stations, full, report))
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
    row = archive.catalogue.one("SELECT * FROM materials WHERE bundle_id = ?", [bid])
    if row is None:
        yield from _check_earlier_version(archive, bid, manifest, subject)
        return
    if (row["archive_no"], row["item"], row["page_count"]) != (dossier, material, manifest["material"]["page_count"]):
        yield CatalogueMismatch(
            subject, f"catalogue says {row['archive_no']} {row['item']} with {row['page_count']} pages; "
            f"the signed manifest says {dossier} {material} with {manifest['material']['page_count']}")
    pages = archive.catalogue.query("SELECT n, sha256, bytes FROM pages WHERE material_id = ? ORDER BY n", [row["id"]])
    signed = [(p["n"], p["sha256"], p["bytes"]) for p in manifest["pages"]]
    stored = [(p["n"], p["sha256"], p["bytes"]) for p in pages]
    report.pages += len(stored)
    if stored != signed:
        changed = sorted({n for n, *_ in set(signed) ^ set(stored)})
        yield CatalogueMismatch(subject, f"pages {changed} differ from the signed manifest")
    for n, sha, _size in stored:
        if not archive.blobs.has(sha):
            yield BlobMissing(archive.blobs.path(sha), sha)


def _check_earlier_version(archive: Archive, bid: str, manifest: dict, subject: str):
    """A committed bundle no longer current must be a recorded earlier version, ended by an applied change."""
    row = archive.catalogue.one("SELECT v.*, c.state AS change_state FROM material_versions v"
                                " LEFT JOIN changes c ON c.id = v.change_id WHERE v.bundle_id = ?", [bid])
    if row is None:
        yield CatalogueMismatch(subject, f"bundle {bid[:12]} is committed but not catalogued, now or as an earlier version")
        return
    if row["change_state"] != "applied":
        yield CatalogueMismatch(subject, f"version {row['version']} ended without an applied four-eyes change")
    signed = [[p["n"], p["sha256"], p["bytes"]] for p in manifest["pages"]]
    if (row["archive_no"], row["item"]) != (manifest["dossier"]["archive_no"], manifest["material"]["item"]) \
            or json.loads(row["pages"]) != signed:
        yield CatalogueMismatch(subject, f"earlier version {row['version']} differs from its signed manifest")
