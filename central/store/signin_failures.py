"""The ``signin_failures`` table: failed web sign-ins counted per account (``user:ID``) and per address
(``addr:IP``), and until when each is locked."""

from .catalogue import rows, within


def count(db, key: str) -> int:
    """Failures recorded against ``key`` (0 when none)."""
    found = rows(db, "SELECT failures FROM signin_failures WHERE key = :key", {"key": key})
    return found[0]["failures"] if found else 0


def put(db, key: str, failures: int, at: str, locked_until: str | None) -> None:
    """Record ``key``'s failures as of ``at``, locked until ``locked_until`` (None: not locked)."""
    db.execute("INSERT INTO signin_failures (key, failures, last_at, locked_until)"
               " VALUES (:key, :failures, :at, :until) ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,"
               " last_at = excluded.last_at, locked_until = excluded.locked_until",
               {"key": key, "failures": failures, "at": at, "until": locked_until})


def clear(db, key: str) -> None:
    """Forget ``key``'s failures."""
    db.execute("DELETE FROM signin_failures WHERE key = :key", {"key": key})


def locked_until(source, keys, now: str) -> str | None:
    """The latest lock of any of ``keys`` that still holds at ``now``, or None."""
    where, params = within("key", list(keys), "key")
    found = rows(source, f"SELECT MAX(locked_until) AS until FROM signin_failures WHERE {where}"
                         " AND locked_until > :now", params | {"now": now})
    return found[0]["until"]
