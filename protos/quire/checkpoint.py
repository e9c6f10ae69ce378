"""Signed checkpoints of the central audit log, and the check a witness makes on a newer one.

A checkpoint is the central key's signed statement "the log had ``tree_size`` entries with this
root hash". Stations keep the checkpoints that ride on their receipts; a later checkpoint plus a
consistency proof shows the log only grew. If the history was rewritten, no proof can do that.
"""

from dataclasses import dataclass
from typing import Annotated, Literal, Sequence

from pydantic import AfterValidator, Field, StringConstraints, ValidationError

from . import keys, merkle
from .canonical import canonical_bytes
from .cas import Sha256Hex
from .errors import ContractError, Malformed, UnknownFormat
from .settings import Settings, problems

FORMAT = "quire.checkpoint/1"
KNOWN_FORMATS = (FORMAT,)


class HistoryRewritten(ContractError):
    """Two checkpoints signed by the same key that no append-only log can both satisfy."""


def _signature_hex(value: str) -> str:
    try:
        if len(bytes.fromhex(value)) == 64 and value == value.lower():
            return value
    except ValueError:
        pass
    raise ValueError(f"must be an Ed25519 signature in 128 lower-case hex digits (got {value!r})")


class Body(Settings):
    """What the central key signs: the log (the key's fingerprint), its size and root hash, and when."""

    format: Literal[FORMAT]
    log: Annotated[str, StringConstraints(min_length=1)]
    tree_size: Annotated[int, Field(ge=0)]
    root_hash: Sha256Hex
    signed_at: str


class Signed(Settings):
    """A checkpoint as JSON: its body and the Ed25519 signature in hex."""

    body: Body
    signature: Annotated[str, AfterValidator(_signature_hex)]


@dataclass(frozen=True)
class Checkpoint:
    body: dict
    signature: bytes

    @property
    def tree_size(self) -> int:
        return self.body["tree_size"]

    @property
    def root_hash(self) -> bytes:
        return bytes.fromhex(self.body["root_hash"])

    def to_json(self) -> dict:
        """The checkpoint as a JSON object, as receipts and `quire-central audit checkpoint` carry it."""
        return {"body": self.body, "signature": self.signature.hex()}


def sign(key, tree_size: int, root_hash: bytes, signed_at: str) -> Checkpoint:
    """The central key's checkpoint for a log of ``tree_size`` entries with ``root_hash``."""
    body = {
        "format": FORMAT,
        "log": keys.fingerprint(keys.signer(key).public_key),
        "tree_size": tree_size,
        "root_hash": root_hash.hex(),
        "signed_at": signed_at,
    }
    return Checkpoint(body, keys.sign(key, keys.CHECKPOINT_CONTEXT, canonical_bytes(body)))


def from_json(obj: object) -> Checkpoint:
    """Parse ``{"body": …, "signature": hex}``; raise Malformed with every problem found."""
    if not isinstance(obj, dict) or not isinstance(obj.get("body"), dict):
        raise Malformed("checkpoint", ["not an object with a 'body' object"])
    if obj["body"].get("format") not in KNOWN_FORMATS:
        raise UnknownFormat("checkpoint", obj["body"].get("format"), KNOWN_FORMATS)
    try:
        Signed.model_validate(obj)
    except ValidationError as exc:
        raise Malformed("checkpoint", problems(Signed, exc)) from None
    return Checkpoint(obj["body"], bytes.fromhex(obj["signature"]))


def verify(cp: Checkpoint, central_key: bytes) -> None:
    """Check the checkpoint's signature under the pinned central key and that it names that key."""
    keys.verify(central_key, keys.CHECKPOINT_CONTEXT, canonical_bytes(cp.body), cp.signature,
                f"audit checkpoint of size {cp.body.get('tree_size')}")
    if cp.body.get("log") != keys.fingerprint(central_key):
        raise Malformed("checkpoint", [f"names log {cp.body.get('log')}, not {keys.fingerprint(central_key)}"])


def check_consistent(held: Checkpoint, newer: Checkpoint, proof: Sequence[bytes], central_key: bytes) -> None:
    """Check that ``newer`` extends the log ``held`` describes; raise HistoryRewritten if not.

    Both must be signed by the pinned central key; ``proof`` is the RFC 6962 consistency proof
    from ``held.tree_size`` to ``newer.tree_size``.
    """
    verify(held, central_key)
    verify(newer, central_key)
    if newer.tree_size < held.tree_size:
        raise HistoryRewritten(
            f"the archive now signs an audit log of {newer.tree_size} entries, but it signed "
            f"{held.tree_size} entries at {held.body['signed_at']}: entries were removed"
        )
    if not merkle.verify_consistency(held.tree_size, newer.tree_size, held.root_hash, newer.root_hash, proof):
        raise HistoryRewritten(
            f"the audit log of {newer.tree_size} entries signed at {newer.body['signed_at']} does not extend "
            f"the log of {held.tree_size} entries signed at {held.body['signed_at']}: history was rewritten"
        )
