"""Receipts: the central service's signed statement that a bundle was verified and catalogued."""

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError

from . import checkpoint as checkpoint_format
from . import keys
from .canonical import canonical_bytes, parse_json_object
from .cas import Sha256Hex
from .errors import ContractError, Malformed, UnknownFormat
from .settings import Settings, problems

# /2 adds "audit" (the ingest entry's index and the signed log checkpoint, with a consistency proof
# from the station's previous receipt) and "standards" (profile and warnings); /1 is still read.
FORMAT_1 = "quire.receipt/1"
FORMAT = "quire.receipt/2"
KNOWN_FORMATS = (FORMAT_1, FORMAT)
Count = Annotated[int, Field(ge=0)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class Consistency(Settings):
    """The RFC 6962 proof that the log the station last held (``from_size`` entries) only grew."""

    from_size: Count
    proof: list[Sha256Hex]


class Audit(Settings):
    entry: Count                    # the ingest entry's index in the log
    checkpoint: dict[str, Any]      # checked by checkpoint.from_json, which knows its versions
    consistency: Consistency | None = None


class Standards(Settings):
    profile: NonEmpty
    version: Annotated[int, Field(ge=1)]
    # The profile's content hash; absent from receipts issued before archives recorded it.
    sha256: Sha256Hex | None = None
    warnings: list[str]


class ReceiptV1(Settings):
    format: Literal[FORMAT_1]
    bundle_id: Sha256Hex
    station_id: NonEmpty
    archive_no: str | None = None
    item: str | None = None
    pages: Annotated[int, Field(ge=1)]
    bytes: Count
    received_at: str
    central_key: NonEmpty           # the central key's fingerprint


class Receipt(ReceiptV1):
    format: Literal[FORMAT]
    audit: Audit
    standards: Standards


MODELS = {FORMAT_1: ReceiptV1, FORMAT: Receipt}


def issue(fields: dict, key) -> tuple[bytes, bytes]:
    """Canonical receipt bytes and the central key's signature over them."""
    body = dict(fields, format=FORMAT)
    found = _problems(body)
    if found:
        raise Malformed("receipt", found)
    data = canonical_bytes(body)
    return data, keys.sign(key, keys.RECEIPT_CONTEXT, data)


def verify(data: bytes, signature: bytes, central_key: bytes, bundle_id: str) -> dict:
    """Check a receipt's signature under the pinned central key and that it is for ``bundle_id``."""
    keys.verify(central_key, keys.RECEIPT_CONTEXT, data, signature, "receipt")
    body = parse_json_object(data, "receipt")
    if body.get("format") not in KNOWN_FORMATS:
        raise UnknownFormat("receipt", body.get("format"), KNOWN_FORMATS)
    found = _problems(body)
    if body.get("bundle_id") != bundle_id:
        found.append(f"receipt is for bundle {body.get('bundle_id')}, not {bundle_id}")
    if body["format"] == FORMAT and isinstance(body.get("audit"), dict):
        found += _audit_problems(body["audit"], central_key)
    if found:
        raise Malformed("receipt", found)
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


def _problems(body: dict) -> list[str]:
    model = MODELS[body["format"]]
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return [f"receipt.{line}" for line in problems(model, exc)]
    return []


def _audit_problems(audit: dict, central_key: bytes) -> list[str]:
    """What the audit field's parts say together: a checkpoint signed by the pinned key that holds the entry."""
    try:
        cp = checkpoint_format.from_json(audit.get("checkpoint"))
        checkpoint_format.verify(cp, central_key)
    except ContractError as exc:
        return [f"receipt.audit.checkpoint: {exc}"]
    out = []
    entry = audit.get("entry")
    if isinstance(entry, int) and entry >= cp.tree_size:
        out.append(f"receipt.audit.entry {entry} is not an entry of the checkpointed log of {cp.tree_size}")
    consistency = audit.get("consistency")
    from_size = consistency.get("from_size") if isinstance(consistency, dict) else None
    if isinstance(from_size, int) and from_size > cp.tree_size:
        out.append(f"receipt.audit.consistency.from_size {from_size} is beyond the checkpointed log of {cp.tree_size}")
    return out
