"""Quarantine: bundles refused at commit, kept (manifest, signature, page files) with every reason."""

import json
import re

from quire.db import utcnow

from . import audit
from .access import guard
from .archive import Archive
from .errors import CentralError, UnknownBundle
from .permissions import Actor, readable_units
from .standards import Findings


def hold(db, archive: Archive, bundle_id: str, station: dict, manifest: dict,
         findings: Findings, conflicts: list[str]) -> None:
    """Record a refused bundle with its standards findings and catalogue conflicts, and log it."""
    reasons = [v.as_dict() for v in findings.violations]
    reasons += [{"rule": "CatalogueConflict", "severity": "reject", "message": p} for p in conflicts]
    db.execute(
        "INSERT OR IGNORE INTO quarantine (bundle_id, station_id, unit, archive_no, item, profile,"
        " profile_version, profile_sha256, reasons, quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [bundle_id, station["id"], station["unit"], manifest["dossier"]["archive_no"], manifest["material"]["item"],
         findings.profile.name, findings.profile.version, findings.profile.sha256,
         json.dumps(reasons, ensure_ascii=False), utcnow()],
    )
    rejected = sorted({r["rule"] for r in reasons if r["severity"] == "reject"})
    audit.quarantined(db, archive, bundle_id, station, manifest, findings.profile.label, rejected)


def listing(archive: Archive, actor: Actor) -> list[dict]:
    """Quarantined bundles of ``actor``'s units, newest first, each with the rules it broke."""
    guard(archive, actor, "quarantine.read")
    where, params = readable_units(actor)
    out = archive.catalogue.query(f"SELECT * FROM quarantine WHERE released_by_change IS NULL AND {where}"
                                  " ORDER BY quarantined_at DESC, bundle_id", params)
    for row in out:
        reasons = json.loads(row.pop("reasons"))
        row["rules"] = ",".join(sorted({r["rule"] for r in reasons if r["severity"] == "reject"}))
        row["reasons"] = sum(r["severity"] == "reject" for r in reasons)
        row["profile"] = f"{row['profile']} v{row.pop('profile_version')}" if row["profile"] else ""
    return out


def show(archive: Archive, actor: Actor, bundle: str) -> dict:
    """One quarantined bundle of ``actor``'s units by id or unique id prefix, with every reason and its
    manifest summary."""
    guard(archive, actor, "quarantine.read")
    if not re.fullmatch(r"[0-9a-f]{6,64}", bundle.lower()):
        raise CentralError("give the bundle id, or at least its first 6 hex digits "
                           "('quire-central quarantine ls' lists them)")
    where, params = readable_units(actor)
    rows = archive.catalogue.query(f"SELECT * FROM quarantine WHERE bundle_id LIKE ? || '%' AND {where}",
                                   [bundle.lower(), *params])
    if not rows:
        raise UnknownBundle(f"no quarantined bundle {bundle}; 'quire-central quarantine ls' lists them")
    if len(rows) > 1:
        raise CentralError(f"{bundle} matches {len(rows)} quarantined bundles; give more of the id")
    row = rows[0]
    guard(archive, actor, "quarantine.read", unit=row["unit"], archive_no=row["archive_no"])  # 回避
    row["reasons"] = json.loads(row["reasons"])
    manifest = json.loads(archive.catalogue.one("SELECT manifest FROM bundles WHERE id = ?", [row["bundle_id"]])["manifest"])
    row["title"] = manifest["material"].get("title")
    row["pages"] = len(manifest["pages"])
    row["operator"] = manifest["batch"].get("operator")
    return row
