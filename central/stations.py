"""Registering the stations allowed to upload, and looking them up."""

import re

from quire import keys
from quire.db import utcnow

from .archive import Archive
from .errors import CentralError, NotEnrolled

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def add(archive: Archive, station_id: str, public_key_hex: str, unit: str) -> dict:
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
                return get(archive, station_id)
            raise CentralError(
                f"station {existing[0]} is already registered with "
                f"{'another key' if existing[0] == station_id else 'this key'}; "
                "re-keying a station is an explicit operator action"
            )
        db.execute("INSERT INTO stations (id, public_key, unit, added_at) VALUES (?, ?, ?, ?)",
                   [station_id, public_key, unit, utcnow()])
    return get(archive, station_id)


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
    return row


def listing(archive: Archive) -> list[dict]:
    out = archive.catalogue.query("SELECT * FROM stations ORDER BY id")
    for row in out:
        row["fingerprint"] = keys.fingerprint(bytes(row.pop("public_key")))
    return out
