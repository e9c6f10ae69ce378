"""Standards profiles: the imaging and catalogue rules as data (TOML), checked once, chosen per unit.

Shipped profiles live beside this module in ``profiles/``; an archive may add its own in
``<home>/profiles/NAME.toml``, whole or as ``extends = "gbt33870"`` plus the settings it changes.
"""

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from quire.db import utcnow
from quire.manifest import COLOUR_FAMILIES, COLOUR_MODES, MEDIA_TYPES

from .archive import Archive
from .errors import ConfigError

FORMAT = "quire.profile/1"
KNOWN_FORMATS = (FORMAT,)
SHIPPED_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "gbt33870"
CATEGORIES = ("1", "2", "3", "4-1", "4-2", "4-3", "4-4", "5", "6", "7", "8",
              "9-1", "9-2", "9-3", "9-4", "10")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")


class ProfileError(ConfigError):
    """A profile that is missing, unreadable or breaks the profile format; carries every problem."""


@dataclass(frozen=True)
class Profile:
    name: str
    version: int
    title: str
    min_dpi: int
    effective_tolerance_percent: float
    require_extent: bool
    require_measured_dpi: bool              # refuse a page whose resolution the station only assumed
    allowed_modes: tuple[str, ...]
    colour_required_markers: tuple[str, ...]   # colour families (quire.manifest.COLOUR_FAMILIES) that need colour
    allowed_media_types: tuple[str, ...]
    one_format_per_batch: bool
    dpi_in_file: bool
    skew_reject_above_deg: float
    skew_warn_above_deg: float
    categories: tuple[str, ...]
    archive_no_pattern: str
    required_metadata: tuple[str, ...]
    page_count_equals_images: bool
    qc_sample_share: float
    qc_sample_min_pages: int
    qc_accept_share: float

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def _positive(v):
    return None if v > 0 else "must be above 0"


def _non_negative(v):
    return None if v >= 0 else "must be 0 or more"


def _share(v):
    return None if 0 < v <= 1 else "must be a share above 0 and at most 1 (0.05 = 5 %)"


def _subset(allowed):
    def check(values):
        unknown = [v for v in values if v not in allowed]
        return f"{unknown} not among {sorted(allowed)}" if unknown else None
    return check


def _regex(pattern):
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"is not a regular expression ({exc})"
    return None


def _dotted(paths):
    bad = [p for p in paths if not re.fullmatch(r"(batch|dossier|material)\.[a-z_]+", p)]
    return f"{bad} are not batch.*, dossier.* or material.* fields" if bad else None


# (section, key) → (Profile field, type, extra check); every key is required.
_SCHEMA = {
    ("resolution", "min_dpi"): ("min_dpi", int, _positive),
    ("resolution", "effective_tolerance_percent"): ("effective_tolerance_percent", float, _positive),
    ("resolution", "require_extent"): ("require_extent", bool, None),
    ("resolution", "require_measured"): ("require_measured_dpi", bool, None),
    ("colour", "allowed_modes"): ("allowed_modes", list, _subset(COLOUR_MODES)),
    ("colour", "colour_required_markers"): ("colour_required_markers", list, _subset(COLOUR_FAMILIES)),
    ("files", "allowed_media_types"): ("allowed_media_types", list, _subset(MEDIA_TYPES)),
    ("files", "one_format_per_batch"): ("one_format_per_batch", bool, None),
    ("files", "dpi_in_file"): ("dpi_in_file", bool, None),
    ("skew", "reject_above_deg"): ("skew_reject_above_deg", float, _non_negative),
    ("skew", "warn_above_deg"): ("skew_warn_above_deg", float, _non_negative),
    ("catalogue", "categories"): ("categories", list, _subset(CATEGORIES)),
    ("catalogue", "archive_no_pattern"): ("archive_no_pattern", str, _regex),
    ("catalogue", "required_metadata"): ("required_metadata", list, _dotted),
    ("catalogue", "page_count_equals_images"): ("page_count_equals_images", bool, None),
    ("qc", "sample_share"): ("qc_sample_share", float, _share),
    ("qc", "sample_min_pages"): ("qc_sample_min_pages", int, _positive),
    ("qc", "accept_share"): ("qc_accept_share", float, _share),
}
_SECTIONS = {section for section, _ in _SCHEMA}


def available(home: Path | None = None) -> dict[str, Path]:
    """Every profile by name: the shipped ones, then the archive's own from ``<home>/profiles``."""
    found = {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.toml"))}
    if home is not None:
        for path in sorted((Path(home) / "profiles").glob("*.toml")):
            if path.stem in found:
                raise ProfileError(f"{path}: a shipped profile is called {path.stem!r}; give yours another name")
            found[path.stem] = path
    return found


def load(name: str, home: Path | None = None) -> Profile:
    """The named profile, read and checked now; raise ProfileError naming every problem."""
    return _build(name, available(home), seen=())


def for_unit(archive: Archive, unit: str) -> Profile:
    """The profile that judges ``unit``'s bundles: its assignment, else the archive's default."""
    row = archive.catalogue.one("SELECT profile FROM unit_profiles WHERE unit = ?", [unit])
    return load(row["profile"] if row else default_name(archive), archive.config.home)


def default_name(archive: Archive) -> str:
    """The profile for units without an assignment (meta 'default_profile', else gbt33870)."""
    row = archive.catalogue.one("SELECT value FROM meta WHERE key = 'default_profile'")
    return row["value"] if row else DEFAULT_PROFILE


def assign(archive: Archive, unit: str, name: str) -> Profile:
    """Judge ``unit``'s future bundles by profile ``name`` (checked first); logged in the audit log."""
    from . import audit

    chosen = load(name, archive.config.home)
    if not unit:
        raise ProfileError("name the unit (全宗/单位) the profile is for")
    with archive.catalogue.transaction() as db:
        db.execute("INSERT INTO unit_profiles VALUES (?, ?, ?) ON CONFLICT (unit) DO UPDATE"
                   " SET profile = excluded.profile, assigned_at = excluded.assigned_at",
                   [unit, chosen.name, utcnow()])
        audit.record(db, archive, "profile.assign", unit, {"unit": unit, "profile": chosen.name,
                                                           "version": chosen.version})
    return chosen


def set_default(archive: Archive, name: str) -> Profile:
    """Judge units without an assignment by profile ``name`` (checked first); logged in the audit log."""
    from . import audit

    chosen = load(name, archive.config.home)
    with archive.catalogue.transaction() as db:
        db.execute("INSERT INTO meta VALUES ('default_profile', ?) ON CONFLICT (key) DO UPDATE"
                   " SET value = excluded.value", [chosen.name])
        audit.record(db, archive, "profile.default", "*", {"profile": chosen.name, "version": chosen.version})
    return chosen


def assignments(archive: Archive) -> list[dict]:
    """Units with their own profile, by unit."""
    return archive.catalogue.query("SELECT unit, profile, assigned_at FROM unit_profiles ORDER BY unit")


def _build(name: str, paths: dict[str, Path], seen: tuple[str, ...]) -> Profile:
    if name not in paths:
        raise ProfileError(f"no standards profile {name!r}; known: {', '.join(sorted(paths))}")
    path = paths[name]
    if name in seen:
        raise ProfileError(f"{path}: 'extends' goes round in a circle ({' → '.join(seen + (name,))})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read the profile ({exc}); fix the file and retry") from None
    if data.get("format") not in KNOWN_FORMATS:
        raise ProfileError(f"{path}: unknown profile format {data.get('format')!r} (this build reads "
                           f"{', '.join(KNOWN_FORMATS)}); upgrade Quire or fix the file")
    if "extends" in data:
        base = _build(str(data["extends"]), paths, seen + (name,))
        data = _merge(_as_toml(base), data)
    return _check(data, path, name)


def _check(data: dict, path: Path, name: str) -> Profile:
    problems = []
    if data.get("name") != name or not _NAME.fullmatch(name):
        problems.append(f"name {data.get('name')!r} must equal the file name {name!r} "
                        "(lower-case letters, digits, '.', '_' or '-')")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems.append(f"version {version!r} must be a whole number from 1")
    if not isinstance(data.get("title"), str):
        problems.append("title missing")
    unknown = sorted(set(data) - {"format", "name", "version", "title", "extends"} - _SECTIONS)
    problems += [f"unknown setting {key!r}" for key in unknown]
    values = {}
    for section in sorted(_SECTIONS):
        table = data.get(section)
        if not isinstance(table, dict):
            problems.append(f"[{section}] missing")
            continue
        keys = {key for s, key in _SCHEMA if s == section}
        problems += [f"unknown setting {section}.{key}" for key in sorted(set(table) - keys)]
        for key in sorted(keys):
            field, typ, check = _SCHEMA[(section, key)]
            value = table.get(key)
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
                problems.append(f"{section}.{key} missing or not {typ.__name__}")
                continue
            if typ is list and not all(isinstance(v, str) for v in value):
                problems.append(f"{section}.{key} must be a list of strings")
                continue
            error = check(value) if check else None
            if error:
                problems.append(f"{section}.{key} {error}")
                continue
            values[field] = tuple(value) if typ is list else value
    if not problems and values["skew_warn_above_deg"] > values["skew_reject_above_deg"]:
        problems.append("skew.warn_above_deg must not be above skew.reject_above_deg")
    if problems:
        raise ProfileError(f"{path}: " + "; ".join(problems))
    return Profile(name=name, version=version, title=data["title"], **values)


def _as_toml(profile: Profile) -> dict:
    """A profile back in its TOML shape, so a profile that extends it can override single settings."""
    out: dict = {}
    for (section, key), (field, typ, _) in _SCHEMA.items():
        value = getattr(profile, field)
        out.setdefault(section, {})[key] = list(value) if typ is list else value
    return out


def _merge(base: dict, override: dict) -> dict:
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for key, value in override.items():
        if key == "extends":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged
