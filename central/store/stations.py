"""The ``stations`` and ``enrolments`` tables, and ``station_notices``: the stations registered into
units (with their keys, suspension and revocation), the enrolments waiting for an operator, and
what a station is told outside a receipt."""

from .catalogue import rows


def get(source, station_id: str) -> dict | None:
    found = rows(source, "SELECT * FROM stations WHERE id = :id", {"id": station_id})
    return found[0] if found else None


def unit_of(source, station_id: str) -> str | None:
    found = rows(source, "SELECT unit FROM stations WHERE id = :id", {"id": station_id})
    return found[0]["unit"] if found else None


def by_id_or_key(db, station_id: str, public_key: bytes) -> dict | None:
    """The station registered with this id or this key, if any."""
    found = rows(db, "SELECT * FROM stations WHERE id = :id OR public_key = :key", {"id": station_id, "key": public_key})
    return found[0] if found else None


def every(source) -> list[dict]:
    """Every station's row, by id."""
    return rows(source, "SELECT * FROM stations ORDER BY id")


def keys(source) -> dict[str, bytes]:
    """Every station's public key by id."""
    return {r["id"]: bytes(r["public_key"]) for r in rows(source, "SELECT id, public_key FROM stations")}


def count(source) -> int:
    return rows(source, "SELECT COUNT(*) AS n FROM stations")[0]["n"]


def add(db, station_id: str, public_key: bytes, unit: str, at: str, revoked_by: str | None = None) -> None:
    """Register a station; ``revoked_by``: registered revoked at once (a sender's station, known for its key)."""
    db.execute("INSERT INTO stations (id, public_key, unit, added_at, revoked_at, revoked_by)"
               " VALUES (:id, :key, :unit, :at, :revoked_at, :revoked_by)",
               {"id": station_id, "key": public_key, "unit": unit, "at": at,
                "revoked_at": at if revoked_by else None, "revoked_by": revoked_by})


def suspend(db, station_id: str, at: str) -> None:
    db.execute("UPDATE stations SET suspended_at = COALESCE(suspended_at, :at) WHERE id = :id",
               {"at": at, "id": station_id})


def reinstate(db, station_id: str) -> None:
    db.execute("UPDATE stations SET suspended_at = NULL WHERE id = :id AND revoked_at IS NULL", {"id": station_id})


def revoke(db, station_id: str, at: str, by: str) -> None:
    db.execute("UPDATE stations SET revoked_at = COALESCE(revoked_at, :at), revoked_by = COALESCE(revoked_by, :by)"
               " WHERE id = :id", {"at": at, "by": by, "id": station_id})


# ---- enrolments ---------------------------------------------------------------------------------

def enrolment(db, code: str) -> dict | None:
    found = rows(db, "SELECT * FROM enrolments WHERE code = :code", {"code": code})
    return found[0] if found else None


def other_enrolment(db, station_id: str, code: str) -> dict | None:
    """A waiting enrolment of ``station_id`` under another pairing code (another key), if any."""
    found = rows(db, "SELECT * FROM enrolments WHERE station_id = :id AND code != :code",
                 {"id": station_id, "code": code})
    return found[0] if found else None


def add_enrolment(db, code: str, station_id: str, public_key: bytes, hostname: str, at: str) -> None:
    db.execute("INSERT INTO enrolments (code, station_id, public_key, hostname, requested_at)"
               " VALUES (:code, :id, :key, :hostname, :at)",
               {"code": code, "id": station_id, "key": public_key, "hostname": hostname, "at": at})


def remove_enrolment(db, code: str) -> None:
    db.execute("DELETE FROM enrolments WHERE code = :code", {"code": code})


def enrolment_codes(db) -> set[str]:
    return {r["code"] for r in rows(db, "SELECT code FROM enrolments")}


def enrolments_before(db, cutoff: str) -> list[dict]:
    """Enrolments asked before ``cutoff`` (code, station_id)."""
    return rows(db, "SELECT code, station_id FROM enrolments WHERE requested_at < :cutoff", {"cutoff": cutoff})


def enrolments_since(source, cutoff: str, limit: int, shown_chars: int) -> list[dict]:
    """The ``limit`` oldest enrolments asked since ``cutoff``, station id and hostname cut to ``shown_chars``."""
    return rows(source, "SELECT code, substr(station_id, 1, :chars) AS station_id, substr(hostname, 1, :chars)"
                        " AS hostname, requested_at, public_key FROM enrolments WHERE requested_at >= :cutoff"
                        " ORDER BY requested_at LIMIT :limit", {"chars": shown_chars, "cutoff": cutoff, "limit": limit})


def count_enrolments_since(source, cutoff: str) -> int:
    return rows(source, "SELECT COUNT(*) AS n FROM enrolments WHERE requested_at >= :cutoff", {"cutoff": cutoff})[0]["n"]


# ---- notices ------------------------------------------------------------------------------------

def add_notice(db, station_id: str, kind: str, body: str, at: str) -> None:
    db.execute("INSERT INTO station_notices (station_id, kind, body, created_at) VALUES (:id, :kind, :body, :at)",
               {"id": station_id, "kind": kind, "body": body, "at": at})


def notices(source, station_id: str, after: int = 0) -> list[dict]:
    """What a station has been told since notice ``after``, oldest first."""
    return rows(source, "SELECT * FROM station_notices WHERE station_id = :id AND id > :after ORDER BY id",
                {"id": station_id, "after": after})
