"""Who may do what — the one place every permission is decided.

Roles follow separation of duties (三员分立): the system administrator, the security officer and
the auditor are three different people, and none of them holds a content role. Content is read
only by content roles, only within their units, never one's own dossier or a relative's, and a
reader only through an approved, unexpired consultation.
"""

import json
from dataclasses import dataclass, field

import grpc

from .errors import CentralError

ROLES = {
    "admin": "system administrator: users, stations, profiles; never archive content",
    "security_officer": "approves or refuses consultations and exports for the units in scope",
    "auditor": "reads and verifies the audit log only",
    "archivist": "catalogue work: dossier identity, replacing or withdrawing material (two archivists)",
    "inspector": "QC acceptance of uploaded batches",
    "reader": "consults dossiers through approved requests",
}
# Each of these must be the only role its holder has.
SOLE_ROLES = {"admin", "security_officer", "auditor"}

# action → roles that may perform it (further conditions are checked in ``authorize``).
ACTIONS = {
    "user.manage": {"admin"},
    "station.manage": {"admin"},
    "profile.manage": {"admin"},
    "consultation.file": {"reader"},
    "consultation.decide": {"security_officer"},
    "consultation.list": {"reader", "security_officer"},
    "catalogue.read": {"archivist", "inspector", "security_officer", "reader"},
    "content.view": {"reader", "archivist", "inspector"},
    "content.export": {"reader"},
    # A whole dossier (or material) as a verifiable bag: the unit's archivist, for transfer or backup, or a
    # reader whose consultation's export was approved.
    "dossier.export": {"archivist", "reader"},
    "dossier.transfer_out": {"archivist"},        # the package of a dossier whose transfer (转递) was approved
    "dossier.import": {"archivist"},              # a transfer package received, into the archivist's unit
    "qc.inspect": {"inspector"},
    "audit.read": {"auditor"},                    # the log, its verification and its checkpoints
    "stats.read": {"admin", "auditor", "archivist", "inspector", "security_officer"},
    # Once an archive has users every command acts as one of them. Verifying the archive names dossiers,
    # materials and catalogue values, so it is the auditor's (the administrator never sees content);
    # quarantined bundles carry archive numbers, titles and operators: the units' own catalogue staff.
    "archive.info": set(ROLES),                   # key fingerprint, certificate and counts
    "archive.verify": {"auditor"},
    "quarantine.read": {"archivist", "inspector"},
    "station.read": {"admin", "auditor"},
    "profile.read": {"admin", "auditor", "archivist", "inspector"},
    "change.list": {"admin", "archivist"},        # who proposes and decides four-eyes changes
    "archive.maintain": {"admin"},                # e.g. the SM3 backfill: hashes blobs, shows no content
}
# Actions on one unit's records: only for people of that unit (the listing ones are scoped in their query).
UNIT_SCOPED = {"consultation.decide", "quarantine.read", "qc.inspect", "change.replace_material",
               "change.withdraw_material", "change.edit_dossier", "change.seal_dossier", "change.unseal_dossier",
               "change.transfer_dossier", "dossier.transfer_out", "dossier.import"}
# Which role may propose and approve each four-eyes change (action "change.<kind>").
CHANGE_ROLES = {
    "replace_material": "archivist",
    "withdraw_material": "archivist",
    "edit_dossier": "archivist",
    "revoke_station": "admin",
    "seal_dossier": "archivist",
    "unseal_dossier": "archivist",
    "transfer_dossier": "archivist",
}
ACTIONS.update({f"change.{kind}": {role} for kind, role in CHANGE_ROLES.items()})
# What nobody does to a sealed (封存) dossier until a four-eyes change unseals it; its catalogue entries stay
# listed for the unit's staff, and a reader reaches nothing of it.
SEALED_REFUSES = {"consultation.file", "consultation.decide", "content.view", "content.export", "dossier.export",
                  *(f"change.{kind}" for kind in CHANGE_ROLES if kind not in ("revoke_station", "unseal_dossier"))}


class PermissionDenied(CentralError):
    code = grpc.StatusCode.PERMISSION_DENIED
    scope = "caller"
    exit_code = 77  # EX_NOPERM


class Unauthenticated(CentralError):
    code = grpc.StatusCode.UNAUTHENTICATED
    scope = "caller"
    exit_code = 77


@dataclass(frozen=True)
class Actor:
    """An authenticated person (or the local operating-system user for bootstrap tasks)."""

    id: str
    name: str
    roles: frozenset
    units: frozenset                      # "*" means every unit
    own_archive_no: str | None = None
    relatives: frozenset = field(default_factory=frozenset)

    @property
    def label(self) -> str:
        return self.id if self.id.startswith("local:") else f"user:{self.id}"

    def covers(self, unit: str | None) -> bool:
        return "*" in self.units or (unit is not None and unit in self.units)


def scoped_units(actor: Actor) -> list[str] | None:
    """The units ``actor`` works for, for a listing scoped in its query (never filtered after it); None: every
    unit. The storage module turns them into its own condition."""
    return None if "*" in actor.units else sorted(actor.units)


def check_roles(roles: set[str]) -> None:
    """Refuse unknown roles and combinations that break separation of duties."""
    unknown = sorted(roles - set(ROLES))
    if unknown:
        raise CentralError(f"unknown role(s) {', '.join(unknown)}; roles are: {', '.join(ROLES)}")
    if not roles:
        raise CentralError(f"give at least one role: {', '.join(ROLES)}")
    if roles & SOLE_ROLES and len(roles) > 1:
        *others, last = sorted(roles)
        raise PermissionDenied(
            f"the roles {', '.join(others)} and {last} cannot be held by one person: the system administrator, "
            "the security officer and the auditor are three different people (三员分立), and none of them holds "
            "another role; add one user for each role")


def authorize(actor: Actor, action: str, *, unit: str | None = None, archive_no: str | None = None,
              consultation: dict | None = None, now: str | None = None, sealed: bool = False,
              transferred_to: str | None = None) -> None:
    """Raise PermissionDenied naming why ``actor`` may not do ``action`` here (``sealed``: the dossier is
    sealed; ``transferred_to``: whom it was transferred to); return when allowed."""
    allowed = ACTIONS.get(action)
    if allowed is None:
        raise PermissionDenied(f"unknown action {action!r}")
    if not actor.roles & allowed:
        raise PermissionDenied(
            f"{actor.id} ({', '.join(sorted(actor.roles))}) may not {action.replace('.', ' ')}: "
            f"that needs the role {' or '.join(sorted(allowed))}")
    if archive_no is not None:
        if archive_no == actor.own_archive_no:
            raise PermissionDenied(f"{actor.id} may not access dossier {archive_no}: it is their own (回避)")
        if archive_no in actor.relatives:
            raise PermissionDenied(f"{actor.id} may not access dossier {archive_no}: it belongs to a relative (回避)")
    if transferred_to is not None and (action in SEALED_REFUSES or action == "change.unseal_dossier"):
        raise PermissionDenied(_transferred(archive_no, transferred_to))
    if sealed and action in SEALED_REFUSES:
        raise PermissionDenied(_sealed(archive_no))
    if action in ("catalogue.read", "content.view", "content.export", "dossier.export"):
        staff = {"archivist", "inspector"} | ({"security_officer"} if action == "catalogue.read" else set())
        staff = {"archivist"} if action == "dossier.export" else staff
        across_units = action == "catalogue.read" and unit is None and archive_no is None  # a listing, scoped in its query
        if actor.roles & staff and action != "content.export" and (across_units or actor.covers(unit)):
            return  # the unit's own archive staff work on its dossiers; every view is still logged
        if "reader" not in actor.roles:
            raise PermissionDenied(f"{actor.id} has no authority over unit {unit} (dossier {archive_no})")
        if sealed or transferred_to is not None:
            raise PermissionDenied(_sealed(archive_no) if sealed else _transferred(archive_no, transferred_to))
        _consultation_allows(actor, action, archive_no, consultation, now)
        return
    if action in UNIT_SCOPED and unit is not None and not actor.covers(unit):
        raise PermissionDenied(f"{actor.id} has no authority over unit {unit}; its own "
                               f"{' or '.join(sorted(allowed))} does this")


def _sealed(archive_no: str | None) -> str:
    return (f"dossier {archive_no} is sealed (封存): no consultation, export or change until two archivists of its "
            "unit unseal it ('quire-central unseal')")


def _transferred(archive_no: str | None, to: str) -> str:
    return (f"dossier {archive_no} was transferred to {to} (转递): it is no longer consulted, exported or changed "
            "here; its record stays")


def _consultation_allows(actor: Actor, action: str, archive_no: str | None, consultation: dict | None,
                         now: str | None) -> None:
    if consultation is None:
        raise PermissionDenied(
            f"{actor.id} has no approved consultation of dossier {archive_no}; file one with "
            "'RequestConsultation' (purpose and period) and wait for the security officer")
    if consultation["reader"] != actor.id or consultation["archive_no"] != archive_no:
        raise PermissionDenied(f"consultation #{consultation['id']} is not {actor.id}'s for dossier {archive_no}")
    if consultation["state"] != "approved":
        raise PermissionDenied(f"consultation #{consultation['id']} is {consultation['state']}, not approved")
    if now is not None and consultation["expires_at"] <= now:
        raise PermissionDenied(
            f"consultation #{consultation['id']} expired at {consultation['expires_at']}; file a new request")
    if action in ("content.export", "dossier.export") and consultation["export_state"] != "approved":
        raise PermissionDenied(
            f"consultation #{consultation['id']} allows viewing only; exporting or copying needs its own "
            f"approval (export is {consultation['export_state']})")


def actor_from_row(row: dict, relatives: list[str]) -> Actor:
    return Actor(row["id"], row["name"], frozenset(json.loads(row["roles"])), frozenset(json.loads(row["units"])),
                 row["own_archive_no"], frozenset(relatives))


def local_operator(os_user: str) -> Actor:
    """The operating-system user on the archive host while the archive has no users yet (a one-person
    lab or the first setup): administers, audits and keeps the catalogue. It never holds the reader
    role, so content is still read only through consultations, and four-eyes changes need users."""
    return Actor(f"local:{os_user}", os_user, frozenset({"admin", "auditor", "archivist", "inspector"}),
                 frozenset({"*"}))
