"""Receipts: the central service's signed statement that a bundle was verified and catalogued."""

from . import keys
from .canonical import canonical_bytes, parse_json_object
from .errors import Malformed, UnknownFormat

FORMAT = "quire.receipt/1"
KNOWN_FORMATS = (FORMAT,)
_FIELDS = ("bundle_id", "station_id", "pages", "bytes", "received_at", "central_key")


def issue(fields: dict, key) -> tuple[bytes, bytes]:
    """Canonical receipt bytes and the central key's signature over them."""
    body = dict(fields, format=FORMAT)
    missing = [f for f in _FIELDS if f not in body]
    if missing:
        raise Malformed("receipt", [f"receipt.{f} missing" for f in missing])
    data = canonical_bytes(body)
    return data, keys.sign(key, keys.RECEIPT_CONTEXT, data)


def verify(data: bytes, signature: bytes, central_key: bytes, bundle_id: str) -> dict:
    """Check a receipt's signature under the pinned central key and that it is for ``bundle_id``."""
    keys.verify(central_key, keys.RECEIPT_CONTEXT, data, signature, "receipt")
    body = parse_json_object(data, "receipt")
    if body.get("format") not in KNOWN_FORMATS:
        raise UnknownFormat("receipt", body.get("format"), KNOWN_FORMATS)
    problems = [f"receipt.{f} missing" for f in _FIELDS if f not in body]
    if body.get("bundle_id") != bundle_id:
        problems.append(f"receipt is for bundle {body.get('bundle_id')}, not {bundle_id}")
    if problems:
        raise Malformed("receipt", problems)
    return body
