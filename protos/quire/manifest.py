"""Bundle manifests: the signed, canonical description of one material's pages.

A bundle is one material (材料) of one dossier: a payload of page files and one manifest listing
each page's SHA-256, size and metadata. The manifest's canonical bytes are what the station signs
and what the central service verifies; the bundle id is the SHA-256 of those bytes.
"""

from dataclasses import dataclass

from . import keys
from .canonical import canonical_bytes, parse_json_object, sha256_hex
from .cas import is_sha256_hex
from .catalogue import parse_item
from .errors import Malformed, UnknownFormat

FORMAT = "quire.bundle/1"
KNOWN_FORMATS = (FORMAT,)
MEDIA_TYPES = {"image/jpeg": ".jpg", "image/tiff": ".tif"}
COLOUR_MODES = {"colour", "grey", "bilevel"}


@dataclass(frozen=True)
class SignedManifest:
    manifest: dict
    data: bytes        # canonical bytes, exactly as signed
    signature: bytes

    @property
    def bundle_id(self) -> str:
        return sha256_hex(self.data)


def seal(manifest: dict, key) -> SignedManifest:
    """Canonicalise ``manifest`` (after checking it) and sign it with the station key."""
    manifest = dict(manifest, format=FORMAT)
    problems = _problems(manifest)
    if problems:
        raise Malformed("manifest", problems)
    data = canonical_bytes(manifest)
    return SignedManifest(manifest, data, keys.sign(key, keys.BUNDLE_CONTEXT, data))


def read(data: bytes) -> dict:
    """Parse manifest bytes: known format, canonical, complete; raise with every problem found.

    This does not check the signature; call ``verify`` with the station's enrolled key first.
    """
    obj = parse_json_object(data, "manifest")
    if obj.get("format") not in KNOWN_FORMATS:
        raise UnknownFormat("manifest", obj.get("format"), KNOWN_FORMATS)
    problems = _problems(obj)
    if problems:
        raise Malformed("manifest", problems)
    return obj


def verify(data: bytes, signature: bytes, public_key: bytes) -> None:
    """Check the station's signature over the manifest bytes."""
    keys.verify(public_key, keys.BUNDLE_CONTEXT, data, signature, "bundle manifest")


def _problems(m: dict) -> list[str]:
    problems: list[str] = []

    def need(obj, field, typ, where):
        value = obj.get(field) if isinstance(obj, dict) else None
        if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
            problems.append(f"{where}.{field} missing or not {typ.__name__}")
            return None
        return value

    station = need(m, "station_id", str, "manifest")
    need(m, "created_at", str, "manifest")
    batch = need(m, "batch", dict, "manifest")
    if batch is not None:
        for f in ("id", "operator", "source", "started_at", "ended_at"):
            need(batch, f, str, "batch")
    dossier = need(m, "dossier", dict, "manifest")
    if dossier is not None and need(dossier, "archive_no", str, "dossier") == "":
        problems.append("dossier.archive_no is empty")
    material = need(m, "material", dict, "manifest")
    if material is not None:
        item = need(material, "item", str, "material")
        if item is not None:
            try:
                parse_item(item)
            except ValueError as exc:
                problems.append(str(exc))
        need(material, "title", str, "material")
        need(material, "page_count", int, "material")
    pages = need(m, "pages", list, "manifest")
    if pages is not None:
        if not pages:
            problems.append("manifest lists no pages")
        for i, page in enumerate(pages, 1):
            where = f"page[{i}]"
            if not isinstance(page, dict):
                problems.append(f"{where} is not an object")
                continue
            if page.get("n") != i:
                problems.append(f"{where}.n is {page.get('n')!r}, expected {i} (pages in order)")
            sha = need(page, "sha256", str, where)
            if sha is not None and not is_sha256_hex(sha):
                problems.append(f"{where}.sha256 is not a hex SHA-256")
            size = need(page, "bytes", int, where)
            if size is not None and size <= 0:
                problems.append(f"{where}.bytes must be positive")
            if page.get("media_type") not in MEDIA_TYPES:
                problems.append(f"{where}.media_type {page.get('media_type')!r} not one of {sorted(MEDIA_TYPES)}")
            if page.get("colour") not in COLOUR_MODES:
                problems.append(f"{where}.colour {page.get('colour')!r} not one of {sorted(COLOUR_MODES)}")
            for f in ("dpi", "width_px", "height_px"):
                need(page, f, int, where)
            need(page, "record", dict, where)
        if material is not None and isinstance(material.get("page_count"), int):
            if material["page_count"] != len(pages):
                problems.append(
                    f"material.page_count is {material['page_count']} but {len(pages)} pages are listed"
                )
    if station == "":
        problems.append("manifest.station_id is empty")
    return problems
