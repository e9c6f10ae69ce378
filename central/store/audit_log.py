"""The audit log's tables: an append-only RFC 6962 Merkle tree of canonical entries, every complete
subtree's hash, and the signed checkpoints. It appends, checkpoints and proves; what an entry
records is its caller's business.

Leaf i is SHA-256(0x00 || entry i); ``audit_nodes`` holds the hash of every complete subtree, so a
proof reads O(log n) rows.
"""

import json
from collections.abc import Sequence

from quire import checkpoint as checkpoint_format
from quire import merkle
from quire.canonical import canonical_bytes
from quire.checkpoint import Checkpoint
from quire.db import utcnow

from ..errors import CentralError
from .catalogue import insert_rows, rows

FORMAT = "quire.audit/1"
KNOWN_FORMATS = (FORMAT,)


class AuditBroken(CentralError):
    """The stored log cannot be extended (a node is missing): someone edited it; nothing is appended."""


def append(db, key, event: str, subject: str, fields: dict, by: str) -> tuple[int, Checkpoint]:
    """Append one entry inside the caller's transaction and sign a checkpoint that includes it."""
    row = db.execute("SELECT MAX(idx) FROM audit_entries").fetchone()
    index = 0 if row[0] is None else row[0] + 1
    entry = canonical_bytes({"format": FORMAT, "seq": index, "at": utcnow(), "event": event, "by": by, **fields})
    db.execute("INSERT INTO audit_entries (idx, event, subject, entry) VALUES (:idx, :event, :subject, :entry)",
               {"idx": index, "event": event, "subject": subject, "entry": entry})
    tree, nodes = _frontier(db, index), []
    for level, idx, h in merkle.completed_nodes(_known(tree), index, merkle.leaf_hash(entry)):
        nodes.append({"level": level, "idx": idx, "hash": h})
        tree[(level, idx)] = h
    insert_rows(db, "audit_nodes", ("level", "idx", "hash"), nodes)   # one statement, not one a node
    size = index + 1
    cp = checkpoint_format.sign(key, size, merkle.root_hash(_known(tree), size), utcnow())
    db.execute("INSERT INTO audit_checkpoints (tree_size, body, signature) VALUES (:size, :body, :signature)"
               " ON CONFLICT (tree_size) DO NOTHING",
               {"size": size, "body": canonical_bytes(cp.body), "signature": cp.signature})
    return index, cp


def size(source) -> int:
    """How many entries the log holds (the next entry's index, when none was removed)."""
    return rows(source, "SELECT COUNT(*) AS n FROM audit_entries")[0]["n"]


def latest_checkpoint(source) -> Checkpoint | None:
    """The newest signed checkpoint, or None before the first entry."""
    found = rows(source, "SELECT body, signature FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
    if not found:
        return None
    return Checkpoint(json.loads(found[0]["body"]), bytes(found[0]["signature"]))


def checkpoints(source) -> list[dict]:
    """Every stored checkpoint (tree_size, body, signature), oldest first."""
    return rows(source, "SELECT tree_size, body, signature FROM audit_checkpoints ORDER BY tree_size")


def entries(source, start: int = 0, limit: int | None = None) -> list[dict]:
    """Stored entries (idx, event, subject, entry bytes) from index ``start`` on."""
    sql = "SELECT idx, event, subject, entry FROM audit_entries WHERE idx >= :start ORDER BY idx"
    if limit is None:
        return rows(source, sql, {"start": start})
    return rows(source, sql + " LIMIT :limit", {"start": start, "limit": limit})


def of_events(source, events: Sequence[str], subject: str | None = None, newest_first: bool = False,
              limit: int | None = None) -> list[dict]:
    """Stored entries (idx, event, subject, entry bytes) of the given events, of ``subject`` when given."""
    params: dict = {f"e{i}": e for i, e in enumerate(events)}
    sql = (f"SELECT idx, event, subject, entry FROM audit_entries"
           f" WHERE event IN ({', '.join(':' + k for k in params)})")
    if subject is not None:
        sql += " AND subject = :subject"
        params["subject"] = subject
    sql += " ORDER BY idx" + (" DESC" if newest_first else "")
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return rows(source, sql, params)


def newest(source, event: str, subject: str | None = None) -> dict | None:
    """The last stored entry of ``event`` (of ``subject`` when given), or None."""
    found = of_events(source, (event,), subject, newest_first=True, limit=1)
    return found[0] if found else None


def entry_bytes(source, index: int) -> bytes:
    """The stored canonical bytes of entry ``index`` (its leaf is SHA-256(0x00 || these))."""
    found = rows(source, "SELECT entry FROM audit_entries WHERE idx = :idx", {"idx": index})
    if not found:
        raise CentralError(f"the audit log has no entry {index}")
    return bytes(found[0]["entry"])


def nodes(source) -> dict[tuple[int, int], bytes]:
    """Every stored subtree hash by (level, index)."""
    return {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows(source, "SELECT level, idx, hash FROM audit_nodes")}


def inclusion_proof(db, index: int, tree_size: int) -> list[bytes]:
    """Proof that entry ``index`` is in the log of ``tree_size`` entries, read inside the caller's transaction."""
    return _in_one_read(db, lambda perfect: merkle.inclusion_proof(perfect, index, tree_size))


def consistency_proof(db, old_size: int, new_size: int) -> list[bytes]:
    """Proof that the log of ``old_size`` entries is a prefix of the one of ``new_size``, inside a transaction."""
    return _in_one_read(db, lambda perfect: merkle.consistency_proof(perfect, old_size, new_size))


def _in_one_read(db, compute):
    """``compute(perfect)`` with every node it asks for read in one query: which nodes a proof needs
    depends on the sizes alone, so a first pass with stand-in hashes names them."""
    wanted: list[tuple[int, int]] = []

    def naming(level: int, index: int) -> bytes:
        wanted.append((level, index))
        return bytes(32)

    compute(naming)
    return compute(_known(_read(db, wanted)))


def _frontier(db, size: int) -> dict[tuple[int, int], bytes]:
    """The complete subtrees that tile the first ``size`` leaves, read in one query: all an append needs,
    both to build the nodes the new leaf completes and to hash the new tree head."""
    wanted, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            wanted.append((level, start >> level))
            start += 1 << level
    return _read(db, wanted)


def _read(db, wanted: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes of the nodes ``wanted`` (by level and index) that exist, in one query."""
    wanted = sorted(set(wanted))
    if not wanted:
        return {}
    params = {f"{name}{i}": v for i, node in enumerate(wanted) for name, v in zip(("l", "i"), node)}
    where = " OR ".join(f"(level = :l{i} AND idx = :i{i})" for i in range(len(wanted)))
    return {(r[0], r[1]): bytes(r[2]) for r in db.execute(f"SELECT level, idx, hash FROM audit_nodes WHERE {where}",
                                                          params).fetchall()}


def _known(tree: dict[tuple[int, int], bytes]):
    def perfect(level: int, index: int) -> bytes:
        if (level, index) not in tree:
            raise AuditBroken(f"audit log node ({level}, {index}) is missing; run 'quire-central audit verify'")
        return tree[(level, index)]
    return perfect
