"""Receipts: the central service's signed statement that a bundle was verified and catalogued."""

from . import checkpoint as checkpoint_format
from . import keys
from .canonical import canonical_bytes, parse_json_object
from .cas import is_sha256_hex
from .errors import ContractError, Malformed, UnknownFormat

# /2 adds "audit" (the ingest entry's index and the signed log checkpoint, with a consistency proof
# from the station's previous receipt) and "standards" (profile and warnings); /1 is still read.
FORMAT = "quire.receipt/2"
KNOWN_FORMATS = ("quire.receipt/1", FORMAT)
_FIELDS = ("bundle_id", "station_id", "pages", "bytes", "received_at", "central_key")
_FIELDS_2 = ("audit", "standards")


def issue(fields: dict, key) -> tuple[bytes, bytes]:
    """Canonical receipt bytes and the central key's signature over them."""
    body = dict(fields, format=FORMAT)
    missing = [f for f in _FIELDS + _FIELDS_2 if f not in body]
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
    if body["format"] == FORMAT:
        problems += [f"receipt.{f} missing" for f in _FIELDS_2 if f not in body]
        problems += _audit_problems(body.get("audit"), central_key)
    if problems:
        raise Malformed("receipt", problems)
    return body


def checkpoint_of(body: dict) -> checkpoint_format.Checkpoint | None:
    """The audit checkpoint a verified receipt carries (None for a /1 receipt)."""
    audit = body.get("audit")
    return checkpoint_format.from_json(audit["checkpoint"]) if isinstance(audit, dict) else None


def check_history(held: dict, newer: dict, central_key: bytes) -> None:
    """Check, as a witness, that the log behind ``newer`` extends the one ``held`` vouched for.

    Both are verified receipt bodies, ``held`` kept from an earlier sync. Raises HistoryRewritten
    when the archive's log was rewritten, Malformed when ``newer`` carries no proof from ``held``.
    """
    old, new = checkpoint_of(held), checkpoint_of(newer)
    if old is None or new is None:
        raise Malformed("receipt", ["a quire.receipt/1 receipt carries no audit checkpoint to compare"])
    if old.tree_size == new.tree_size:
        checkpoint_format.check_consistent(old, new, [], central_key)
        return
    consistency = newer["audit"].get("consistency")
    if not isinstance(consistency, dict) or consistency.get("from_size") != old.tree_size:
        raise Malformed("receipt", [f"carries no consistency proof from the held log size {old.tree_size}"])
    proof = [bytes.fromhex(h) for h in consistency["proof"]]
    checkpoint_format.check_consistent(old, new, proof, central_key)


def _audit_problems(audit: object, central_key: bytes) -> list[str]:
    if not isinstance(audit, dict):
        return ["receipt.audit is not an object"]
    try:
        cp = checkpoint_format.from_json(audit.get("checkpoint"))
        checkpoint_format.verify(cp, central_key)
    except ContractError as exc:
        return [f"receipt.audit.checkpoint: {exc}"]
    problems = []
    entry = audit.get("entry")
    if not isinstance(entry, int) or isinstance(entry, bool) or not 0 <= entry < cp.tree_size:
        problems.append(f"receipt.audit.entry {entry!r} is not an entry of the checkpointed log")
    consistency = audit.get("consistency")
    if consistency is not None:
        ok = (isinstance(consistency, dict) and isinstance(consistency.get("from_size"), int)
              and 0 <= consistency["from_size"] <= cp.tree_size and isinstance(consistency.get("proof"), list)
              and all(isinstance(h, str) and is_sha256_hex(h) for h in consistency["proof"]))
        if not ok:
            problems.append("receipt.audit.consistency is not {from_size, proof: [hex…]}")
    return problems
