"""The ``profile_versions`` and ``unit_profiles`` tables and the archive's default profile (``meta``):
what each standards profile name and version meant when it first judged a bundle here, and which
profile judges each unit."""

from .catalogue import rows


def version(source, name: str, version_no: int) -> dict | None:
    """The recorded profile version (name, version, sha256, content, path, first_used_at), or None."""
    found = rows(source, "SELECT * FROM profile_versions WHERE name = :name AND version = :version",
                 {"name": name, "version": version_no})
    return found[0] if found else None


def pin(db, name: str, version_no: int, sha256: str, content: bytes, path: str, at: str) -> bool:
    """Record what a profile version means, the first time it is used; True when this call recorded it."""
    return db.execute("INSERT INTO profile_versions (name, version, sha256, content, path, first_used_at)"
                      " VALUES (:name, :version, :sha256, :content, :path, :at)"
                      " ON CONFLICT (name, version) DO NOTHING",
                      {"name": name, "version": version_no, "sha256": sha256, "content": content, "path": path,
                       "at": at}).rowcount == 1


def of_unit(source, unit: str) -> str | None:
    """The profile name assigned to ``unit``, or None."""
    found = rows(source, "SELECT profile FROM unit_profiles WHERE unit = :unit", {"unit": unit})
    return found[0]["profile"] if found else None


def judging(source, unit: str) -> str | None:
    """The profile name that judges ``unit``: its assignment, else the archive's default, else None; one query."""
    found = rows(source, "SELECT COALESCE((SELECT profile FROM unit_profiles WHERE unit = :unit),"
                 " (SELECT value FROM meta WHERE key = 'default_profile')) AS profile", {"unit": unit})
    return found[0]["profile"] if found else None


def assign(db, unit: str, name: str, at: str) -> None:
    db.execute("INSERT INTO unit_profiles (unit, profile, assigned_at) VALUES (:unit, :profile, :at)"
               " ON CONFLICT (unit) DO UPDATE SET profile = excluded.profile, assigned_at = excluded.assigned_at",
               {"unit": unit, "profile": name, "at": at})


def assignments(source) -> list[dict]:
    """Units with their own profile (unit, profile, assigned_at), by unit."""
    return rows(source, "SELECT unit, profile, assigned_at FROM unit_profiles ORDER BY unit")


def default(source) -> str | None:
    """The profile name for units without an assignment, if one was set."""
    found = rows(source, "SELECT value FROM meta WHERE key = 'default_profile'")
    return found[0]["value"] if found else None


def set_default(db, name: str) -> None:
    db.execute("INSERT INTO meta (key, value) VALUES ('default_profile', :name)"
               " ON CONFLICT (key) DO UPDATE SET value = excluded.value", {"name": name})
