"""Standards profiles: the imaging and catalogue rules as data (TOML), checked once, chosen per unit.

Shipped profiles live beside this module in ``profiles/``; an archive may add its own in
``<home>/profiles/NAME.toml``, whole or as ``extends = "gbt33870"`` plus the settings it changes.
A profile is parsed once per content of its files, and known by the SHA-256 of its resolved
content. Pure: which profile judges which unit, and pinning it in the archive, is ``central.profile``'s.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from quire.canonical import canonical_bytes, sha256_hex
from quire.manifest import COLOUR_FAMILIES, COLOUR_MODES, MEDIA_TYPES
from quire.settings import Regex, Settings, Texts, listed, parse_toml, validated

from .errors import ConfigError

FORMAT = "quire.profile/1"
KNOWN_FORMATS = (FORMAT,)
SHIPPED_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "gbt33870"
CATEGORIES = ("1", "2", "3", "4-1", "4-2", "4-3", "4-4", "5", "6", "7", "8",
              "9-1", "9-2", "9-3", "9-4", "10")
# What an inspector names when a sampled page is bad, unless a profile lists its own.
QC_REJECTION_REASONS = ("倾斜", "裁切不当", "模糊", "缺页", "颜色失真", "污渍或阴影", "分辨率不足", "页序错误",
                        "漏扫背面", "其他")


class ProfileError(ConfigError):
    """A profile that is missing, unreadable or breaks the profile format; carries every problem."""


def _always_on(value: bool) -> bool:
    if not value:
        raise ValueError("cannot be turned off: the bundle contract refuses a material whose page_count "
                         "differs from its pages before any profile is applied; remove the setting")
    return value


# Each table of a profile file. Field names are what the rules read (profile.skew_reject_above_deg);
# an alias is the key in the file where the two differ.
class Resolution(Settings):
    min_dpi: int = Field(ge=1)
    effective_tolerance_percent: float = Field(gt=0)
    require_extent: bool
    # refuse a page whose resolution the station only assumed
    require_measured_dpi: bool = Field(alias="require_measured")


class Colour(Settings):
    allowed_modes: listed(Literal[tuple(sorted(COLOUR_MODES))])  # type: ignore[valid-type]
    # colour families (quire.manifest.COLOUR_FAMILIES) that need colour
    colour_required_markers: listed(Literal[COLOUR_FAMILIES])  # type: ignore[valid-type]


class Files(Settings):
    allowed_media_types: listed(Literal[tuple(MEDIA_TYPES)])  # type: ignore[valid-type]
    one_format_per_batch: bool
    dpi_in_file: bool


class Skew(Settings):
    skew_reject_above_deg: float = Field(alias="reject_above_deg", ge=0)
    skew_warn_above_deg: float = Field(alias="warn_above_deg", ge=0)

    @model_validator(mode="after")
    def _warn_below_reject(self) -> "Skew":
        if self.skew_warn_above_deg > self.skew_reject_above_deg:
            raise ValueError("warn_above_deg must not be above reject_above_deg")
        return self


class Catalogue(Settings):
    categories: listed(Literal[CATEGORIES])  # type: ignore[valid-type]
    archive_no_pattern: Regex
    required_metadata: listed(Annotated[str, Field(pattern=r"^(batch|dossier|material)\.[a-z_]+$")])
    # Retired: it could never fire (the bundle contract already refuses it). Still read, so that
    # format /1 files written before keep loading; not part of the profile's content or hash.
    page_count_equals_images: Annotated[bool, AfterValidator(_always_on)] | None = Field(None, exclude=True)


class Qc(Settings):
    qc_sample_share: float = Field(alias="sample_share", gt=0, le=1)   # 0.05 = 5 %
    qc_sample_min_pages: int = Field(alias="sample_min_pages", ge=1)
    qc_accept_share: float = Field(alias="accept_share", gt=0, le=1)
    # the list an inspector picks a bad page's reason from (the web console's keys 1–9 take the first nine)
    qc_rejection_reasons: Texts = Field(QC_REJECTION_REASONS, alias="rejection_reasons", min_length=1)


class ProfileFile(Settings):
    """What a profile file says, once ``extends`` is resolved."""

    format: Literal["quire.profile/1"]
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,39}$")
    version: int = Field(ge=1)        # the profile's revision; every verdict records name, version and hash
    title: str = Field(min_length=1)
    resolution: Resolution
    colour: Colour
    files: Files
    skew: Skew
    catalogue: Catalogue
    qc: Qc

    @field_validator("name")
    @classmethod
    def _is_the_file_name(cls, value: str, info: ValidationInfo) -> str:
        expected = (info.context or {}).get("file_name", value)
        if value != expected:
            raise ValueError(f"must equal the file name {expected!r}")
        return value


class Profile(Resolution, Colour, Files, Skew, Catalogue, Qc):
    """A resolved profile as the rules read it: every table's settings side by side."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=False)

    name: str
    version: int
    title: str
    sha256: str      # of ``content``
    content: bytes = Field(exclude=True, repr=False)   # the resolved profile's canonical bytes (RFC 8785)
    path: str        # the file it was read from

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class _Parsed:
    """A profile file as parsed, with what it was parsed from."""

    data: bytes                 # the file's bytes
    extends: str | None         # the profile it extends
    base_sha256: str | None     # that profile's hash when this one was resolved
    doc: ProfileFile
    profile: Profile


_parsed: dict[Path, _Parsed] = {}


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
    """The named profile, checked; parsed again only when its files changed. ProfileError names every problem."""
    return _resolve(name, available(home), seen=())[1]


def _resolve(name: str, paths: dict[str, Path], seen: tuple[str, ...]) -> tuple[ProfileFile, Profile]:
    if name not in paths:
        raise ProfileError(f"no standards profile {name!r}; known: {', '.join(sorted(paths))}")
    path = paths[name]
    if name in seen:
        raise ProfileError(f"{path}: 'extends' goes round in a circle ({' → '.join(seen + (name,))})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile ({exc}); fix the file and retry") from None
    known = _parsed.get(path)
    if known is not None and known.data == data and (
            known.extends is None or _resolve(known.extends, paths, seen + (name,))[1].sha256 == known.base_sha256):
        return known.doc, known.profile
    return _parse(data, path, name, paths, seen)


def _parse(data: bytes, path: Path, name: str, paths: dict[str, Path],
           seen: tuple[str, ...]) -> tuple[ProfileFile, Profile]:
    table = parse_toml(data, str(path), ProfileError)
    if table.get("format") not in KNOWN_FORMATS:
        raise ProfileError(f"{path}: unknown profile format {table.get('format')!r} (this build reads "
                           f"{', '.join(KNOWN_FORMATS)}); upgrade Quire or fix the file")
    extends, base = None, None
    if "extends" in table:
        extends = str(table.pop("extends"))
        base = _resolve(extends, paths, seen + (name,))
        table = _merge(base[0].model_dump(mode="json", by_alias=True), table)
    doc = validated(ProfileFile, table, str(path), ProfileError, context={"file_name": name})
    content = canonical_bytes(doc.model_dump(mode="json", by_alias=True))
    settings = {key: value for section in ("resolution", "colour", "files", "skew", "catalogue", "qc")
                for key, value in dict(getattr(doc, section)).items()}
    profile = Profile.model_validate({**settings, "name": doc.name, "version": doc.version, "title": doc.title,
                                      "sha256": sha256_hex(content), "content": content, "path": str(path)})
    _parsed[path] = _Parsed(data, extends, base[1].sha256 if base else None, doc, profile)
    return doc, profile


def _merge(base: dict, override: dict) -> dict:
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged
