"""Check a bundle against its unit's standards profile; report every violation as a typed detail.

What the station claims is checked against what the central service reads back itself: each
page's JPEG/TIFF header is re-read from the stored blob (format, dpi, mode, pixel size).
"""

import re
import warnings
from dataclasses import dataclass, field, fields
from typing import BinaryIO, Callable, ClassVar

import grpc
from PIL import Image

from quire import manifest as manifest_format
from quire.catalogue import parse_item

from .errors import CentralError
from .profile_rules import Profile

# Pillow's mode for each colour mode the manifest may claim: 24-bit RGB, 8-bit grey, 1-bit (FADGI).
PIL_MODES = {"colour": "RGB", "grey": "L", "bilevel": "1"}
PIL_FORMATS = {"image/jpeg": "JPEG", "image/tiff": "TIFF"}
# Messages to the station group pages and stop here; `quire-central quarantine show` has them all.
MAX_MESSAGE_CHARS = 3000


class StandardsUnavailable(CentralError):
    """The unit's profile cannot be loaded: the archive's fault, so the station keeps the bundle and retries."""

    code = grpc.StatusCode.UNAVAILABLE


@dataclass(frozen=True)
class Violation:
    """One broken rule; ``page`` is None for a rule about the whole bundle."""

    rule: ClassVar[str] = "Violation"
    severity: ClassVar[str] = "reject"

    def detail(self) -> str:
        raise NotImplementedError

    @property
    def where(self) -> int | None:
        return getattr(self, "page", None)

    def as_dict(self) -> dict:
        """The violation as stored with a quarantined bundle."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {"rule": self.rule, "severity": self.severity, **values, "message": self.detail()}

    def __str__(self) -> str:
        where = "" if self.where is None else f" page {self.where}"
        return f"{self.rule}{where}: {self.detail()}"


@dataclass(frozen=True)
class BelowResolution(Violation):
    rule: ClassVar[str] = "BelowResolution"
    page: int
    dpi: int
    minimum: int

    def detail(self):
        return f"scanned at {self.dpi} dpi, the profile's minimum is {self.minimum} dpi"


@dataclass(frozen=True)
class EffectiveResolution(Violation):
    rule: ClassVar[str] = "EffectiveResolution"
    page: int
    effective_dpi: float
    stated_dpi: int
    tolerance_percent: float

    def detail(self):
        return (f"{self.effective_dpi:.1f} dpi of the physical page, {self.stated_dpi} dpi stated "
                f"(allowed ±{self.tolerance_percent:g} %)")


@dataclass(frozen=True)
class AssumedResolution(Violation):
    rule: ClassVar[str] = "AssumedResolution"
    page: int
    dpi: int

    def detail(self):
        return (f"{self.dpi} dpi was assumed, not measured (its image file states no resolution); rescan the page, "
                "or measure its resolution and import it again with --dpi (quire-station scan --rescan --dpi N)")


@dataclass(frozen=True)
class ColourRequired(Violation):
    rule: ClassVar[str] = "ColourRequired"
    page: int
    mode: str
    found: tuple[str, ...]      # the colour families the station found; empty: the station itself chose colour

    def detail(self):
        if not self.found:
            return f"stored as {self.mode}, but the station's own record chose colour"
        return f"stored as {self.mode}, but the station found {' and '.join(self.found)} on it, which needs colour"


@dataclass(frozen=True)
class LegacyRecord(Violation):
    rule: ClassVar[str] = "LegacyRecord"
    severity: ClassVar[str] = "warn"
    format: str

    def detail(self):
        return (f"a {self.format} bundle records neither where each page's resolution came from nor the colour "
                "evidence: colour was judged on the station's chosen mode only, and a measured resolution "
                "could not be required; update the station")


@dataclass(frozen=True)
class ColourModeNotAllowed(Violation):
    rule: ClassVar[str] = "ColourModeNotAllowed"
    page: int
    mode: str
    allowed: tuple[str, ...]

    def detail(self):
        return f"{self.mode} is not allowed; use {' or '.join(self.allowed)}"


@dataclass(frozen=True)
class FormatNotAllowed(Violation):
    rule: ClassVar[str] = "FormatNotAllowed"
    page: int
    media_type: str
    allowed: tuple[str, ...]

    def detail(self):
        return f"{self.media_type} is not allowed; use {' or '.join(self.allowed)}"


@dataclass(frozen=True)
class MixedFormats(Violation):
    rule: ClassVar[str] = "MixedFormats"
    formats: tuple[str, ...]

    def detail(self):
        return f"one format per batch, but this batch has {', '.join(self.formats)}"


@dataclass(frozen=True)
class DpiNotInFile(Violation):
    rule: ClassVar[str] = "DpiNotInFile"
    page: int
    in_file: int | None
    stated: int

    def detail(self):
        found = "no resolution" if self.in_file is None else f"{self.in_file} dpi"
        return f"the file's header says {found}, the manifest {self.stated} dpi"


@dataclass(frozen=True)
class HeaderMismatch(Violation):
    rule: ClassVar[str] = "HeaderMismatch"
    page: int
    field: str
    claimed: str
    in_file: str

    def detail(self):
        return f"the manifest says {self.field} {self.claimed}, the stored file is {self.in_file}"


@dataclass(frozen=True)
class UnreadableImage(Violation):
    rule: ClassVar[str] = "UnreadableImage"
    page: int
    error: str

    def detail(self):
        return f"the stored file is not a readable image ({self.error})"


@dataclass(frozen=True)
class ResidualSkew(Violation):
    rule: ClassVar[str] = "ResidualSkew"
    page: int
    residual_deg: float
    limit_deg: float

    def detail(self):
        return f"{self.residual_deg:.2f}° of skew left after processing, limit {self.limit_deg:g}°"


@dataclass(frozen=True)
class SkewWarning(ResidualSkew):
    severity: ClassVar[str] = "warn"


@dataclass(frozen=True)
class CountDiffersConfirmed(Violation):
    """The station's directory listed another page count; its operator confirmed the scanned one, saying why."""

    rule: ClassVar[str] = "CountDiffersConfirmed"
    severity: ClassVar[str] = "warn"
    expected: int
    found: int
    reason: str
    operator: str

    def detail(self):
        return (f"the directory lists {self.expected} pages, {self.found} were scanned; confirmed by "
                f"{self.operator or 'the operator'}: {self.reason}")


@dataclass(frozen=True)
class InvalidCategory(Violation):
    rule: ClassVar[str] = "InvalidCategory"
    item: str
    category: str | None

    def detail(self):
        if self.category is None:
            return f"material item {self.item!r} is not 类-序 or 类-小类-序"
        return f"category {self.category} of item {self.item} is not one this profile allows"


@dataclass(frozen=True)
class ArchiveNumberPattern(Violation):
    rule: ClassVar[str] = "ArchiveNumberPattern"
    archive_no: str
    pattern: str

    def detail(self):
        return f"archive number {self.archive_no!r} does not match the unit's pattern {self.pattern}"


@dataclass(frozen=True)
class MissingMetadata(Violation):
    rule: ClassVar[str] = "MissingMetadata"
    field: str
    page: int | None = None

    def detail(self):
        return f"{self.field} is required and missing or empty"


@dataclass
class Findings:
    """A profile's verdict on one bundle: every violation, rejections and warnings alike."""

    profile: Profile
    violations: list[Violation] = field(default_factory=list)

    @property
    def rejections(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "reject"]

    @property
    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "warn"]

    @property
    def ok(self) -> bool:
        return not self.rejections

    def reasons(self) -> list[str]:
        """The rejections for the station, pages grouped per rule, bounded for a gRPC status."""
        if self.ok:
            return []
        return _bounded([f"standards profile {self.profile.label} not met"] + summarise(self.rejections))

    def receipt_field(self) -> dict:
        """What a receipt says about the standards: the profile applied (with its content hash) and its warnings."""
        return {"profile": self.profile.name, "version": self.profile.version, "sha256": self.profile.sha256,
                "warnings": summarise(self.warnings)}


def check(manifest: dict, open_blob: Callable[[str], BinaryIO], profile: Profile) -> Findings:
    """Every violation of ``profile`` by the bundle ``manifest`` whose page files ``open_blob`` opens."""
    found = Findings(profile)
    out = found.violations
    out += _metadata(manifest, profile)
    out += _catalogue(manifest, profile)
    pages = manifest.get("pages") or []
    typed = manifest.get("format") != manifest_format.FORMAT_1
    if not typed:
        out.append(LegacyRecord(manifest_format.FORMAT_1))
    for page in pages:
        out += _page(page, profile, open_blob, typed)
    formats = sorted({p.get("media_type") for p in pages if isinstance(p.get("media_type"), str)})
    if profile.one_format_per_batch and len(formats) > 1:
        out.append(MixedFormats(tuple(formats)))
    return found


def summarise(violations: list[Violation]) -> list[str]:
    """One line per rule and detail, with its pages: 'BelowResolution pages 1-3, 5: …'."""
    groups: dict[tuple[str, str], list[int | None]] = {}
    for v in violations:
        groups.setdefault((v.rule, v.detail()), []).append(v.where)
    lines = []
    for (rule, detail), where in groups.items():
        pages = sorted(n for n in where if n is not None)
        lines.append(f"{rule}{_pages(pages)}: {detail}")
    return lines


def _metadata(manifest: dict, profile: Profile) -> list[Violation]:
    out = []
    for path in profile.required_metadata:
        section, key = path.split(".", 1)
        value = (manifest.get(section) or {}).get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            out.append(MissingMetadata(path))
    return out


def _catalogue(manifest: dict, profile: Profile) -> list[Violation]:
    out = []
    material, dossier = manifest.get("material") or {}, manifest.get("dossier") or {}
    item = str(material.get("item", ""))
    try:
        category = parse_item(item).category
    except ValueError:
        out.append(InvalidCategory(item, None))
    else:
        if category not in profile.categories:
            out.append(InvalidCategory(item, category))
    archive_no = dossier.get("archive_no")
    if isinstance(archive_no, str) and archive_no and not re.fullmatch(profile.archive_no_pattern, archive_no):
        out.append(ArchiveNumberPattern(archive_no, profile.archive_no_pattern))
    check = manifest.get("count_check") or {}
    confirmed = check.get("confirmation")
    if confirmed and not manifest_format.count_matches(check):   # unconfirmed differences the manifest refuses
        out.append(CountDiffersConfirmed(check["expected"], check["found"], confirmed["reason"], confirmed["operator"]))
    return out


def _page(page: dict, profile: Profile, open_blob: Callable[[str], BinaryIO], typed: bool) -> list[Violation]:
    """``typed``: the record carries dpi_source and colour_evidence (quire.bundle/2 on)."""
    n, dpi, mode, media = page.get("n"), page.get("dpi"), page.get("colour"), page.get("media_type")
    record = page.get("record") or {}
    out: list[Violation] = []
    if isinstance(dpi, int) and dpi < profile.min_dpi:
        out.append(BelowResolution(n, dpi, profile.min_dpi))
    if typed and profile.require_measured_dpi and record["dpi_source"] == "assumed":
        out.append(AssumedResolution(n, dpi))
    if mode not in profile.allowed_modes:
        out.append(ColourModeNotAllowed(n, mode, profile.allowed_modes))
    if media not in profile.allowed_media_types:
        out.append(FormatNotAllowed(n, media, profile.allowed_media_types))
    out += _colour_required(n, mode, record, profile, typed)
    out += _skew(n, record, profile)
    out += _extent(n, page, record, profile)
    out += _header(n, page, profile, open_blob)
    return out


def _colour_required(n: int, mode: str, record: dict, profile: Profile, typed: bool) -> list[Violation]:
    """From the record's typed fields only: never from its colour_reason, which is for people."""
    if mode == "colour":
        return []
    if record.get("colour") == "colour":
        return [ColourRequired(n, mode, ())]
    if not typed:
        return []
    found = tuple(f for f in record["colour_evidence"]["found_percent"] if f in profile.colour_required_markers)
    return [ColourRequired(n, mode, found)] if found else []


def _skew(n: int, record: dict, profile: Profile) -> list[Violation]:
    skew, rotation = record.get("skew_deg"), record.get("rotation_deg")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (skew, rotation)):
        return [MissingMetadata("record.skew_deg, record.rotation_deg", n)]
    # skew_deg is what the station measured, rotation_deg what it applied (−skew, or 0 in its deadband).
    residual = round(abs(skew + rotation), 3)
    if residual > profile.skew_reject_above_deg:
        return [ResidualSkew(n, residual, profile.skew_reject_above_deg)]
    if residual > profile.skew_warn_above_deg:
        return [SkewWarning(n, residual, profile.skew_warn_above_deg)]
    return []


def _extent(n: int, page: dict, record: dict, profile: Profile) -> list[Violation]:
    extent = record.get("extent_mm")
    if extent is None:
        return [MissingMetadata("record.extent_mm", n)] if profile.require_extent else []
    if not (isinstance(extent, list) and len(extent) == 2
            and all(isinstance(v, (int, float)) and v > 0 for v in extent)):
        return [MissingMetadata("record.extent_mm as [width, height] in mm", n)]
    stated = page.get("dpi")
    if not isinstance(stated, int) or stated <= 0:
        return []
    out = []
    for pixels, mm in zip((page.get("width_px"), page.get("height_px")), extent):
        effective = pixels / (mm / 25.4)
        if abs(effective - stated) > stated * profile.effective_tolerance_percent / 100:
            out.append(EffectiveResolution(n, round(effective, 1), stated, profile.effective_tolerance_percent))
            break
    return out


def _header(n: int, page: dict, profile: Profile, open_blob: Callable[[str], BinaryIO]) -> list[Violation]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Image.open reads the header only; no pixel is decoded here.
            with open_blob(page["sha256"]) as fh, Image.open(fh) as im:
                fmt, mode, size, dpi = im.format, im.mode, im.size, im.info.get("dpi")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return [UnreadableImage(n, type(exc).__name__ + (f": {exc}" if str(exc) else ""))]
    out: list[Violation] = []
    claimed_format = PIL_FORMATS.get(page.get("media_type"))
    if fmt != claimed_format:
        out.append(HeaderMismatch(n, "format", str(page.get("media_type")), str(fmt)))
    claimed_mode = PIL_MODES.get(page.get("colour"))
    if mode != claimed_mode:
        out.append(HeaderMismatch(n, "colour mode", f"{page.get('colour')} ({claimed_mode})", f"{mode}"))
    claimed_size = (page.get("width_px"), page.get("height_px"))
    if size != claimed_size:
        out.append(HeaderMismatch(n, "pixel size", "×".join(map(str, claimed_size)), "×".join(map(str, size))))
    if profile.dpi_in_file:
        values = {round(float(d)) for d in dpi} if dpi else set()
        in_file = values.pop() if len(values) == 1 else None
        if in_file != page.get("dpi"):
            out.append(DpiNotInFile(n, in_file, page.get("dpi")))
    return out


def _pages(pages: list[int]) -> str:
    if not pages:
        return ""
    runs, start = [], pages[0]
    for prev, cur in zip(pages, pages[1:] + [None]):
        if cur != prev + 1:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return (" page " if len(pages) == 1 else " pages ") + ", ".join(runs)


def _bounded(lines: list[str]) -> list[str]:
    out, used = [], 0
    for i, line in enumerate(lines):
        if used + len(line) > MAX_MESSAGE_CHARS:
            out.append(f"… and {len(lines) - i} more; 'quire-central quarantine show' lists them all")
            break
        out.append(line)
        used += len(line) + 2
    return out
