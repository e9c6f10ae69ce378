"""Bundle manifests: the signed, canonical description of one material's pages.

A bundle is one material (材料) of one dossier: a payload of page files and one manifest listing
each page's SHA-256, size and metadata. The manifest's canonical bytes are what the station signs
and what the central service verifies; the bundle id is the SHA-256 of those bytes.

/2 types the page record: where the resolution came from (``dpi_source``) and what the colour guard
found (``colour_evidence``), so the archive never reads the human-readable ``colour_reason``.
/1 is still read; its records are taken as they come.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, ValidationError

from . import keys
from .canonical import canonical_bytes, parse_json_object, sha256_hex
from .cas import Sha256Hex
from .catalogue import parse_item
from .errors import Malformed, UnknownFormat
from .settings import Settings, problems

FORMAT_1 = "quire.bundle/1"
FORMAT = "quire.bundle/2"
KNOWN_FORMATS = (FORMAT_1, FORMAT)
MEDIA_TYPES = {"image/jpeg": ".jpg", "image/tiff": ".tif"}
COLOUR_MODES = {"colour", "grey", "bilevel"}
# The colour families the station's colour guard measures (hue ranges of coloured ink on the paper).
COLOUR_FAMILIES = ("red", "orange/yellow", "green", "blue", "purple")
# Where a page's resolution came from: the scanner's setting, the image file's header, the operator
# (who measured it), or the station's configured default because nothing said (not measured at all).
DPI_SOURCES = ("scanner", "file", "operator", "assumed")
# The page record's fields /2 added: a station stored records without them before it was upgraded.
ADDED_IN_2 = ("dpi_source", "colour_evidence")

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
Dpi = Annotated[int, Field(ge=1, le=10000)]
Degrees = Annotated[float, Field(ge=-45, le=45)]
Percent = Annotated[float, Field(ge=0, le=100)]
ColourMode = Literal["colour", "grey", "bilevel"]


def _item(text: str) -> str:
    parse_item(text)
    return text


class Batch(Settings):
    id: NonEmpty
    operator: str           # may be empty: the standards profile says whether it is required
    source: str
    started_at: str
    ended_at: str


class Dossier(Settings):
    archive_no: NonEmpty
    name: str | None = None
    sex: str | None = None
    birth_date: str | None = None
    post: str | None = None
    kind: Literal["personnel", "integrity", "party-building"] | None = None
    unit: str | None = None


class SheetSide(Settings):
    """One side of a cover sheet as scanned: kept in the bundle as evidence, not among the material's pages."""

    sha256: Sha256Hex
    bytes: Annotated[int, Field(ge=1)]
    media_type: Literal[tuple(MEDIA_TYPES)]
    width_px: Annotated[int, Field(ge=1)]
    height_px: Annotated[int, Field(ge=1)]
    dpi: Dpi
    feed_page: Annotated[int, Field(ge=1)]  # its place in the feed (1 = the first page fed)


class CoverSheetBack(SheetSide):
    """The other side of a cover sheet fed duplex (blank, or a sheet's back as printed): evidence with it."""


class CoverSheet(SheetSide):
    """The cover sheet (分隔页) the material was split from its dossier's feed at: its image is kept in the
    bundle as evidence, not among the material's pages."""

    payload: NonEmpty                       # the QR code's text, as read
    generic: bool                           # a "next material" sheet, bound by the directory's order
    back: CoverSheetBack | None = None      # its back, on a duplex feed


class Material(Settings):
    item: Annotated[str, AfterValidator(_item)]
    title: str
    page_count: Annotated[int, Field(ge=0)]
    date_formed: str | None = None
    remarks: str | None = None
    rescan: bool | None = None
    cover_sheet: CoverSheet | None = None


class ColourEvidence(Settings):
    """What the colour guard measured: the share of the paper each colour family covers."""

    found_percent: dict[Literal[COLOUR_FAMILIES], Percent]   # families below the station's floor are left out
    grey_source: bool                                       # the scanner delivered grey: no colour to find
    policy: Literal["auto", "colour"]


class Master(Settings):
    """The untouched capture a page was processed from, kept as the preservation master (lossless)."""

    sha256: Sha256Hex
    bytes: Annotated[int, Field(ge=1)]
    media_type: Literal["image/tiff"]
    width_px: Annotated[int, Field(ge=1)]
    height_px: Annotated[int, Field(ge=1)]


class PageRecord(Settings):
    """The processing record of one page (/2): what the archive decides on is required and typed."""

    dpi: Dpi
    dpi_source: Literal[DPI_SOURCES]
    colour: ColourMode
    colour_reason: str                      # for people; nothing decides on it
    colour_evidence: ColourEvidence
    blank: bool
    skew_deg: Degrees
    rotation_deg: Degrees
    skew_source: Literal["content", "paper edge", "content (weak)", "undecided", "none"] | None = None
    skew_flag: bool | None = None           # the skew could not be told: kept as captured for the inspector
    orientation: Literal[0, 90, 180, 270] | None = None
    orientation_confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    orientation_flag: bool | None = None
    crop: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=4, max_length=4)] | None = None
    blank_score: Percent | None = None
    codec: Literal["jpeg", "tiff-g4"] | None = None
    bytes: Annotated[int, Field(ge=1)] | None = None
    seconds: Annotated[float, Field(ge=0)] | None = None
    extent_mm: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)] | None = None
    master: Master | None = None             # the capture kept beside the page, where the profile asks


class PageV1(Settings):
    n: Annotated[int, Field(ge=1)]
    sha256: Sha256Hex
    bytes: Annotated[int, Field(ge=1)]
    media_type: Literal[tuple(MEDIA_TYPES)]
    width_px: Annotated[int, Field(ge=1)]
    height_px: Annotated[int, Field(ge=1)]
    dpi: Dpi
    colour: ColourMode
    captured_at: str
    record: dict[str, Any]


class Page(PageV1):
    record: PageRecord


class ManifestV1(Settings):
    format: Literal[FORMAT_1]
    station_id: NonEmpty
    station_host: str
    created_at: str
    batch: Batch
    dossier: Dossier
    material: Material
    pages: Annotated[list[PageV1], Field(min_length=1)]


class PageEdit(Settings):
    """One change to the batch's pages before it was sealed; ``n`` is the page's number at that time."""

    action: Literal["rescan", "insert", "remove"]
    n: Annotated[int, Field(ge=1)]
    sha256: Sha256Hex | None = None            # the page put in (rescan, insert)
    removed_sha256: Sha256Hex | None = None    # the page taken out (rescan, remove): kept as evidence
    reason: str
    operator: str
    at: NonEmpty


class CountConfirmation(Settings):
    reason: NonEmpty
    operator: str
    at: NonEmpty


class CountCheck(Settings):
    """The material's pages counted against the dossier's directory (目录 页数) when it was sealed."""

    expected: Annotated[int, Field(ge=0)]
    found: Annotated[int, Field(ge=0)]
    blank: Annotated[int, Field(ge=0)] = 0     # of the pages found, those flagged blank
    source: NonEmpty                           # where the directory came from: its file, or the archive
    confirmation: CountConfirmation | None = None   # required when expected and found differ


class Manifest(ManifestV1):
    format: Literal[FORMAT]
    pages: Annotated[list[Page], Field(min_length=1)]
    page_edits: list[PageEdit] | None = None
    count_check: CountCheck | None = None


MODELS = {FORMAT_1: ManifestV1, FORMAT: Manifest}


@dataclass(frozen=True)
class SignedManifest:
    manifest: dict
    data: bytes        # canonical bytes, exactly as signed
    signature: bytes

    @property
    def bundle_id(self) -> str:
        return sha256_hex(self.data)


def seal(manifest: dict, key, format: str = FORMAT) -> SignedManifest:
    """Canonicalise ``manifest`` (after checking it as ``format``, one of KNOWN_FORMATS) and sign it with
    the station key."""
    manifest = dict(manifest, format=format)
    _check(manifest)
    data = canonical_bytes(manifest)
    return SignedManifest(manifest, data, keys.sign(key, keys.BUNDLE_CONTEXT, data))


def read(data: bytes) -> dict:
    """Parse manifest bytes: known format, canonical, complete; raise with every problem found.

    This does not check the signature; call ``verify`` with the station's enrolled key first.
    """
    obj = parse_json_object(data, "manifest")
    if obj.get("format") not in KNOWN_FORMATS:
        raise UnknownFormat("manifest", obj.get("format"), KNOWN_FORMATS)
    _check(obj)
    return obj


def blobs(m: dict) -> list[dict]:
    """Every file a bundle carries, each with its sha256, bytes and media_type: the pages, then each page's
    preservation master where one was kept (with its page's n), then the cover sheet's image (and its
    back's, fed duplex) when the material was split from a feed at one."""
    sheet = (m.get("material") or {}).get("cover_sheet")
    masters = [dict(page["record"]["master"], n=page["n"]) for page in m["pages"]
               if isinstance(page.get("record"), dict) and page["record"].get("master")]
    sides = [sheet] + ([sheet["back"]] if sheet.get("back") else []) if sheet else []
    return list(m["pages"]) + masters + [dict(side, n=0) for side in sides]


def verify(data: bytes, signature: bytes, public_key: bytes) -> None:
    """Check the station's signature over the manifest bytes."""
    keys.verify(public_key, keys.BUNDLE_CONTEXT, data, signature, "bundle manifest")


def _check(m: dict) -> None:
    model, found = MODELS[m["format"]], []
    try:
        model.model_validate(m)
    except ValidationError as exc:
        found = problems(model, exc)
    found += _order(m)
    if found:
        raise Malformed("manifest", found)


def _order(m: dict) -> list[str]:
    """What no single field can say: pages numbered 1, 2, … in order, and as many as the material's 页数."""
    pages = m.get("pages")
    if not isinstance(pages, list):
        return []
    out = []
    for i, page in enumerate(pages, 1):
        n = page.get("n") if isinstance(page, dict) else None
        if isinstance(n, int) and not isinstance(n, bool) and n != i:
            out.append(f"pages[{i - 1}].n is {n}, expected {i} (pages in order)")
    count = (m.get("material") or {}).get("page_count") if isinstance(m.get("material"), dict) else None
    if isinstance(count, int) and not isinstance(count, bool) and count != len(pages):
        out.append(f"material.page_count is {count} but {len(pages)} pages are listed")
    return out + _reviewed(m, pages)


def count_matches(check: dict) -> bool:
    """Whether a count_check's pages agree with the directory: all of them, or those not flagged blank (a
    directory's 页数 counts the pages with something on them)."""
    blank = check.get("blank")
    blank = blank if isinstance(blank, int) and not isinstance(blank, bool) else 0
    return check["expected"] in (check["found"], check["found"] - blank)


def _reviewed(m: dict, pages: list) -> list[str]:
    """A count differing from the directory is confirmed; each page put in is listed, or taken out again."""
    out, check = [], m.get("count_check")
    if isinstance(check, dict) and isinstance(check.get("found"), int) and isinstance(check.get("expected"), int):
        if check["found"] != len(pages):
            out.append(f"count_check.found is {check['found']} but {len(pages)} pages are listed")
        if not count_matches(check) and not check.get("confirmation"):
            out.append(f"the directory lists {check['expected']} pages and {check['found']} were scanned, "
                       "with no operator's confirmation (count_check.confirmation)")
    edits = m.get("page_edits")
    if isinstance(edits, list) and all(isinstance(e, dict) for e in edits):
        listed = {p.get("sha256") for p in pages if isinstance(p, dict)}
        for i, edit in enumerate(edits):
            later = {e.get("removed_sha256") for e in edits[i + 1:]}
            if edit.get("sha256") and edit["sha256"] not in listed and edit["sha256"] not in later:
                out.append(f"page_edits[{i}] put in page {edit['sha256'][:12]}, which is neither listed nor "
                           "taken out by a later edit")
            if edit.get("action") == "remove" and not (edit.get("reason") or "").strip():
                out.append(f"page_edits[{i}] removes page {edit.get('n')} without a reason")
    return out
