"""The one place that turns structured data into the exact bytes that get hashed and signed."""

import hashlib
import json

import rfc8785


def canonical_bytes(obj: object) -> bytes:
    """Serialise ``obj`` with the JSON Canonicalization Scheme (RFC 8785)."""
    return rfc8785.dumps(obj)


def parse_json_object(data: bytes, kind: str) -> dict:
    """Parse bytes that must be a canonical JSON object; raise Malformed otherwise."""
    from .errors import Malformed

    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Malformed(kind, [f"not UTF-8 JSON ({exc})"]) from None
    if not isinstance(obj, dict):
        raise Malformed(kind, ["top level is not a JSON object"])
    if canonical_bytes(obj) != data:
        # Signed bytes must be canonical, so two encodings can never carry one signature.
        raise Malformed(kind, ["bytes are not in canonical form (RFC 8785)"])
    return obj


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
