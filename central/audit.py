"""The tamper-evident audit log: an append-only RFC 6962 Merkle tree of canonical entries.

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
from quire.db import utcnow
from quire.errors import ContractError

from .archive import Archive
from .errors import CentralError
from .verify import Problem

FORMAT = "quire.audit/1"
KNOWN_FORMATS = (FORMAT,)


class AuditBroken(CentralError):
    """The stored log cannot be extended (a node is missing): someone edited it; nothing is appended."""


def record(db, archive: Archive, event: str, subject: str, fields: dict, by: str | None = None
           ) -> tuple[int, Checkpoint]:
    """Append one entry inside the caller's transaction and sign a checkpoint that includes it."""
    row = db.execute("SELECT MAX(idx) FROM audit_entries").fetchone()
    index = 0 if row[0] is None else row[0] + 1
    entry = canonical_bytes({"format": FORMAT, "seq": index, "at": utcnow(), "event": event,
                             "by": by or local_user(), **fields})
    db.execute("INSERT INTO audit_entries (idx, event, subject, entry) VALUES (?, ?, ?, ?)",
               [index, event, subject, entry])
    for level, idx, h in merkle.completed_nodes(_perfect(db), index, merkle.leaf_hash(entry)):
        db.execute("INSERT INTO audit_nodes VALUES (?, ?, ?)", [level, idx, h])
    size = index + 1
    cp = checkpoint_format.sign(archive.key, size, merkle.root_hash(_perfect(db), size), utcnow())
    db.execute("INSERT OR IGNORE INTO audit_checkpoints VALUES (?, ?, ?)",
               [size, canonical_bytes(cp.body), cp.signature])
    return index, cp


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
        proof = merkle.consistency_proof(_perfect(db), previous, cp.tree_size)
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
        for (entry,) in db.execute("SELECT entry FROM audit_entries WHERE event = 'station.register'"
                                   " AND subject = ?", [row["id"]]).fetchall():
            if json.loads(entry).get("key") == fingerprint:
                return
        record(db, archive, "station.register", row["id"],
               {"station_id": row["id"], "unit": row["unit"], "key": fingerprint}, by=by)


def latest_checkpoint(archive: Archive) -> Checkpoint | None:
    """The newest signed checkpoint, or None before the first entry."""
    row = archive.catalogue.one("SELECT body, signature FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
    if row is None:
        return None
    return Checkpoint(json.loads(row["body"]), bytes(row["signature"]))


def entries(archive: Archive, start: int = 0, limit: int | None = None) -> list[dict]:
    """Entries from index ``start`` on, parsed, each with its ``idx``."""
    rows = archive.catalogue.query("SELECT idx, entry FROM audit_entries WHERE idx >= ? ORDER BY idx LIMIT ?",
                                   [start, -1 if limit is None else limit])
    return [dict(json.loads(r["entry"]), idx=r["idx"]) for r in rows]


def inclusion_proof(archive: Archive, index: int, size: int) -> list[bytes]:
    """Proof that entry ``index`` is in the log of ``size`` entries (checked against a checkpoint)."""
    with archive.catalogue.transaction() as db:
        return merkle.inclusion_proof(_perfect(db), index, size)


def consistency_proof(archive: Archive, old_size: int, new_size: int) -> list[bytes]:
    """Proof that the log of ``old_size`` entries is a prefix of the log of ``new_size``."""
    with archive.catalogue.transaction() as db:
        return merkle.consistency_proof(_perfect(db), old_size, new_size)


def entry_bytes(archive: Archive, index: int) -> bytes:
    """The stored canonical bytes of entry ``index`` (its leaf is SHA-256(0x00 || these))."""
    row = archive.catalogue.one("SELECT entry FROM audit_entries WHERE idx = ?", [index])
    if row is None:
        raise CentralError(f"the audit log has no entry {index}")
    return bytes(row["entry"])


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


def NotInLog(subject, detail):
    return Problem("NotInLog", subject, detail)


def LogWithoutRecord(subject, detail):
    return Problem("LogWithoutRecord", subject, detail)


def LogMismatch(subject, detail):
    return Problem("LogMismatch", subject, detail)


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
    rows = archive.catalogue.query("SELECT idx, entry FROM audit_entries ORDER BY idx")
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
              for r in archive.catalogue.query("SELECT * FROM audit_checkpoints ORDER BY tree_size")]
    report.checkpoints = len(signed)
    for bundle in archive.catalogue.query("SELECT id, receipt FROM bundles WHERE state = 'committed'"):
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


def catalogue_problems(archive: Archive) -> list[Problem]:
    """Every committed or quarantined bundle has its log entry, every such entry its bundle, and they agree."""
    problems = []
    logged = {"ingest": {}, "quarantine": {}}
    for row in archive.catalogue.query("SELECT idx, event, entry FROM audit_entries"
                                       " WHERE event IN ('ingest', 'quarantine') ORDER BY idx"):
        try:
            body = json.loads(row["entry"])
            logged[row["event"]][body["bundle_id"]] = dict(body, idx=row["idx"])
        except (ValueError, KeyError, TypeError):
            continue  # verify_log names the damaged entry
    committed = {r["id"] for r in archive.catalogue.query("SELECT id FROM bundles WHERE state = 'committed'")}
    for bundle_id in sorted(committed - set(logged["ingest"])):
        problems.append(NotInLog(f"bundle {bundle_id[:12]}", "committed, but the audit log has no ingest entry"))
    for bundle_id in sorted(set(logged["ingest"]) - committed):
        entry = logged["ingest"][bundle_id]
        problems.append(LogWithoutRecord(
            f"material {entry.get('archive_no')} {entry.get('item')}",
            f"audit entry #{entry['idx']} records bundle {bundle_id[:12]} as ingested, "
            "but it is no longer committed in the catalogue"))
    for m in archive.catalogue.query("SELECT m.id, m.archive_no, m.item, m.bundle_id,"
                                     " (SELECT COUNT(*) FROM pages p WHERE p.material_id = m.id) AS pages"
                                     " FROM materials m ORDER BY m.id"):
        entry = logged["ingest"].get(m["bundle_id"])
        if entry is None:
            continue
        said = (entry.get("archive_no"), entry.get("item"), entry.get("pages"))
        if said != (m["archive_no"], m["item"], m["pages"]):
            problems.append(LogMismatch(
                f"material {m['archive_no']} {m['item']}",
                f"catalogued from bundle {m['bundle_id'][:12]} with {m['pages']} pages, which audit entry "
                f"#{entry['idx']} records as {said[0]} {said[1]} with {said[2]} pages"))
    held = {r["bundle_id"] for r in archive.catalogue.query("SELECT bundle_id FROM quarantine")}
    for bundle_id in sorted(held - set(logged["quarantine"])):
        problems.append(NotInLog(f"quarantined bundle {bundle_id[:12]}", "the audit log has no quarantine entry"))
    for bundle_id in sorted(set(logged["quarantine"]) - held):
        problems.append(LogWithoutRecord(f"quarantined bundle {bundle_id[:12]}",
                                         f"audit entry #{logged['quarantine'][bundle_id]['idx']} records it, "
                                         "but the quarantine no longer holds it"))
    return problems


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
    stored = {(r["level"], r["idx"]): bytes(r["hash"])
              for r in archive.catalogue.query("SELECT level, idx, hash FROM audit_nodes")}
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


def _perfect(db):
    def perfect(level: int, index: int) -> bytes:
        row = db.execute("SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?", [level, index]).fetchone()
        if row is None:
            raise AuditBroken(f"audit log node ({level}, {index}) is missing; run 'quire-central audit verify'")
        return bytes(row[0])
    return perfect


def _previous_size(db, station_id: str) -> int | None:
    row = db.execute("SELECT receipt FROM bundles WHERE station_id = ? AND state = 'committed'"
                     " ORDER BY committed_at DESC, rowid DESC LIMIT 1", [station_id]).fetchone()
    if row is None:
        return None
    audit = json.loads(row[0]).get("audit") or {}
    return (audit.get("checkpoint") or {}).get("body", {}).get("tree_size")


def _bundle_fields(bundle_id: str, station: dict, manifest: dict) -> dict:
    return {"bundle_id": bundle_id, "station_id": station["id"], "unit": station["unit"],
            "archive_no": manifest["dossier"]["archive_no"], "item": manifest["material"]["item"]}


def local_user() -> str:
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local:unknown"
