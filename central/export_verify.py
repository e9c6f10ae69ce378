"""Check an exported bag offline, with nothing but the bag: every problem, not the first.

The bag must be a valid BagIt bag (bagit-python's validator); its index signed by the archive key
it carries (compare that key's fingerprint with the archive's published one, or pass it to be
required); each manifest signed by its station's key, which the archive's log registered; each
page the bytes its manifest signed, in its place, none added or missing; each receipt the
archive's, for that manifest; each ingest, registration and the export itself included in the
signed checkpoint; the 目录 listing as the index says; the SM3 manifest true to the payload.
"""

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import bagit

from quire import checkpoint as checkpoint_format
from quire import keys, merkle
from quire import manifest as manifest_format
from quire import receipt as receipt_format
from quire.canonical import parse_json_object, sha256_hex
from quire.errors import ContractError

from .store.blobs import sm3
from .export import KNOWN_FORMATS, LISTING, LISTING_COLUMNS, QUIRE_DIR, SM3_MANIFEST, bundle_files, page_file
from .problems import Problem
from .verify import DigestMismatch, SignatureInvalid


def BagInvalid(detail):
    return Problem("BagInvalid", "bag", detail)


def ExportInvalid(subject, detail):
    return Problem("ExportInvalid", subject, detail)


def PageMissing(path):
    return Problem("PageMissing", path, "the signed manifest lists this page but the bag has no file for it")


def PageAdded(path):
    return Problem("PageAdded", path, "a file no signed manifest lists")


def PageOutOfOrder(path, n, holds):
    return Problem("PageOutOfOrder", path, f"should be page {n} but holds the image signed as page {holds}")


def NotInLog(subject, detail):
    return Problem("NotInLog", subject, detail)


def ListingMismatch(subject, detail):
    return Problem("ListingMismatch", subject, detail)


def Sm3Mismatch(path, detail):
    return Problem("Sm3Mismatch", path, detail)


@dataclass
class ExportReport:
    archive_no: str | None = None
    archive_key: str | None = None
    transfer_to: str | None = None
    materials: int = 0
    pages: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_export(bag_dir: Path, expect_key: str | None = None) -> ExportReport:
    """Check the bag at ``bag_dir``; ``expect_key`` is the archive's fingerprint when the caller knows it."""
    report = ExportReport()
    bag_dir = Path(bag_dir)
    report.problems += _bag_problems(bag_dir)
    data = bag_dir / "data"
    try:
        public_key = bytes.fromhex((data / QUIRE_DIR / "archive-key.pub").read_text().strip())
        index_bytes = (data / QUIRE_DIR / "export.json").read_bytes()
        signature = bytes.fromhex((data / QUIRE_DIR / "export.sig").read_text().strip())
        keys.verify(public_key, keys.EXPORT_CONTEXT, index_bytes, signature, "export index")
        index = parse_json_object(index_bytes, "export index")
        if index.get("format") not in KNOWN_FORMATS:
            raise ContractError(f"unknown export format {index.get('format')!r}; known: {', '.join(KNOWN_FORMATS)}")
    except (OSError, ValueError, ContractError) as exc:
        report.problems.append(ExportInvalid("data/quire/export.json", f"{exc}; nothing in the bag can be trusted"))
        return report
    report.archive_no, report.archive_key = index["archive_no"], keys.fingerprint(public_key)
    if expect_key and expect_key != report.archive_key:
        report.problems.append(ExportInvalid("data/quire/archive-key.pub",
                                             f"the bag is signed by {report.archive_key}, not by {expect_key}"))
    logged = _log_problems(data, public_key, index, index_bytes, report)
    listed = {m["item"] for m in index["materials"]}
    for m in index["materials"]:
        report.materials += 1
        _check_material(data, m, index, public_key, logged, report)
    for folder in sorted(p for p in data.iterdir() if p.is_dir() and p.name != QUIRE_DIR and p.name not in listed):
        report.problems.append(ExportInvalid(f"data/{folder.name}", "a material the signed index does not list"))
    report.problems += _listing_problems(data, index)
    report.problems += _sm3_problems(bag_dir)
    report.problems = list(dict.fromkeys(report.problems))
    return report


def _bag_problems(bag_dir: Path) -> list[Problem]:
    """bagit-python's own verdict, one problem per detail it gives."""
    try:
        bagit.Bag(str(bag_dir)).validate()
    except bagit.BagValidationError as exc:
        return [BagInvalid(str(d)) for d in exc.details] or [BagInvalid(exc.message)]
    except bagit.BagError as exc:
        return [BagInvalid(str(exc))]
    return []


def _log_problems(data: Path, public_key: bytes, index: dict, index_bytes: bytes, report: ExportReport) -> dict:
    """Check the checkpoint and each proof; return the proven entries by (event, subject)."""
    try:
        cp = checkpoint_format.from_json(json.loads((data / QUIRE_DIR / "checkpoint.json").read_bytes()))
        checkpoint_format.verify(cp, public_key)
        proofs = json.loads((data / QUIRE_DIR / "proofs.json").read_bytes())["entries"]
    except (OSError, ValueError, KeyError, TypeError, ContractError) as exc:
        report.problems.append(NotInLog("data/quire/checkpoint.json", f"no signed checkpoint to prove against ({exc})"))
        return {}
    proven = {}
    for p in proofs:
        entry = p["entry"].encode()
        if not merkle.verify_inclusion(merkle.leaf_hash(entry), p["idx"], cp.tree_size,
                                       [bytes.fromhex(h) for h in p["proof"]], cp.root_hash):
            report.problems.append(NotInLog(f"audit entry #{p['idx']}", f"not in the log of {cp.tree_size} entries "
                                                                        "the checkpoint signs"))
            continue
        body = json.loads(entry)
        subject = (body.get("bundle_id") or body.get("station_id") or body.get("export_sha256")
                   or body.get("archive_no"))
        proven[(body.get("event"), subject)] = body
    if ("dossier.export", sha256_hex(index_bytes)) not in proven:
        report.problems.append(NotInLog("data/quire/export.json", "the archive's log has no proven entry for this "
                                                                  "export"))
    transfer = index.get("transfer")
    if transfer:
        entry = proven.get(("dossier.transfer", index["archive_no"])) or {}
        if (entry.get("to"), entry.get("change")) != (transfer["to"], transfer["change"]):
            report.problems.append(NotInLog("data/quire/export.json", f"the log proves no approved transfer of "
                                                                      f"the dossier to {transfer['to']}"))
        report.transfer_to = transfer["to"]
    for station_id, key_hex in index["stations"].items():
        entry = proven.get(("station.register", station_id))
        if entry is None or entry.get("key") != keys.fingerprint(bytes.fromhex(key_hex)):
            report.problems.append(NotInLog(f"station {station_id}", "the log proves no registration of the key "
                                                                     "the index gives it"))
    return proven


def _check_material(data: Path, m: dict, index: dict, public_key: bytes, logged: dict, report: ExportReport) -> None:
    folder, where = data / m["item"], f"data/{m['item']}"
    try:
        manifest_bytes = (folder / "manifest.json").read_bytes()
        signature = bytes.fromhex((folder / "manifest.sig").read_text().strip())
        receipt = ((folder / "receipt.json").read_bytes(), bytes.fromhex((folder / "receipt.sig").read_text().strip()))
    except (OSError, ValueError) as exc:
        report.problems.append(ExportInvalid(where, f"material {m['item']} is incomplete ({exc})"))
        return
    bundle_id = sha256_hex(manifest_bytes)
    if bundle_id != m["bundle_id"]:
        report.problems.append(ExportInvalid(f"{where}/manifest.json", f"is bundle {bundle_id[:12]}, but the signed "
                                                                       f"index lists {m['bundle_id'][:12]}"))
    try:
        manifest_format.verify(manifest_bytes, signature, bytes.fromhex(index["stations"][m["station_id"]]))
    except ContractError as exc:
        report.problems.append(SignatureInvalid(bundle_id[:12], f"{where}/manifest.sig: not station {m['station_id']}'s "
                                                                f"signature ({exc})"))
    try:
        receipt_format.verify(*receipt, public_key, m["bundle_id"])
    except ContractError as exc:
        report.problems.append(ExportInvalid(f"{where}/receipt.json", str(exc)))
    if ("ingest", m["bundle_id"]) not in logged:
        report.problems.append(NotInLog(f"bundle {m['bundle_id'][:12]}", "the log proves no ingest of it"))
    try:
        manifest = manifest_format.read(manifest_bytes)
    except ContractError as exc:
        report.problems.append(ExportInvalid(f"{where}/manifest.json", str(exc)))
        return
    said = (manifest["dossier"]["archive_no"], manifest["material"]["item"], manifest["material"]["page_count"])
    if said != (index["archive_no"], m["item"], m["page_count"]):
        report.problems.append(ExportInvalid(f"{where}/manifest.json", f"is for {said[0]} {said[1]} with {said[2]} "
                                                                       "pages, not what the index lists"))
    report.problems += _page_problems(folder, where, manifest, report)


def _page_problems(folder: Path, where: str, manifest: dict, report: ExportReport) -> list[Problem]:
    """Each page file is the signed page at its place, each master and cover sheet the signed one; none
    missing, none added."""
    pages = manifest["pages"]
    expected = dict(bundle_files(manifest))
    page_names = {page_file(p["n"], p["media_type"]) for p in pages}
    signed_as = {p["sha256"]: p["n"] for p in pages}
    found = {p.name for p in folder.iterdir() if p.is_file()} - {"manifest.json", "manifest.sig", "receipt.json",
                                                                 "receipt.sig"}
    problems = [PageAdded(f"{where}/{name}") for name in sorted(found - set(expected))]
    for name, page in expected.items():
        path = f"{where}/{name}"
        if name not in found:
            problems.append(PageMissing(path))
            continue
        report.pages += name in page_names
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        if digest == page["sha256"]:
            continue
        if digest in signed_as and name in page_names:
            problems.append(PageOutOfOrder(path, page["n"], signed_as[digest]))
        else:
            problems.append(DigestMismatch(path, page["sha256"], digest))
    return problems


def _listing_problems(data: Path, index: dict) -> list[Problem]:
    """The 目录 is the file the index signed, row for row the materials it lists."""
    try:
        raw = (data / LISTING).read_bytes()
    except OSError:
        return [ListingMismatch(f"data/{LISTING}", "missing")]
    if sha256_hex(raw) != index["listing_sha256"]:
        return [ListingMismatch(f"data/{LISTING}", "not the listing the archive signed in the index")]
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    if tuple(rows[0]) != LISTING_COLUMNS or [r[2] for r in rows[1:]] != [m["item"] for m in index["materials"]]:
        return [ListingMismatch(f"data/{LISTING}", "its rows are not the materials the index lists")]
    return []


def _sm3_problems(bag_dir: Path) -> list[Problem]:
    """The SM3 manifest lists every payload file once, with its SM3."""
    try:
        lines = (bag_dir / SM3_MANIFEST).read_text(encoding="utf-8").splitlines()
    except OSError:
        return [Sm3Mismatch(SM3_MANIFEST, "missing: the bag carries no SM3 digests")]
    listed = dict(reversed(line.split(" ", 1)) for line in lines if line.strip())
    payload = {p.relative_to(bag_dir).as_posix() for p in (bag_dir / "data").rglob("*") if p.is_file()}
    problems = [Sm3Mismatch(path, f"a payload file {SM3_MANIFEST} does not list") for path in sorted(payload - set(listed))]
    problems += [Sm3Mismatch(path, f"listed in {SM3_MANIFEST} but not in the bag") for path in sorted(set(listed) - payload)]
    for path in sorted(payload & set(listed)):
        found = sm3((bag_dir / path).read_bytes()).hexdigest()
        if found != listed[path]:
            problems.append(Sm3Mismatch(path, f"expected SM3 {listed[path]}, found {found}"))
    return problems
