"""Registering the stations allowed to upload, and looking them up."""

import logging
import re

from quire import callauth, keys
from quire.db import utcnow

from . import audit, refusals
from .archive import Archive
from .errors import CentralError, NotEnrolled, SignatureInvalid

audit_log = logging.getLogger("quire.central.stations")

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def add(archive: Archive, station_id: str, public_key_hex: str, unit: str, by: str | None = None) -> dict:
    """Register a station's public key for a unit (enrolment with a pairing code comes later)."""
    if not _ID.fullmatch(station_id):
        raise CentralError(f"station id {station_id!r}: use letters, digits, '.', '_' or '-'")
    try:
        public_key = bytes.fromhex(public_key_hex.strip())
    except ValueError:
        public_key = b""
    if len(public_key) != 32:
        raise CentralError(
            "station key must be 64 hex digits (the Ed25519 public key 'quire-station init' prints)"
        )
    if not unit:
        raise CentralError("a station is registered into a unit: pass --unit")
    with archive.catalogue.transaction() as db:
        existing = db.execute("SELECT id, public_key FROM stations WHERE id = ? OR public_key = ?",
                              [station_id, public_key]).fetchone()
        if existing:
            if existing[0] == station_id and bytes(existing[1]) == public_key:
                row = get(archive, station_id)
                audit.station_registered(archive, row, by=by)  # logged once per station and key
                return row
            raise CentralError(
                f"station {existing[0]} is already registered with "
                f"{'another key' if existing[0] == station_id else 'this key'}; "
                "re-keying a station is an explicit operator action"
            )
        db.execute("INSERT INTO stations (id, public_key, unit, added_at) VALUES (?, ?, ?, ?)",
                   [station_id, public_key, unit, utcnow()])
    row = get(archive, station_id)
    audit.station_registered(archive, row, by=by)  # every way a station gets registered passes here
    return row


def get(archive: Archive, station_id: str) -> dict:
    row = archive.catalogue.one("SELECT * FROM stations WHERE id = ?", [station_id])
    if row is None:
        raise NotEnrolled(
            f"station {station_id!r} is not registered with this archive; an administrator registers "
            "it with 'quire-central stations add ID --key KEY --unit UNIT'"
        )
    return row


def active(archive: Archive, station_id: str) -> dict:
    """The station's row, refusing unknown and revoked stations."""
    row = get(archive, station_id)
    if row["revoked_at"]:
        raise NotEnrolled(f"station {station_id} was revoked at {row['revoked_at']}; its uploads are refused")
    if row["suspended_at"]:
        raise NotEnrolled(f"station {station_id} is suspended since {row['suspended_at']} pending its revocation; "
                          "its uploads are refused")
    return row


class WrongUnit(NotEnrolled):
    """A station uploading into a dossier of a unit it does not serve."""

    scope = "bundle"   # the station's other bundles may be for its own units


def check_unit(archive: Archive, station: dict, dossier: dict, bundle_id: str) -> None:
    """Refuse (and log, once per bundle) an upload into a dossier of another unit than the station's."""
    declared = dossier.get("unit")
    row = archive.catalogue.one("SELECT unit FROM dossiers WHERE archive_no = ?", [dossier["archive_no"]])
    owner = row["unit"] if row else declared
    if owner is None or owner == station["unit"]:
        return
    message = (f"dossier {dossier['archive_no']} belongs to unit {owner}; station {station['id']} uploads only "
               f"into unit {station['unit']} — nothing from this bundle was accepted")
    refusal = WrongUnit(message)
    if archive.catalogue.one("SELECT 1 AS x FROM audit_entries WHERE event = 'upload.refused' AND subject = ?",
                             [bundle_id]):
        refusal.audited = True  # at its first offer: the station offers it again at every sync
        raise refusal
    raise refusals.logged(archive, refusal, "upload.refused", bundle_id,
                          {"bundle_id": bundle_id, "archive_no": dossier["archive_no"], "station_id": station["id"],
                           "unit": station["unit"], "dossier_unit": owner}, by=f"station:{station['id']}")


def listing(archive: Archive) -> list[dict]:
    out = archive.catalogue.query("SELECT * FROM stations ORDER BY id")
    for row in out:
        row["fingerprint"] = keys.fingerprint(bytes(row.pop("public_key")))
    return out


def request_enrolment(archive: Archive, station_id: str, public_key: bytes, hostname: str,
                      time_ms: int, signature: bytes) -> tuple[str, str, str | None]:
    """Record a signed enrolment request; returns (state, pairing code, unit when approved)."""
    if not _ID.fullmatch(station_id):
        raise CentralError(f"station id {station_id!r}: use letters, digits, '.', '_' or '-'")
    if len(public_key) != 32:
        raise CentralError("station key must be a 32-byte Ed25519 public key")
    try:
        keys.verify(public_key, keys.ENROL_CONTEXT,
                    callauth.enrol_payload(station_id, public_key, hostname, time_ms), signature,
                    "enrolment request")
    except keys.ContractError as exc:
        raise SignatureInvalid(str(exc)) from None
    code = callauth.pairing_code(archive.public_key, public_key)
    with archive.catalogue.transaction() as db:
        row = db.execute("SELECT id, public_key, unit, revoked_at FROM stations WHERE id = ? OR public_key = ?",
                         [station_id, public_key]).fetchone()
        if row:
            if row[0] != station_id or bytes(row[1]) != public_key:
                raise CentralError(
                    f"station {row[0]} is already enrolled with {'another key' if row[0] == station_id else 'this key'}; "
                    "re-keying a station is an explicit operator action")
            if row[3]:
                raise NotEnrolled(f"station {station_id} was revoked at {row[3]}; it cannot re-enrol itself")
            return "approved", code, row[2]
        clash = db.execute("SELECT station_id FROM enrolments WHERE station_id = ? AND code != ?",
                           [station_id, code]).fetchone()
        if clash:
            raise CentralError(f"another key already asked to enrol as {station_id}; "
                               "an operator must clear it ('quire-central stations pending')")
        db.execute("INSERT OR IGNORE INTO enrolments VALUES (?, ?, ?, ?, ?)",
                   [code, station_id, public_key, hostname, utcnow()])
    audit_log.info("station %s asked to enrol from %s, pairing code %s", station_id, hostname, code)
    return "pending", code, None


def pending(archive: Archive) -> list[dict]:
    rows = archive.catalogue.query("SELECT * FROM enrolments ORDER BY requested_at")
    for row in rows:
        row["fingerprint"] = keys.fingerprint(bytes(row.pop("public_key")))
    return rows


def approve(archive: Archive, code: str, unit: str, by: str | None = None) -> dict:
    """Enrol the station whose pairing code the operator compared and typed in."""
    if not unit:
        raise CentralError("a station is enrolled into a unit: pass --unit")
    with archive.catalogue.transaction() as db:
        row = db.execute("SELECT station_id, public_key FROM enrolments WHERE code = ?", [code.strip()]).fetchone()
        if row is None:
            raise CentralError(f"no station is waiting with pairing code {code}; "
                               "'quire-central stations pending' lists the waiting ones")
        db.execute("DELETE FROM enrolments WHERE code = ?", [code.strip()])
    return add(archive, row[0], bytes(row[1]).hex(), unit, by=by)


def suspend(db, archive: Archive, station_id: str, by: str, change_id: int) -> None:
    """Inside a transaction: stop a station's uploads at once while its revocation awaits a second person."""
    db.execute("UPDATE stations SET suspended_at = COALESCE(suspended_at, ?) WHERE id = ?", [utcnow(), station_id])
    audit.record(db, archive, "station.suspend", station_id, {"station_id": station_id, "change": change_id}, by=by)
    audit_log.warning("station %s suspended by %s pending revocation #%s", station_id, by, change_id)


def reinstate(db, archive: Archive, station_id: str, by: str, change_id: int) -> None:
    db.execute("UPDATE stations SET suspended_at = NULL WHERE id = ? AND revoked_at IS NULL", [station_id])
    audit.record(db, archive, "station.reinstate", station_id, {"station_id": station_id, "change": change_id}, by=by)


def revoke(db, archive: Archive, station_id: str, by: str, change_id: int) -> None:
    """Inside a transaction: revoke for good (the second person approved); later calls are refused."""
    db.execute("UPDATE stations SET revoked_at = COALESCE(revoked_at, ?), revoked_by = COALESCE(revoked_by, ?)"
               " WHERE id = ?", [utcnow(), by, station_id])
    audit.record(db, archive, "station.revoke", station_id, {"station_id": station_id, "change": change_id}, by=by)
    audit_log.warning("station %s revoked by %s (change #%s)", station_id, by, change_id)
