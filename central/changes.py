"""Four eyes (双人复核): changes one authorised person proposes and a second one approves.

Replacing or withdrawing a material, changing a dossier's identity fields and revoking a station
take effect only when a different person holding the same role approves; so do sealing and
unsealing a dossier (``sealing``). A station revocation suspends the station at once (the safe
direction) and becomes final on approval.
"""

import json

from quire.db import utcnow

from . import audit, ingest, profile, sealing, stations
from .archive import Archive
from .errors import CentralError
from .gate import dossier_unit, guard, refuse
from .permissions import CHANGE_ROLES, Actor, PermissionDenied, authorize
from .store import dossiers as store_dossiers
from .store import changes as store_changes
from .store import materials
from .store import quarantine as store_quarantine

IDENTITY_FIELDS = store_dossiers.IDENTITY_COLUMNS
KINDS = ("personnel", "integrity", "party-building")


def propose(archive: Archive, actor: Actor, kind: str, payload: dict, reason: str) -> dict:
    """Record a proposed change (checked now, applied on approval); returns the change."""
    if kind not in CHANGE_ROLES:
        raise CentralError(f"unknown change {kind!r}; one of {', '.join(CHANGE_ROLES)}")
    _may(archive, actor, kind, payload)
    if not reason.strip():
        raise CentralError("give the reason for the change (--reason); it is kept with the change for good")
    subject = _validate(archive, kind, payload)
    with archive.catalogue.transaction() as db:
        waiting = store_changes.open_on(db, kind, subject)
        if waiting:
            raise CentralError(f"change #{waiting} on {subject} already waits for approval; decide it first")
        change_id = store_changes.propose(db, kind, subject, json.dumps(payload, ensure_ascii=False, sort_keys=True),
                                          reason.strip(), actor.label, utcnow())
        audit.record(db, archive, "change.propose", subject,
                     {"change": change_id, "kind": kind, "payload": payload, "reason": reason.strip()}, by=actor.label)
        if kind == "revoke_station":
            stations.suspend(db, archive, payload["station_id"], actor.label, change_id)
    return get(archive, change_id)


def decide(archive: Archive, actor: Actor, change_id: int, approve: bool, note: str = "") -> dict:
    """The second person approves (the change is applied in the same transaction) or refuses."""
    change = get(archive, change_id)
    _may(archive, actor, change["kind"], json.loads(change["payload"]))
    if change["proposed_by"] == actor.label:
        refuse(archive, actor, f"change.{change['kind']}",
               f"change #{change_id} was proposed by {actor.id}; a second person must decide it (双人复核)")
    if change["state"] != "proposed":
        raise CentralError(f"change #{change_id} was already {change['state']}")
    payload = json.loads(change["payload"])
    with archive.catalogue.transaction() as db:
        store_changes.decide(db, change_id, "applied" if approve else "refused", actor.label, utcnow())
        audit.record(db, archive, "change.apply" if approve else "change.refuse", change["subject"],
                     {"change": change_id, "kind": change["kind"], "payload": payload,
                      "proposed_by": change["proposed_by"], "note": note}, by=actor.label)
        if approve:
            _APPLY[change["kind"]](db, archive, actor, change_id, payload, change["reason"])
        elif change["kind"] == "revoke_station":
            stations.reinstate(db, archive, payload["station_id"], actor.label, change_id)
    return get(archive, change_id)


def get(archive: Archive, change_id: int) -> dict:
    row = store_changes.get(archive.catalogue, change_id)
    if row is None:
        raise CentralError(f"no change #{change_id}; 'quire-central changes ls' lists them")
    return row


def listing(archive: Archive, actor: Actor, state: str | None = None) -> list[dict]:
    """The changes ``actor`` proposes and decides: of the kinds their roles handle, on dossiers of their units
    that are neither their own nor a relative's (a listing is scoped, not refused, so nothing is logged)."""
    guard(archive, actor, "change.list")
    kinds = sorted(kind for kind, role in CHANGE_ROLES.items() if role in actor.roles)
    rows = store_changes.of_kinds(archive.catalogue, kinds, state)
    return [c for c in rows if _concerns(archive, actor, c)]


def _concerns(archive: Archive, actor: Actor, change: dict) -> bool:
    archive_no = json.loads(change["payload"]).get("archive_no")
    if archive_no is None:
        return True
    unit = store_dossiers.unit_of(archive.catalogue, archive_no)
    try:
        authorize(actor, f"change.{change['kind']}", unit=unit, archive_no=archive_no)
    except PermissionDenied:
        return False
    return True


def history(archive: Archive, archive_no: str, item: str) -> list[dict]:
    """Every version of a material, oldest first, each with who/when/why it ended."""
    out = []
    for v in materials.versions(archive.catalogue, archive_no, item):
        v.pop("pages")
        out.append(v)
    current = materials.get(archive.catalogue, archive_no, item)
    if current:
        out.append({**{k: current[k] for k in ("archive_no", "item", "version", "bundle_id", "title", "page_count",
                                               "catalogued_at")}, "ended_how": "current"})
    if not out:
        raise CentralError(f"dossier {archive_no} has no material {item}, now or earlier")
    return out


def _may(archive: Archive, actor: Actor, kind: str, payload: dict) -> None:
    # The dossier it touches, if any: a sealed one refuses changes, and sealing is its own unit's staff's.
    archive_no = payload.get("archive_no")
    guard(archive, actor, f"change.{kind}", archive_no=archive_no,
          unit=dossier_unit(archive, archive_no) if archive_no else None)


def _material(archive: Archive, archive_no: str, item: str) -> dict:
    row = materials.get(archive.catalogue, archive_no, item)
    if row is None:
        raise CentralError(f"dossier {archive_no} has no catalogued material {item}")
    return row


def _validate(archive: Archive, kind: str, payload: dict) -> str:
    if kind in ("seal_dossier", "unseal_dossier", "transfer_dossier"):
        return sealing.subject(archive, kind, payload)
    if kind == "revoke_station":
        row = stations.get(archive, payload["station_id"])
        if row["revoked_at"]:
            raise CentralError(f"station {row['id']} is already revoked")
        return f"station:{row['id']}"
    if kind == "edit_dossier":
        fields = payload.get("fields") or {}
        unknown = sorted(set(fields) - set(IDENTITY_FIELDS))
        if unknown or not fields:
            raise CentralError(f"identity fields are {', '.join(IDENTITY_FIELDS)}; not {', '.join(unknown) or 'none'}")
        if "kind" in fields and fields["kind"] not in KINDS:
            raise CentralError(f"dossier kind is one of {', '.join(KINDS)}")
        if not store_dossiers.exists(archive.catalogue, payload["archive_no"]):
            raise CentralError(f"no dossier {payload['archive_no']}")
        return f"dossier:{payload['archive_no']}"
    material = _material(archive, payload["archive_no"], payload["item"])
    subject = f"material:{payload['archive_no']}:{payload['item']}"
    if kind == "withdraw_material":
        return subject
    # replace_material: the replacement is a bundle the catalogue conflict sent to quarantine.
    bundle = _replacement(archive, payload["bundle_id"], payload["archive_no"], payload["item"])
    if bundle["id"] == material["bundle_id"]:
        raise CentralError("that bundle is the current version already")
    payload["bundle_id"] = bundle["id"]
    return subject


def _replacement(archive: Archive, bundle_prefix: str, archive_no: str, item: str) -> dict:
    rows = store_quarantine.rejected_by_prefix(archive.catalogue, bundle_prefix)
    if len(rows) != 1:
        raise CentralError(f"no single quarantined bundle {bundle_prefix}; upload the replacement from the station "
                           "(it is held as 'already catalogued'), then name it from 'quire-central quarantine ls'")
    row = rows[0]
    if (row["archive_no"], row["item"]) != (archive_no, item):
        raise CentralError(f"bundle {row['bundle_id'][:12]} holds {row['archive_no']} {row['item']}, "
                           f"not {archive_no} {item}")
    other = [r for r in json.loads(row["reasons"]) if r["severity"] == "reject" and r["rule"] != "CatalogueConflict"]
    if other:
        raise CentralError(f"bundle {row['bundle_id'][:12]} also breaks the standards "
                           f"({', '.join(sorted({r['rule'] for r in other}))}); it cannot replace anything")
    return {"id": row["bundle_id"], "station_id": row["sid"], "manifest": row["manifest"]}


def _end_version(db, material: dict, how: str, change_id: int) -> None:
    materials.end_version(db, material, how, change_id, utcnow())


def _apply_revoke(db, archive, actor, change_id, payload, reason):
    stations.revoke(db, archive, payload["station_id"], actor.label, change_id)


def _apply_withdraw(db, archive, actor, change_id, payload, reason):
    material = _material(archive, payload["archive_no"], payload["item"])
    _end_version(db, material, "withdrawn", change_id)
    materials.remove(db, material["id"])


def _apply_replace(db, archive, actor, change_id, payload, reason):
    material = _material(archive, payload["archive_no"], payload["item"])
    bundle = _replacement(archive, payload["bundle_id"], payload["archive_no"], payload["item"])
    manifest = json.loads(bundle["manifest"])
    station = stations.get(archive, bundle["station_id"])
    findings = profile.check_bundle(archive, manifest, station["unit"])
    if not findings.ok:
        raise CentralError(f"bundle {bundle['id'][:12]} no longer meets the standards: {'; '.join(findings.reasons())}")
    _end_version(db, material, "replaced", change_id)
    store_quarantine.release(db, bundle["id"], change_id)
    ingest.catalogue_bundle(db, archive, station, bundle["id"], manifest, findings, replaces=material,
                            by=actor.label)


def _apply_edit_dossier(db, archive, actor, change_id, payload, reason):
    fields = payload["fields"]
    store_dossiers.set_identity(db, payload["archive_no"], fields)


_APPLY = {"revoke_station": _apply_revoke, "withdraw_material": _apply_withdraw,
          "replace_material": _apply_replace, "edit_dossier": _apply_edit_dossier,
          "seal_dossier": sealing.apply_seal, "unseal_dossier": sealing.apply_unseal,
          "transfer_dossier": sealing.apply_transfer}
