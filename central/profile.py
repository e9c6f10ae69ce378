"""The archive's standards profiles: which one judges each unit, pinned the first time it judges (logged),
and a bundle judged by it. The profiles themselves, as data, are ``profile_rules``'s (pure)."""

from weakref import WeakKeyDictionary

from quire.db import utcnow

from . import audit
from .archive import Archive
from .profile_rules import (DEFAULT_PROFILE, SHIPPED_DIR, Profile, ProfileError,  # noqa: F401 - what callers read
                            ProfileFile, available, load)
from .standards import Findings, StandardsUnavailable, check
from .store import profiles as store_profiles


def for_unit(archive: Archive, unit: str) -> Profile:
    """The profile that judges ``unit``'s bundles: its assignment, else the archive's default; pinned."""
    return pinned(archive, load(store_profiles.judging(archive.catalogue, unit) or DEFAULT_PROFILE,
                                archive.config.home))


def default_name(archive: Archive) -> str:
    """The profile for units without an assignment (meta 'default_profile', else gbt33870)."""
    return store_profiles.default(archive.catalogue) or DEFAULT_PROFILE


# What a profile name and version meant, as confirmed against each open catalogue by this process. Its
# rows are only ever added (a pin never changes), so a confirmed pin needs no second look; the name that
# judges a unit is read on every call, so a default set by another process is followed at once.
_confirmed: WeakKeyDictionary = WeakKeyDictionary()


def pinned(archive: Archive, profile: Profile) -> Profile:
    """``profile``, once its name and version are known to mean its content in this archive.

    The first use of a name and version records its hash and content (and logs it); a file edited
    later without a new version is refused, so that one label never stands for two sets of rules.
    """
    known = _confirmed.setdefault(archive.catalogue, set())
    if (profile.name, profile.version, profile.sha256) in known:
        return profile
    row = store_profiles.version(archive.catalogue, profile.name, profile.version)
    if row is None:
        with archive.catalogue.transaction() as db:
            if store_profiles.pin(db, profile.name, profile.version, profile.sha256, profile.content, profile.path,
                                  utcnow()):
                audit.record(db, archive, "profile.pin", profile.label, _reference(profile) | {"path": profile.path})
        row = store_profiles.version(archive.catalogue, profile.name, profile.version)
    if row["sha256"] != profile.sha256:
        raise ProfileError(
            f"{profile.path}: profile {profile.label} judged this archive's bundles with content sha256 "
            f"{row['sha256']}, but the file now resolves to sha256 {profile.sha256}; a changed profile needs a "
            "new version (raise 'version' in the file), or put back what it said")
    known.add((profile.name, profile.version, profile.sha256))
    return profile


def assign(archive: Archive, unit: str, name: str) -> Profile:
    """Judge ``unit``'s future bundles by profile ``name`` (checked first); logged in the audit log."""
    if not unit:
        raise ProfileError("name the unit (全宗/单位) the profile is for")
    chosen = pinned(archive, load(name, archive.config.home))
    with archive.catalogue.transaction() as db:
        store_profiles.assign(db, unit, chosen.name, utcnow())
        audit.record(db, archive, "profile.assign", unit, {"unit": unit, **_reference(chosen)})
    return chosen


def set_default(archive: Archive, name: str) -> Profile:
    """Judge units without an assignment by profile ``name`` (checked first); logged in the audit log."""
    chosen = pinned(archive, load(name, archive.config.home))
    with archive.catalogue.transaction() as db:
        store_profiles.set_default(db, chosen.name)
        audit.record(db, archive, "profile.default", "*", _reference(chosen))
    return chosen


def assignments(archive: Archive) -> list[dict]:
    """Units with their own profile, by unit."""
    return store_profiles.assignments(archive.catalogue)


def _reference(profile: Profile) -> dict:
    return {"profile": profile.name, "version": profile.version, "sha256": profile.sha256}


def check_bundle(archive: Archive, manifest: dict, unit: str, open_blob=None) -> Findings:
    """Judge a bundle whose blobs are all stored by the profile of ``unit`` (read through ``open_blob``,
    the blob store's open unless given)."""
    try:
        chosen = for_unit(archive, unit)
    except ProfileError as exc:
        raise StandardsUnavailable(
            f"the archive cannot judge bundles for unit {unit!r} now ({exc}); the bundle stays "
            "queued on the station until an administrator fixes the profile") from None
    return check(manifest, open_blob or archive.blobs.open, chosen)
