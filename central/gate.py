"""The one gate every use case passes: authorize the actor, or log the refusal and raise it."""

from quire.db import utcnow

from . import refusals, sealing
from .archive import Archive
from .errors import NotFound
from .permissions import Actor, PermissionDenied, authorize
from .store import dossiers as store_dossiers


def guard(archive: Archive, actor: Actor, action: str, *, unit: str | None = None, archive_no: str | None = None,
          consultation: dict | None = None) -> None:
    """Authorize or refuse; a refusal is logged (who, what, why) before it is raised."""
    closed = sealing.closure(archive, archive_no) if archive_no is not None else {}
    try:
        authorize(actor, action, unit=unit, archive_no=archive_no, consultation=consultation, now=utcnow(),
                  sealed=closed.get("sealed_by_change") is not None, transferred_to=closed.get("transferred_to"))
    except PermissionDenied as exc:
        refuse(archive, actor, action, str(exc), unit=unit, archive_no=archive_no, consultation=consultation)


def refuse(archive: Archive, actor: Actor, action: str, reason: str, *, unit: str | None = None,
           archive_no: str | None = None, consultation: dict | None = None):
    """Log a refusal in the audit log, then raise it: the one way any permission is refused."""
    raise refusals.logged(archive, PermissionDenied(reason), "access.denied", archive_no or action,
                          {"action": action, "archive_no": archive_no, "unit": unit,
                           "consultation": consultation["id"] if consultation else None}, by=actor.label)


def dossier_unit(archive: Archive, archive_no: str) -> str:
    """The unit a dossier belongs to; NotFound when the catalogue has no such dossier."""
    unit = store_dossiers.unit_of(archive.catalogue, archive_no)
    if unit is None:
        raise NotFound(f"no dossier {archive_no} in the catalogue")
    return unit
