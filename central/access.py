"""Reading the archive: the consultation (查阅) workflow and every view, download and export.

Every decision goes through ``permissions.authorize``; every refusal and every read is appended
to the audit log with the consultation it used.
"""

import json
from datetime import datetime, timedelta, timezone
from typing import BinaryIO

from quire.db import utcnow

from . import audit, dossiers, users
from .archive import Archive
from .errors import CentralError, NotFound
from .gate import dossier_unit, guard, refuse
from .listing import sort_items
from .permissions import Actor, PermissionDenied, authorize, scoped_units
from .store import consultations
from .store import materials as store_materials
from .store import quarantine as store_quarantine


MAX_DAYS = 90


def file_request(archive: Archive, actor: Actor, archive_no: str, purpose: str, days: int,
                 export: bool = False) -> dict:
    """A reader asks to consult a dossier for a purpose and a period (and, separately, to export)."""
    guard(archive, actor, "consultation.file", archive_no=archive_no)
    dossier_unit(archive, archive_no)
    if not purpose.strip():
        raise CentralError("state the purpose of the consultation (查阅目的); it is part of the record")
    if not 1 <= days <= MAX_DAYS:
        raise CentralError(f"a consultation lasts 1 to {MAX_DAYS} days, not {days}")
    with archive.catalogue.transaction() as db:
        consultation_id = consultations.file(db, actor.id, archive_no, purpose.strip(), days, export, utcnow())
        audit.record(db, archive, "consultation.file", archive_no,
                     {"consultation": consultation_id, "archive_no": archive_no, "purpose": purpose.strip(),
                      "days": days, "export": export}, by=actor.label)
    return get(archive, consultation_id)


def decide(archive: Archive, actor: Actor, consultation_id: int, approve: bool, reason: str = "",
           what: str = "view") -> dict:
    """An approver over the dossier's unit approves or refuses viewing (``what='view'``) or export."""
    c = get(archive, consultation_id)
    guard(archive, actor, "consultation.decide", unit=dossier_unit(archive, c["archive_no"]),
          archive_no=c["archive_no"])
    if c["reader"] == actor.id:
        refuse(archive, actor, "consultation.decide", "nobody approves their own consultation",
               archive_no=c["archive_no"], consultation=c)
    now = utcnow()
    with archive.catalogue.transaction() as db:
        if what == "view":
            if c["state"] != "requested":
                raise CentralError(f"consultation #{consultation_id} was already {c['state']}")
            expires = (datetime.now(timezone.utc) + timedelta(days=c["days"])).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            consultations.decide_view(db, consultation_id, approve, actor.id, now, reason,
                                      expires if approve else None)
        elif what == "export":
            if c["export_state"] != "requested":
                raise CentralError(f"consultation #{consultation_id} has no export request waiting "
                                   f"(export is {c['export_state']})")
            consultations.decide_export(db, consultation_id, approve, actor.id)
        else:
            raise CentralError(f"decide 'view' or 'export', not {what!r}")
        audit.record(db, archive, f"consultation.{'approve' if approve else 'refuse'}", c["archive_no"],
                     {"consultation": consultation_id, "what": what, "reader": c["reader"], "reason": reason},
                     by=actor.label)
    return get(archive, consultation_id)


def end_grant(archive: Archive, actor: Actor, consultation_id: int, reason: str) -> dict:
    """An approver over the dossier's unit ends an approved consultation before it expires."""
    c = get(archive, consultation_id)
    guard(archive, actor, "consultation.decide", unit=dossier_unit(archive, c["archive_no"]),
          archive_no=c["archive_no"])
    now = utcnow()
    if c["state"] != "approved" or c["expires_at"] <= now:
        raise CentralError(f"consultation #{consultation_id} is not an active grant (it is {c['state']}"
                           + (f", until {c['expires_at']})" if c["expires_at"] else ")"))
    if not reason.strip():
        raise CentralError("say why the grant ends early; the reason is kept with the consultation")
    with archive.catalogue.transaction() as db:
        consultations.end(db, consultation_id, now,
                          f"{c['decision_reason'] or ''} · ended: {reason.strip()}".lstrip(" ·"))
        audit.record(db, archive, "consultation.end", c["archive_no"],
                     {"consultation": consultation_id, "reader": c["reader"], "reason": reason.strip(),
                      "was_until": c["expires_at"]}, by=actor.label)
    return get(archive, consultation_id)


def request_export(archive: Archive, actor: Actor, consultation_id: int) -> dict:
    """Ask, on an existing consultation, for permission to export or copy."""
    c = get(archive, consultation_id)
    if c["reader"] != actor.id:
        refuse(archive, actor, "consultation.export_request", f"consultation #{consultation_id} is not {actor.id}'s",
               archive_no=c["archive_no"], consultation=c)
    if c["export_state"] in ("requested", "approved"):
        return c
    with archive.catalogue.transaction() as db:
        consultations.request_export(db, consultation_id)
        audit.record(db, archive, "consultation.export_request", c["archive_no"],
                     {"consultation": consultation_id}, by=actor.label)
    return get(archive, consultation_id)


def findable(archive: Archive, actor: Actor, text: str) -> list[dict]:
    """Dossiers of a reader's units whose archive number starts with, or whose name contains, ``text``:
    what they may ask to consult (identity only, never materials; their own and relatives' left out)."""
    guard(archive, actor, "consultation.file")
    text = text.strip()
    if not text:
        return []
    units = scoped_units(actor)
    found = {r["archive_no"]: r for how in ("archive_no", "name")
             for r in dossiers.search(archive, **{how: text}, units=units)}
    return [{k: r[k] for k in ("archive_no", "name", "unit", "kind")} for no, r in sorted(found.items())
            if no != actor.own_archive_no and no not in actor.relatives]


def avoidance(archive: Archive, actor: Actor, consultation: dict) -> dict:
    """The 回避 check of a consultation, for its reader and for ``actor`` deciding it: None where nothing
    stands in the way, else the reason (nothing is logged: no one was refused yet)."""
    reader = users.enabled(archive, consultation["reader"])
    out = {}
    for who, person in (("reader", reader[0] if reader else None), ("approver", actor)):
        if person is None:
            out[who] = f"user {consultation['reader']} is disabled"
            continue
        try:
            authorize(person, "consultation.file" if who == "reader" else "consultation.decide",
                      archive_no=consultation["archive_no"], unit=None if who == "reader" else consultation.get("unit"))
            out[who] = None
        except PermissionDenied as exc:
            out[who] = str(exc)
    return out


def get(archive: Archive, consultation_id: int) -> dict:
    row = consultations.get(archive.catalogue, consultation_id)
    if row is None:
        raise NotFound(f"no consultation #{consultation_id}")
    return row


def listing(archive: Archive, actor: Actor) -> list[dict]:
    """A reader's own requests; a security officer's: those on dossiers of their units."""
    guard(archive, actor, "consultation.list")
    if "security_officer" in actor.roles:
        return consultations.of_units(archive.catalogue, scoped_units(actor))
    return consultations.of_reader(archive.catalogue, actor.id)


def _consultation(archive: Archive, consultation_id: int | None) -> dict | None:
    # An unknown number is no consultation at all: refused (and logged) like reading without one,
    # so guessing numbers learns nothing and leaves a trace.
    if not consultation_id:
        return None
    return consultations.get(archive.catalogue, consultation_id)


def materials(archive: Archive, actor: Actor, archive_no: str, consultation_id: int | None = None) -> list[dict]:
    """The dossier's catalogue entries (titles, dates, page counts) for someone entitled to see them."""
    unit = dossier_unit(archive, archive_no)
    guard(archive, actor, "catalogue.read", unit=unit, archive_no=archive_no,
          consultation=_consultation(archive, consultation_id))
    return sort_items(store_materials.of_dossier(archive.catalogue, archive_no))


def page(archive: Archive, actor: Actor, archive_no: str, item: str, n: int, consultation_id: int | None = None,
         export: bool = False) -> tuple[dict, BinaryIO]:
    """Open one page for viewing (or exporting): checked, logged with the consultation, then returned."""
    unit = dossier_unit(archive, archive_no)
    consultation = _consultation(archive, consultation_id)
    action = "content.export" if export else "content.view"
    guard(archive, actor, action, unit=unit, archive_no=archive_no, consultation=consultation)
    row = store_materials.page(archive.catalogue, archive_no, item, n)
    if row is None:
        raise NotFound(f"dossier {archive_no} has no page {n} in material {item}")
    with archive.catalogue.transaction() as db:
        audit.record(db, archive, "content.export" if export else "content.view", archive_no,
                     {"archive_no": archive_no, "item": item, "page": n, "sha256": row["sha256"],
                      "consultation": consultation_id}, by=actor.label)
    row["record"] = json.loads(row.pop("record_json"))
    return row, archive.blobs.open(row["sha256"])


def quarantined_page(archive: Archive, actor: Actor, bundle_id: str, n: int) -> tuple[dict, BinaryIO]:
    """Open one page of a quarantined bundle for the unit's catalogue staff: checked, logged, returned."""
    held = store_quarantine.with_manifest(archive.catalogue, bundle_id)
    if held is None:
        raise NotFound(f"no quarantined bundle {bundle_id[:12]}")
    guard(archive, actor, "quarantine.read", unit=held["unit"], archive_no=held["archive_no"])
    guard(archive, actor, "content.view", unit=held["unit"], archive_no=held["archive_no"])
    page_ = next((p for p in json.loads(held["manifest"])["pages"] if p["n"] == n), None)
    if page_ is None or not archive.blobs.has(page_["sha256"]):
        raise NotFound(f"quarantined bundle {bundle_id[:12]} has no stored page {n}")
    with archive.catalogue.transaction() as db:
        audit.record(db, archive, "content.view", held["archive_no"],
                     {"archive_no": held["archive_no"], "item": held["item"], "page": n, "sha256": page_["sha256"],
                      "bundle_id": bundle_id, "quarantined": True}, by=actor.label)
    return page_, archive.blobs.open(page_["sha256"])
