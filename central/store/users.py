"""The ``users`` and ``user_relations`` tables: the people who use the archive (roles, units, the
SHA-256 of their token, an argon2id password hash) and the dossiers of their relatives (回避)."""

from .catalogue import rows


def get(source, user_id: str) -> dict | None:
    found = rows(source, "SELECT * FROM users WHERE id = :id", {"id": user_id})
    return found[0] if found else None


def exists(source, user_id: str) -> bool:
    return bool(rows(source, "SELECT 1 AS x FROM users WHERE id = :id", {"id": user_id}))


def add(db, row: dict) -> None:
    """``row``: id, name, roles (JSON), units (JSON), own_archive_no, token_sha256, created_at, created_by."""
    db.execute("INSERT INTO users (id, name, roles, units, own_archive_no, token_sha256, created_at, created_by)"
               " VALUES (:id, :name, :roles, :units, :own_archive_no, :token_sha256, :created_at, :created_by)", row)


def set_token(db, user_id: str, token_sha256: str) -> bool:
    """Replace the user's token digest; False when there is no such user."""
    return db.execute("UPDATE users SET token_sha256 = :digest WHERE id = :id",
                      {"digest": token_sha256, "id": user_id}).rowcount == 1


def disable(db, user_id: str, at: str) -> bool:
    """Disable an enabled user; False when there is no enabled user of that id."""
    return db.execute("UPDATE users SET disabled_at = :at WHERE id = :id AND disabled_at IS NULL",
                      {"at": at, "id": user_id}).rowcount == 1


def set_password(db, user_id: str, password_hash: str, must_change: bool, at: str) -> bool:
    """Store a new password hash; False when there is no such user."""
    return db.execute("UPDATE users SET password_hash = :hash, password_must_change = :must, password_set_at = :at"
                      " WHERE id = :id", {"hash": password_hash, "must": int(must_change), "at": at,
                                          "id": user_id}).rowcount == 1


def rehash_password(db, user_id: str, password_hash: str) -> None:
    """The same password hashed again with today's parameters."""
    db.execute("UPDATE users SET password_hash = :hash WHERE id = :id", {"hash": password_hash, "id": user_id})


def listed(source) -> list[dict]:
    """Every user without secrets (id, name, roles, units, own_archive_no, created_at, disabled_at), by id."""
    return rows(source, "SELECT id, name, roles, units, own_archive_no, created_at, disabled_at FROM users ORDER BY id")


def count(source) -> int:
    return rows(source, "SELECT COUNT(*) AS n FROM users")[0]["n"]


def relate(db, user_id: str, archive_no: str, relation: str) -> None:
    """Record (or record again) that ``archive_no`` is a relative's dossier of the user."""
    db.execute("INSERT INTO user_relations (user_id, archive_no, relation) VALUES (:user, :archive_no, :relation)"
               " ON CONFLICT (user_id, archive_no) DO UPDATE SET relation = excluded.relation",
               {"user": user_id, "archive_no": archive_no, "relation": relation})


def relations(source) -> list[dict]:
    """Every recorded relation (user_id, archive_no, relation), by user."""
    return rows(source, "SELECT * FROM user_relations ORDER BY user_id, archive_no")


def relatives_of(source, user_id: str) -> list[str]:
    """The archive numbers of the user's relatives' dossiers."""
    return [r["archive_no"] for r in rows(source, "SELECT archive_no FROM user_relations WHERE user_id = :id",
                                          {"id": user_id})]
