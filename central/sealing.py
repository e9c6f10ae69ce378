"""Sealing (封存) and transfer (转递): a dossier closed to use here stays listed, marked so, and nobody
consults, exports or changes it (a transferred one leaves only as its transfer package).

Sealing, unsealing and transferring are four-eyes changes (``changes``); what each refuses is decided
in ``permissions.authorize``, which ``access.guard`` tells the dossier's state (``closure``).
"""

from . import audit
from .archive import Archive
from .errors import CentralError
from .store import dossiers as store_dossiers


def closure(archive: Archive, archive_no: str) -> dict:
    """The dossier's sealed_by_change, transferred_by_change and transferred_to ({} if no such dossier)."""
    return store_dossiers.closure(archive.catalogue, archive_no)


def subject(archive: Archive, kind: str, payload: dict) -> str:
    """Check a proposed seal or unseal against the dossier's state; return the change's subject."""
    archive_no = payload.get("archive_no")
    if not store_dossiers.exists(archive.catalogue, archive_no):
        raise CentralError(f"no dossier {archive_no} in the catalogue")
    if kind == "unseal_dossier" and closure(archive, archive_no)["sealed_by_change"] is None:
        raise CentralError(f"dossier {archive_no} is not sealed")
    if kind == "transfer_dossier" and not str(payload.get("to") or "").strip():
        raise CentralError("name the organisation the dossier is transferred to (--to)")
    return f"dossier:{archive_no}"


def apply_seal(db, archive: Archive, actor, change_id: int, payload: dict, reason: str) -> None:
    """Inside the approval's transaction: seal the dossier and log it."""
    store_dossiers.set_sealed(db, payload["archive_no"], change_id)
    audit.record(db, archive, "dossier.seal", payload["archive_no"],
                 {"archive_no": payload["archive_no"], "change": change_id, "reason": reason}, by=actor.label)


def apply_unseal(db, archive: Archive, actor, change_id: int, payload: dict, reason: str) -> None:
    """Inside the approval's transaction: unseal the dossier and log it."""
    store_dossiers.set_sealed(db, payload["archive_no"], None)
    audit.record(db, archive, "dossier.unseal", payload["archive_no"],
                 {"archive_no": payload["archive_no"], "change": change_id, "reason": reason}, by=actor.label)


def apply_transfer(db, archive: Archive, actor, change_id: int, payload: dict, reason: str) -> None:
    """Inside the approval's transaction: mark the dossier transferred and log it."""
    store_dossiers.set_transferred(db, payload["archive_no"], change_id, payload["to"].strip())
    audit.record(db, archive, "dossier.transfer", payload["archive_no"],
                 {"archive_no": payload["archive_no"], "to": payload["to"].strip(), "change": change_id,
                  "reason": reason}, by=actor.label)
