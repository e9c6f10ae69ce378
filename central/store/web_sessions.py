"""The ``web_sessions`` table: the web console's server-side sessions, each known by the SHA-256 of its
cookie, with its CSRF secret, the address it was opened from, when it was last seen and how it ended."""

from .catalogue import rows


def add(db, token_sha256: str, user_id: str, csrf: str, address: str, at: str) -> None:
    """A session opened (and seen) at ``at``."""
    db.execute("INSERT INTO web_sessions (token_sha256, user_id, csrf, address, created_at, seen_at)"
               " VALUES (:digest, :user, :csrf, :address, :at, :at)",
               {"digest": token_sha256, "user": user_id, "csrf": csrf, "address": address, "at": at})


def get(source, token_sha256: str) -> dict | None:
    """The session's row (ended or not), or None."""
    found = rows(source, "SELECT * FROM web_sessions WHERE token_sha256 = :digest", {"digest": token_sha256})
    return found[0] if found else None


def seen(db, token_sha256: str, at: str) -> None:
    """Restart the session's idle clock."""
    db.execute("UPDATE web_sessions SET seen_at = :at WHERE token_sha256 = :digest",
               {"at": at, "digest": token_sha256})


def end(db, token_sha256: str, how: str, at: str) -> dict | None:
    """End a live session; its user_id and address, or None when there was no live session of that digest."""
    found = rows(db, "UPDATE web_sessions SET ended_at = :at, ended_how = :how"
                     " WHERE token_sha256 = :digest AND ended_at IS NULL RETURNING user_id, address",
                 {"at": at, "how": how, "digest": token_sha256})
    return found[0] if found else None
