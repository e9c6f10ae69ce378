"""The tamper-evident audit log as the archive writes and checks it; the append-only RFC 6962 Merkle
tree of canonical entries itself is ``store.audit_log``, which knows no bundles.

Every entry is appended inside the transaction of the change it records, and a checkpoint (tree
size and root, signed by the central key) is signed with it. Receipts carry the checkpoint, so
the stations hold signed heads of the log and can tell when history was rewritten.
"""

import getpass
import json
from dataclasses import dataclass, field

from quire import checkpoint as checkpoint_format
from quire import keys, merkle
from quire.canonical import canonical_bytes, parse_json_object
from quire.checkpoint import Checkpoint
from quire.errors import ContractError

from .archive import Archive
from .problems import Problem
from .store import audit_log, bundles
from .store.audit_log import FORMAT, KNOWN_FORMATS, AuditBroken  # noqa: F401 - the log's format and failure

__all__ = ["FORMAT", "KNOWN_FORMATS", "AuditBroken", "record", "ingested", "quarantined", "station_registered",
           "latest_checkpoint", "entries", "inclusion_proof", "consistency_proof", "entry_bytes", "verify_log",
           "LogReport", "local_user"]


def record(db, archive: Archive, event: str, subject: str, fields: dict, by: str | None = None
           ) -> tuple[int, Checkpoint]:
    """Append one entry inside the caller's transaction and sign a checkpoint that includes it."""
    return audit_log.append(db, archive.key, event, subject, fields, by or local_user())


def ingested(db, archive: Archive, bundle_id: str, station: dict, manifest: dict, profile_label: str,
             by: str | None = None) -> dict:
    """Log a catalogued bundle; return the receipt's ``audit`` field (entry, checkpoint, consistency)."""
    previous = _previous_size(db, station["id"])
    index, cp = record(db, archive, "ingest", bundle_id, {
        **_bundle_fields(bundle_id, station, manifest),
        "pages": len(manifest["pages"]),
        "bytes": sum(p["bytes"] for p in manifest["pages"]),
        "profile": profile_label,
    }, by=by or f"station:{station['id']}")
    out = {"entry": index, "checkpoint": cp.to_json()}
    if previous is not None and 0 < previous < cp.tree_size:
        proof = audit_log.consistency_proof(db, previous, cp.tree_size)
        out["consistency"] = {"from_size": previous, "proof": [h.hex() for h in proof]}
    return out


def quarantined(db, archive: Archive, bundle_id: str, station: dict, manifest: dict,
                profile_label: str, rules: list[str]) -> int:
    """Log a bundle held in quarantine with the rules it broke; return the entry's index."""
    index, _ = record(db, archive, "quarantine", bundle_id, {
        **_bundle_fields(bundle_id, station, manifest), "profile": profile_label, "rules": rules,
    }, by=f"station:{station['id']}")
    return index


def station_registered(archive: Archive, row: dict, by: str | None = None) -> None:
    """Log that a station's key may upload into its unit (once per station and key)."""
    fingerprint = keys.fingerprint(bytes(row["public_key"]))
    with archive.catalogue.transaction() as db:
        for logged in audit_log.of_events(db, ("station.register",), row["id"]):
            if json.loads(logged["entry"]).get("key") == fingerprint:
                return
        record(db, archive, "station.register", row["id"],
               {"station_id": row["id"], "unit": row["unit"], "key": fingerprint}, by=by)


def latest_checkpoint(archive: Archive) -> Checkpoint | None:
    """The newest signed checkpoint, or None before the first entry."""
    return audit_log.latest_checkpoint(archive.catalogue)


def entries(archive: Archive, start: int = 0, limit: int | None = None) -> list[dict]:
    """Entries from index ``start`` on, parsed, each with its ``idx``."""
    return [dict(json.loads(r["entry"]), idx=r["idx"]) for r in audit_log.entries(archive.catalogue, start, limit)]


def inclusion_proof(archive: Archive, index: int, size: int) -> list[bytes]:
    """Proof that entry ``index`` is in the log of ``size`` entries (checked against a checkpoint)."""
    with archive.catalogue.transaction() as db:
        return audit_log.inclusion_proof(db, index, size)


def consistency_proof(archive: Archive, old_size: int, new_size: int) -> list[bytes]:
    """Proof that the log of ``old_size`` entries is a prefix of the log of ``new_size``."""
    with archive.catalogue.transaction() as db:
        return audit_log.consistency_proof(db, old_size, new_size)


def entry_bytes(archive: Archive, index: int) -> bytes:
    """The stored canonical bytes of entry ``index`` (its leaf is SHA-256(0x00 || these))."""
    return audit_log.entry_bytes(archive.catalogue, index)


# ---- verification -----------------------------------------------------------------------------

def LogEntryMissing(first, last):
    which = f"#{first}" if first == last else f"#{first}…#{last}"
    return Problem("LogEntryMissing", f"audit entry {which}", "deleted from the log")


def LogEntryAltered(index, detail):
    return Problem("LogEntryAltered", f"audit entry #{index}", detail)


def CheckpointInvalid(source, detail):
    return Problem("CheckpointInvalid", source, detail)


def CheckpointMismatch(source, detail):
    return Problem("CheckpointMismatch", source, detail)


def NodesMismatch(count):
    return Problem("NodesMismatch", "audit tree", f"{count} stored tree node(s) do not follow from the entries")


@dataclass
class LogReport:
    entries: int = 0
    checkpoints: int = 0
    root: bytes = merkle.EMPTY_ROOT
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_log(archive: Archive, witnesses: list[tuple[str, Checkpoint]] = ()) -> LogReport:
    """Recompute the tree from the stored entries and check every signed checkpoint against it.

    Checkpoints come from the log's own table, from every stored receipt, and from ``witnesses``
    (name, checkpoint) that stations or auditors kept.
    """
    report = LogReport()
    rows = audit_log.entries(archive.catalogue)
    tree = merkle.MemoryTree()
    expected = 0
    for row in rows:
        if row["idx"] != expected:
            report.problems.append(LogEntryMissing(expected, row["idx"] - 1))
        expected = row["idx"] + 1
        data = bytes(row["entry"])
        report.problems += _entry_problems(row["idx"], data)
        tree.append(merkle.leaf_hash(data))
    report.entries, report.root = tree.size, tree.root()
    report.problems += _node_problems(archive, tree)
    signed = [(f"checkpoint {r['tree_size']}", r["body"], bytes(r["signature"]).hex())
              for r in audit_log.checkpoints(archive.catalogue)]
    report.checkpoints = len(signed)
    for bundle in bundles.committed_receipts(archive.catalogue):
        try:
            audit = json.loads(bundle["receipt"]).get("audit")
        except (TypeError, ValueError, AttributeError):
            continue  # a damaged receipt is named by verify's signature check
        if isinstance(audit, dict):
            cp = audit["checkpoint"] if isinstance(audit.get("checkpoint"), dict) else {}
            signed.append((f"receipt of bundle {bundle['id'][:12]}", canonical_bytes(cp.get("body")),
                           cp.get("signature")))
    checked = []
    for source, body, signature in signed:
        cp = _checked(archive, source, bytes(body), signature, report)
        if cp is not None:
            checked.append((source, cp))
    report.problems += _head_problems(tree, checked)
    for source, cp in witnesses:
        try:
            checkpoint_format.verify(cp, archive.public_key)
        except ContractError as exc:
            report.problems.append(CheckpointInvalid(source, str(exc)))
            continue
        report.problems += _head_problems(tree, [(source, cp)])
    last = max((cp.tree_size for _, cp in checked), default=0)
    if tree.size > last:
        report.problems.append(Problem(
            "UnsignedEntries", f"audit entries #{last}…#{tree.size - 1}",
            "no signed checkpoint covers them: the archive never wrote them"))
    return report


def _entry_problems(index: int, data: bytes) -> list[Problem]:
    try:
        body = parse_json_object(data, "audit entry")
    except ContractError as exc:
        return [LogEntryAltered(index, str(exc))]
    if body.get("format") not in KNOWN_FORMATS:
        return [LogEntryAltered(index, f"unknown format {body.get('format')!r}")]
    if body.get("seq") != index:
        return [LogEntryAltered(index, f"says it is entry #{body.get('seq')}")]
    return []


def _node_problems(archive: Archive, tree: merkle.MemoryTree) -> list[Problem]:
    stored = audit_log.nodes(archive.catalogue)
    wrong = 0
    level, width = 0, tree.size
    while width:
        for i in range(width):
            if stored.pop((level, i), None) != tree.perfect(level, i):
                wrong += 1
        level, width = level + 1, width // 2
    wrong += len(stored)  # nodes for entries that are not there
    return [NodesMismatch(wrong)] if wrong else []


def _checked(archive: Archive, source: str, body: bytes, signature, report: LogReport) -> Checkpoint | None:
    try:
        cp = checkpoint_format.from_json({"body": json.loads(body), "signature": signature})
        checkpoint_format.verify(cp, archive.public_key)
    except (ContractError, ValueError) as exc:
        report.problems.append(CheckpointInvalid(source, str(exc)))
        return None
    return cp


def _head_problems(tree: merkle.MemoryTree, checkpoints: list[tuple[str, Checkpoint]]) -> list[Problem]:
    """Checkpoints the stored entries do not reproduce; a run of them is one problem, not hundreds."""
    bad = []
    for source, cp in sorted(checkpoints, key=lambda sc: sc[1].tree_size):
        if cp.tree_size > tree.size:
            bad.append((source, cp, f"signed for {cp.tree_size} entries, but the log holds {tree.size}"))
        elif tree.root(cp.tree_size) != cp.root_hash:
            bad.append((source, cp, f"the first {cp.tree_size} stored entries no longer hash to its root"))
    if not bad:
        return []
    good = max((cp.tree_size for _, cp in checkpoints if cp.tree_size <= tree.size
                and tree.root(cp.tree_size) == cp.root_hash and cp.tree_size < bad[0][1].tree_size), default=0)
    source, cp, detail = bad[0]
    where = (f"an entry in #{good}…#{cp.tree_size - 1} was altered, removed or inserted"
             if cp.tree_size <= tree.size else "entries were removed from the end of the log")
    more = f"; {len(bad) - 1} later checkpoint(s) disagree too" if len(bad) > 1 else ""
    return [CheckpointMismatch(source, f"{detail} (signed {cp.body['signed_at']}): {where}{more}")]


def _previous_size(db, station_id: str) -> int | None:
    receipt = bundles.last_receipt(db, station_id)
    if receipt is None:
        return None
    audit = json.loads(receipt).get("audit") or {}
    return (audit.get("checkpoint") or {}).get("body", {}).get("tree_size")


def _bundle_fields(bundle_id: str, station: dict, manifest: dict) -> dict:
    return {"bundle_id": bundle_id, "station_id": station["id"], "unit": station["unit"],
            "archive_no": manifest["dossier"]["archive_no"], "item": manifest["material"]["item"]}


def local_user() -> str:
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local:unknown"
