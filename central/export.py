"""Export a dossier (or one material) as a BagIt bag that anyone can verify offline.

The bag's payload holds, per material, the page files, the station-signed manifest and the
archive-signed receipt; the archive's public key; an index of the export signed by that key; the
signed audit checkpoint that follows the export's own log entry, with inclusion proofs of every
ingest, station registration and the export itself; and the 目录 listing as CSV. bagit-python
writes the SHA-256 and SHA-512 manifests; an SM3 manifest (密评, GB/T 39786) sits beside them as
a tag file, which bagit's validator checks the fixity of but does not read.
"""

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import bagit

from quire import keys
from quire.canonical import canonical_bytes, sha256_hex
from quire.db import utcnow
from quire.manifest import MEDIA_TYPES

from . import audit, sealing
from .archive import Archive
from .errors import CentralError, NotFound
from .gate import dossier_unit, guard
from .listing import sort_items
from .permissions import Actor
from .store import audit_log, blob_index, consultations
from .store import dossiers as store_dossiers
from .store import materials as store_materials
from .store import stations as store_stations
from .store.blobs import sm3

FORMAT = "quire.export/1"
KNOWN_FORMATS = (FORMAT,)
LISTING = "目录.csv"
LISTING_COLUMNS = ("序号", "档号", "类号", "题名", "制成日期", "页数", "备注", "文件")
SM3_MANIFEST = "manifest-sm3.txt"
QUIRE_DIR = "quire"   # inside data/: the export's index, its signature, the key, checkpoint and proofs
DOSSIER_FIELDS = ("name", "sex", "birth_date", "post", "kind", "unit")


def page_file(n: int, media_type: str) -> str:
    """The name of page ``n`` inside its material's folder: the order is in the name."""
    return f"{n:04d}{MEDIA_TYPES[media_type]}"


def bundle_files(manifest: dict) -> list[tuple[str, dict]]:
    """Every file the station signed into a bundle, with its name in the material's folder: the pages, each
    page's preservation master, and the cover sheet (both sides) the material was split from its feed at."""
    files = [(page_file(p["n"], p["media_type"]), p) for p in manifest["pages"]]
    for p in manifest["pages"]:
        master = p.get("record", {}).get("master") if isinstance(p.get("record"), dict) else None
        if master:
            files.append((f"master-{p['n']:04d}{MEDIA_TYPES[master['media_type']]}", master))
    sheet = (manifest.get("material") or {}).get("cover_sheet")
    if sheet:
        files.append((f"cover-sheet{MEDIA_TYPES[sheet['media_type']]}", sheet))
        if sheet.get("back"):
            files.append((f"cover-sheet-back{MEDIA_TYPES[sheet['back']['media_type']]}", sheet["back"]))
    return files


def export(archive: Archive, actor: Actor, archive_no: str, item: str | None, out: Path,
           consultation_id: int | None = None, reason: str = "", transfer: bool = False) -> dict:
    """Write the bag at ``out`` (which must not exist yet); checked, logged, then written. Returns the index.

    ``transfer``: the transfer (转递) package of a dossier whose transfer was approved, naming the recipient.
    """
    unit = dossier_unit(archive, archive_no)
    if transfer:
        guard(archive, actor, "dossier.transfer_out", unit=unit, archive_no=archive_no)
        closed = sealing.closure(archive, archive_no)
        if closed["transferred_to"] is None or item:
            raise CentralError(f"a transfer package holds a whole dossier whose transfer was approved; propose it "
                               f"with 'quire-central transfer {archive_no} --to ORGANISATION --reason …' and have a "
                               "second archivist of the unit approve it")
        transferred = {"to": closed["transferred_to"], "change": closed["transferred_by_change"]}
    else:
        consultation = consultations.get(archive.catalogue, consultation_id) if consultation_id else None
        guard(archive, actor, "dossier.export", unit=unit, archive_no=archive_no, consultation=consultation)
        transferred = None
    out = Path(out)
    if out.exists():
        raise CentralError(f"{out} exists already; name a new directory for the bag")
    materials = _materials(archive, archive_no, item)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        index = _write(archive, actor, stage, archive_no, item, unit, materials, consultation_id, reason, transferred)
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return index


def _materials(archive: Archive, archive_no: str, item: str | None) -> list[dict]:
    rows = sort_items(store_materials.with_bundles(archive.catalogue, archive_no, item))
    if not rows:
        raise NotFound(f"dossier {archive_no} has no catalogued material" + (f" {item}" if item else ""))
    return rows


def _write(archive: Archive, actor: Actor, stage: Path, archive_no: str, item: str | None, unit: str,
           materials: list[dict], consultation_id: int | None, reason: str, transferred: dict | None) -> dict:
    sm3_lines, listing, entries, stations = [], [], [], {}
    for m in materials:
        folder = stage / m["item"]
        folder.mkdir()
        manifest = json.loads(m["manifest"])
        for name, data in (("manifest.json", bytes(m["manifest"])), ("manifest.sig", bytes(m["signature"]).hex()),
                           ("receipt.json", bytes(m["receipt"])), ("receipt.sig", bytes(m["receipt_signature"]).hex())):
            sm3_lines.append(_put(folder / name, data.encode() if isinstance(data, str) else data, stage))
        for name, blob in bundle_files(manifest):
            sm3_lines.append(_copy_blob(archive, blob["sha256"], folder / name, stage))
        stations[m["station_id"]] = bytes(store_stations.get(archive.catalogue, m["station_id"])["public_key"]).hex()
        entries.append(_entry_index(archive, "ingest", m["bundle_id"]))
        listing.append([len(listing) + 1, archive_no, m["item"], m["title"], m["date_formed"] or "",
                        m["page_count"], m["remarks"] or "", f"{m['item']}/"])
    for station_id, public_key in stations.items():
        entries.append(_registration(archive, station_id, public_key))
    if transferred:
        entries.append(_entry_index(archive, "dossier.transfer", archive_no))
    listing_bytes = _csv(listing)
    sm3_lines.append(_put(stage / LISTING, listing_bytes, stage))
    held = store_dossiers.get(archive.catalogue, archive_no)
    dossier = {k: held[k] for k in DOSSIER_FIELDS} if held else None
    index = {
        "format": FORMAT,
        "archive": keys.fingerprint(archive.public_key),
        "archive_no": archive_no,
        "dossier": dossier,
        "item": item,             # None: the whole dossier as catalogued at the time of export
        "materials": [{"item": m["item"], "title": m["title"], "page_count": m["page_count"],
                       "bundle_id": m["bundle_id"], "station_id": m["station_id"]} for m in materials],
        "stations": stations,
        "listing_sha256": sha256_hex(listing_bytes),
        "exported_at": utcnow(),
        "exported_by": actor.label,
        "reason": reason.strip(),
        "consultation": consultation_id,
        "transfer": transferred,   # {"to", "change"}: the package that carries the dossier to its new holder
    }
    index_bytes = canonical_bytes(index)
    with archive.catalogue.transaction() as db:
        export_entry, cp = audit.record(db, archive, "dossier.export", archive_no, {
            "archive_no": archive_no, "items": [m["item"] for m in materials], "export_sha256": sha256_hex(index_bytes),
            "consultation": consultation_id, "reason": reason.strip(),
            "transfer_to": transferred and transferred["to"]}, by=actor.label)
    entries.append(export_entry)
    proofs = [{"idx": i, "entry": audit.entry_bytes(archive, i).decode(),
               "proof": [h.hex() for h in audit.inclusion_proof(archive, i, cp.tree_size)]} for i in entries]
    quire_dir = stage / QUIRE_DIR
    quire_dir.mkdir()
    for name, data in (("export.json", index_bytes),
                       ("export.sig", keys.sign(archive.key, keys.EXPORT_CONTEXT, index_bytes).hex().encode()),
                       ("archive-key.pub", archive.public_key.hex().encode()),
                       ("checkpoint.json", canonical_bytes(cp.to_json())),
                       ("proofs.json", canonical_bytes({"entries": proofs}))):
        sm3_lines.append(_put(quire_dir / name, data, stage))
    bag = bagit.make_bag(str(stage), {
        "Source-Organization": unit, "External-Identifier": archive_no,
        "External-Description": f"Quire export ({FORMAT}) of dossier {archive_no}",
        "Bag-Software-Agent": "quire-central export", "Quire-Export-Format": FORMAT,
        "Quire-Archive-Key": keys.fingerprint(archive.public_key)}, checksums=["sha256", "sha512"])
    (stage / SM3_MANIFEST).write_text("".join(f"{digest} data/{path}\n" for digest, path in sm3_lines),
                                      encoding="utf-8")
    bag.save()  # the tag manifests now cover the SM3 manifest too
    return index


def _put(path: Path, data: bytes, stage: Path) -> tuple[str, str]:
    path.write_bytes(data)
    return sm3(data).hexdigest(), path.relative_to(stage).as_posix()


def _copy_blob(archive: Archive, sha256: str, dest: Path, stage: Path) -> tuple[str, str]:
    """Copy one stored blob, refusing one whose bytes no longer hash to its name; return its SM3 line.

    The SM3 is the one recorded when the blob arrived: bytes that hash to the blob's SHA-256 are the bytes
    it was computed over, so they are not hashed with SM3 again (SM3 is five times slower than SHA-256
    here: it was half an export's time). A recorded SM3 altered since is still caught: verify and the scrub
    compare it with the bytes, and verify-export with the page it lists. A blob stored before SM3 was
    recorded is hashed with it here.
    """
    known_sm3 = blob_index.sm3_of(archive.catalogue, sha256)
    h256, h_sm3 = hashlib.sha256(), None if known_sm3 else sm3()
    with archive.blobs.open(sha256) as src, open(dest, "wb") as dst:
        while chunk := src.read(1 << 20):
            h256.update(chunk)
            if h_sm3 is not None:
                h_sm3.update(chunk)
            dst.write(chunk)
    if h256.hexdigest() != sha256:
        raise CentralError(f"blob {sha256} is damaged in the archive (its bytes no longer hash to its SHA-256); "
                           "nothing was exported — run 'quire-central verify' and restore it from a copy")
    return known_sm3 or h_sm3.hexdigest(), dest.relative_to(stage).as_posix()


def _entry_index(archive: Archive, event: str, subject: str) -> int:
    row = audit_log.newest(archive.catalogue, event, subject)
    if row is None:
        raise CentralError(f"the audit log has no {event} entry for {subject}; run 'quire-central verify'")
    return row["idx"]


def _registration(archive: Archive, station_id: str, public_key_hex: str) -> int:
    """The latest registration entry of the station's current key."""
    fingerprint = keys.fingerprint(bytes.fromhex(public_key_hex))
    for row in audit_log.of_events(archive.catalogue, ("station.register",), station_id, newest_first=True):
        if json.loads(row["entry"]).get("key") == fingerprint:
            return row["idx"]
    raise CentralError(f"the audit log has no registration of station {station_id}'s key; run 'quire-central verify'")


def _csv(rows: list[list]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")   # RFC 4180
    writer.writerow(LISTING_COLUMNS)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8-sig")   # the BOM lets spreadsheet programs read the Chinese
