"""The ``blobs`` table: each stored blob's SHA-256, size, SM3 and when it was stored, in the order
stored (``seq``, which replication follows). The bytes themselves live in the blob store."""

from collections.abc import Sequence

from .catalogue import rows


def record(db, sha256: str, size: int, sm3: str | None, at: str) -> None:
    """Record a stored blob (once: a blob stored again keeps its first record)."""
    db.execute("INSERT INTO blobs (sha256, bytes, stored_at, sm3, seq) VALUES (:sha256, :bytes, :at, :sm3,"
               " (SELECT COALESCE(MAX(seq), 0) + 1 FROM blobs)) ON CONFLICT (sha256) DO NOTHING", {"sha256": sha256, "bytes": size, "at": at, "sm3": sm3})


def has(source, sha256: str) -> bool:
    return bool(rows(source, "SELECT 1 AS x FROM blobs WHERE sha256 = :sha256", {"sha256": sha256}))


def sm3_of(source, sha256: str) -> str | None:
    found = rows(source, "SELECT sm3 FROM blobs WHERE sha256 = :sha256", {"sha256": sha256})
    return found[0]["sm3"] if found else None


def set_sm3(db, sha256: str, sm3: str) -> None:
    """Record a blob's SM3 where none was recorded yet."""
    db.execute("UPDATE blobs SET sm3 = :sm3 WHERE sha256 = :sha256 AND sm3 IS NULL", {"sm3": sm3, "sha256": sha256})


def without_sm3(source, skip: Sequence[str], limit: int) -> list[dict]:
    """Blobs with no SM3 recorded, by digest, leaving out ``skip``."""
    params: dict = {f"s{i}": sha for i, sha in enumerate(skip)}
    sql = "SELECT sha256 FROM blobs WHERE sm3 IS NULL"
    if params:
        sql += f" AND sha256 NOT IN ({', '.join(':' + k for k in params)})"
    return rows(source, sql + " ORDER BY sha256 LIMIT :limit", {**params, "limit": limit})


def every(source) -> list[dict]:
    """Every blob's sha256, bytes and sm3, by digest."""
    return rows(source, "SELECT sha256, bytes, sm3 FROM blobs ORDER BY sha256")


def after(source, sha256: str, limit: int) -> list[dict]:
    """The next ``limit`` blobs by digest after ``sha256`` (sha256, bytes, sm3)."""
    return rows(source, "SELECT sha256, bytes, sm3 FROM blobs WHERE sha256 > :after ORDER BY sha256 LIMIT :limit",
                {"after": sha256, "limit": limit})


def count_after(source, sha256: str) -> int:
    return rows(source, "SELECT COUNT(*) AS n FROM blobs WHERE sha256 > :after", {"after": sha256})[0]["n"]


def some(source, digests: Sequence[str]) -> list[dict]:
    """The records of the given digests that exist (sha256, bytes, sm3), by digest."""
    params = {f"d{i}": sha for i, sha in enumerate(digests)}
    if not params:
        return []
    return rows(source, f"SELECT sha256, bytes, sm3 FROM blobs WHERE sha256 IN ({', '.join(':' + k for k in params)})"
                        " ORDER BY sha256", params)


def count(source) -> int:
    return rows(source, "SELECT COUNT(*) AS n FROM blobs")[0]["n"]


def total_bytes(source) -> int:
    return rows(source, "SELECT COALESCE(SUM(bytes), 0) AS n FROM blobs")[0]["n"]


def newest_seq(source) -> int:
    """The order number of the last blob recorded (0 before the first)."""
    return rows(source, "SELECT COALESCE(MAX(seq), 0) AS seq FROM blobs")[0]["seq"]


def since(source, seq: int, limit: int | None = None) -> list[dict]:
    """Blobs recorded after order number ``seq`` (seq, sha256, bytes), in the order recorded."""
    sql = "SELECT seq, sha256, bytes FROM blobs WHERE seq > :seq ORDER BY seq"
    if limit is None:
        return rows(source, sql, {"seq": seq})
    return rows(source, sql + " LIMIT :limit", {"seq": seq, "limit": limit})
