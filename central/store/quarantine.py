"""The ``quarantine`` table: bundles refused at commit, with every reason, the standards profile that
judged them, and the four-eyes change that later released one as a replacement."""

from .catalogue import rows, within


def hold(db, row: dict) -> None:
    """Hold a refused bundle (once); ``row``: bundle_id, station_id, unit, archive_no, item, profile,
    profile_version, profile_sha256, reasons (JSON), quarantined_at."""
    db.execute("INSERT INTO quarantine (bundle_id, station_id, unit, archive_no, item, profile, profile_version,"
               " profile_sha256, reasons, quarantined_at) VALUES (:bundle_id, :station_id, :unit, :archive_no, :item,"
               " :profile, :profile_version, :profile_sha256, :reasons, :quarantined_at)"
               " ON CONFLICT (bundle_id) DO NOTHING", row)


def release(db, bundle_id: str, change_id: int) -> None:
    """Record that change ``change_id`` catalogued the held bundle as a replacement."""
    db.execute("UPDATE quarantine SET released_by_change = :change WHERE bundle_id = :id",
               {"change": change_id, "id": bundle_id})


def held(source, units: list[str] | None) -> list[dict]:
    """Bundles still held in ``units`` (None: all), newest first."""
    where, params = within("unit", units)
    return rows(source, f"SELECT * FROM quarantine WHERE released_by_change IS NULL AND {where}"
                        " ORDER BY quarantined_at DESC, bundle_id", params)


def by_prefix(source, prefix: str, units: list[str] | None) -> list[dict]:
    """Held or released bundles in ``units`` (None: all) whose id starts with ``prefix``."""
    where, params = within("unit", units)
    return rows(source, f"SELECT * FROM quarantine WHERE bundle_id LIKE :prefix || '%' AND {where}",
                {**params, "prefix": prefix.lower()})


def with_manifest(source, bundle_id: str) -> dict | None:
    """A held bundle's unit, archive_no, item and its signed manifest's bytes, or None."""
    found = rows(source, "SELECT q.unit, q.archive_no, q.item, b.manifest FROM quarantine q"
                         " JOIN bundles b ON b.id = q.bundle_id WHERE q.bundle_id = :id", {"id": bundle_id})
    return found[0] if found else None


def rejected_by_prefix(source, prefix: str) -> list[dict]:
    """Quarantined bundles still rejected whose id starts with ``prefix``, with manifest and station (``sid``)."""
    return rows(source, "SELECT q.*, b.manifest, b.station_id AS sid FROM quarantine q JOIN bundles b"
                        " ON b.id = q.bundle_id WHERE q.bundle_id LIKE :prefix || '%' AND b.state = 'rejected'",
                {"prefix": prefix.lower()})


def every_with_bundle(source) -> list[dict]:
    """Every quarantine row with its bundle's id, station (``bundle_station``) and manifest, by bundle."""
    return rows(source, "SELECT q.*, b.id, b.station_id AS bundle_station, b.manifest"
                        " FROM quarantine q JOIN bundles b ON b.id = q.bundle_id ORDER BY q.bundle_id")


def bundle_ids(source) -> set[str]:
    return {r["bundle_id"] for r in rows(source, "SELECT bundle_id FROM quarantine")}


def released_ids(source) -> set[str]:
    return {r["bundle_id"] for r in rows(source, "SELECT bundle_id FROM quarantine WHERE released_by_change IS NOT NULL")}
