"""Sealing (封存): a sealed dossier stays listed, marked sealed, and nobody consults, exports or changes it.

Sealing and unsealing are four-eyes changes (``changes``); what a seal refuses is decided in
``permissions.authorize``, which ``access.guard`` tells whether the dossier is sealed.
"""

from . import audit
from .archive import Archive
from .errors import CentralError


def sealed_by(archive: Archive, archive_no: str) -> int | None:
    """The applied change that sealed the dossier, or None when it is not sealed."""
    row = archive.catalogue.one("SELECT sealed_by_change FROM dossiers WHERE archive_no = ?", [archive_no])
    return row["sealed_by_change"] if row else None


def subject(archive: Archive, kind: str, payload: dict) -> str:
    """Check a proposed seal or unseal against the dossier's state; return the change's subject."""
    archive_no = payload.get("archive_no")
    if not archive.catalogue.one("SELECT 1 AS x FROM dossiers WHERE archive_no = ?", [archive_no]):
        raise CentralError(f"no dossier {archive_no} in the catalogue")
    if kind == "unseal_dossier" and sealed_by(archive, archive_no) is None:
        raise CentralError(f"dossier {archive_no} is not sealed")
    return f"dossier:{archive_no}"


def apply_seal(db, archive: Archive, actor, change_id: int, payload: dict, reason: str) -> None:
    """Inside the approval's transaction: seal the dossier and log it."""
    db.execute("UPDATE dossiers SET sealed_by_change = ? WHERE archive_no = ?", [change_id, payload["archive_no"]])
    audit.record(db, archive, "dossier.seal", payload["archive_no"],
                 {"archive_no": payload["archive_no"], "change": change_id, "reason": reason}, by=actor.label)


def apply_unseal(db, archive: Archive, actor, change_id: int, payload: dict, reason: str) -> None:
    """Inside the approval's transaction: unseal the dossier and log it."""
    db.execute("UPDATE dossiers SET sealed_by_change = NULL WHERE archive_no = ?", [payload["archive_no"]])
    audit.record(db, archive, "dossier.unseal", payload["archive_no"],
                 {"archive_no": payload["archive_no"], "change": change_id, "reason": reason}, by=actor.label)

