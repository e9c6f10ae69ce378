"""Transfer (转递), the receiving archive's side: import a transfer package under one of its own units.

Nothing is catalogued before the whole package verifies (``export_verify``) under the sending
archive's key, which the receiving archivist must name. Each material is then catalogued as if its
station had uploaded it here: the page files are stored, the bundle judged by the unit's standards
profile, catalogued, given this archive's receipt and logged as an ingest; the sending stations are
recorded under their keys, revoked at once (they never upload here); the import itself is logged.
"""

import json
from pathlib import Path

from quire import keys
from quire.db import utcnow

from . import audit, ingest, profile, uploads
from .archive import Archive
from .errors import CentralError
from .export import QUIRE_DIR, bundle_files
from .export_verify import verify_export
from .gate import guard
from .permissions import Actor
from .store import bundles as store_bundles
from .store import dossiers as store_dossiers
from .store import stations as store_stations


def import_package(archive: Archive, actor: Actor, bag: Path, unit: str, from_key: str) -> dict:
    """Verify the package at ``bag`` and catalogue its dossier under ``unit``; return its signed index."""
    guard(archive, actor, "dossier.import", unit=unit)
    report = verify_export(bag, from_key)
    if not report.ok:
        raise CentralError(f"the package does not verify, nothing was imported: "
                           f"{'; '.join(str(p) for p in report.problems)}")
    index = json.loads((Path(bag) / "data" / QUIRE_DIR / "export.json").read_bytes())
    if not index.get("transfer"):
        raise CentralError("this bag is an export, not a transfer package ('export --transfer' at the sending "
                           "archive); nothing was imported")
    archive_no = index["archive_no"]
    if store_dossiers.exists(archive.catalogue, archive_no):
        raise CentralError(f"dossier {archive_no} is catalogued here already; nothing was imported")
    bundles = []
    for m in index["materials"]:
        folder = Path(bag) / "data" / m["item"]
        data = (folder / "manifest.json").read_bytes()
        manifest = json.loads(data)
        for name, _ in bundle_files(manifest):
            archive.blobs.put((folder / name).read_bytes())
        findings = profile.check_bundle(archive, manifest, unit)
        if not findings.ok:
            raise CentralError(f"material {m['item']} breaks unit {unit}'s standards: {'; '.join(findings.reasons())}; "
                               "nothing was imported")
        bundles.append((m, data, bytes.fromhex((folder / "manifest.sig").read_text().strip()), manifest, findings))
    sender = keys.fingerprint(bytes.fromhex((Path(bag) / "data" / QUIRE_DIR / "archive-key.pub").read_text().strip()))
    now = utcnow()
    with archive.catalogue.transaction() as db:
        for station_id, key_hex in index["stations"].items():
            _record_station(db, archive, station_id, bytes.fromhex(key_hex), unit, sender, actor, now)
        for m, data, signature, manifest, findings in bundles:
            store_bundles.add_offered(db, m["bundle_id"], m["station_id"], data, signature, now)
            for _, blob in bundle_files(manifest):
                uploads.record_blob(db, blob["sha256"], blob["bytes"], archive.blobs.rehash(blob["sha256"])[1])
            ingest.catalogue_bundle(db, archive, {"id": m["station_id"], "unit": unit}, m["bundle_id"], manifest,
                                    findings, by=actor.label)
        audit.record(db, archive, "dossier.import", archive_no, {
            "archive_no": archive_no, "unit": unit, "from": sender, "transfer": index["transfer"],
            "items": [m["item"] for m in index["materials"]], "exported_at": index["exported_at"]}, by=actor.label)
    return index


def _record_station(db, archive: Archive, station_id: str, public_key: bytes, unit: str, sender: str,
                    actor: Actor, now: str) -> None:
    """A sending station, known here only so its signatures verify: registered under its key, revoked."""
    existing = store_stations.get(db, station_id)
    if existing:
        if bytes(existing["public_key"]) != public_key:
            raise CentralError(f"station {station_id} is registered here with another key; nothing was imported")
        return
    store_stations.add(db, station_id, public_key, unit, now, revoked_by=actor.label)
    audit.record(db, archive, "station.register", station_id,
                 {"station_id": station_id, "unit": unit, "key": keys.fingerprint(public_key),
                  "imported_from": sender, "uploads": False}, by=actor.label)
