"""Quarantine: bundles refused at commit, kept (manifest, signature, page files) with every reason."""

import json
import re

from quire.db import utcnow

from . import audit
from .gate import guard
from .archive import Archive
from .errors import CentralError, UnknownBundle
from .permissions import Actor, scoped_units
from .standards import Findings
from .store import bundles
from .store import quarantine as store_quarantine


def hold(db, archive: Archive, bundle_id: str, station: dict, manifest: dict,
         findings: Findings, conflicts: list[str]) -> None:
    """Record a refused bundle with its standards findings and catalogue conflicts, and log it."""
    reasons = [v.as_dict() for v in findings.violations]
    reasons += [{"rule": "CatalogueConflict", "severity": "reject", "message": p} for p in conflicts]
    store_quarantine.hold(db, {
        "bundle_id": bundle_id, "station_id": station["id"], "unit": station["unit"],
        "archive_no": manifest["dossier"]["archive_no"], "item": manifest["material"]["item"],
        "profile": findings.profile.name, "profile_version": findings.profile.version,
        "profile_sha256": findings.profile.sha256, "reasons": json.dumps(reasons, ensure_ascii=False),
        "quarantined_at": utcnow()})
    rejected = sorted({r["rule"] for r in reasons if r["severity"] == "reject"})
    audit.quarantined(db, archive, bundle_id, station, manifest, findings.profile.label, rejected)


def listing(archive: Archive, actor: Actor) -> list[dict]:
    """Quarantined bundles of ``actor``'s units, newest first, each with the rules it broke."""
    guard(archive, actor, "quarantine.read")
    out = store_quarantine.held(archive.catalogue, scoped_units(actor))
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
    rows = store_quarantine.by_prefix(archive.catalogue, bundle, scoped_units(actor))
    if not rows:
        raise UnknownBundle(f"no quarantined bundle {bundle}; 'quire-central quarantine ls' lists them")
    if len(rows) > 1:
        raise CentralError(f"{bundle} matches {len(rows)} quarantined bundles; give more of the id")
    row = rows[0]
    guard(archive, actor, "quarantine.read", unit=row["unit"], archive_no=row["archive_no"])  # 回避
    row["reasons"] = json.loads(row["reasons"])
    manifest = json.loads(bundles.manifest(archive.catalogue, row["bundle_id"]))
    row["title"] = manifest["material"].get("title")
    row["pages"] = len(manifest["pages"])
    row["operator"] = manifest["batch"].get("operator")
    return row
