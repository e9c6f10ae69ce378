"""People who use the archive: accounts, bearer tokens (hashed at rest) and 回避 relations."""

import hashlib
import hmac
import json
import re
import secrets

from quire.db import utcnow

from . import audit
from .archive import Archive
from .errors import CentralError
from .permissions import Actor, Unauthenticated, actor_from_row, check_roles

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
TOKEN_PREFIX = "qt1"


def _digest(secret: str) -> str:
    # Tokens are 256-bit random secrets, so one SHA-256 is enough to make the stored column useless to a
    # thief; slow password hashes are for human-chosen passwords.
    return hashlib.sha256(secret.encode()).hexdigest()


def add(archive: Archive, user_id: str, name: str, roles: list[str], units: list[str],
        own_archive_no: str | None = None, by: str | None = None) -> str:
    """Create a user; returns the bearer token, shown this once and never stored in clear."""
    if not _ID.fullmatch(user_id):
        raise CentralError(f"user id {user_id!r}: use 1-32 lower-case letters, digits or '-'")
    check_roles(set(roles))
    if not units:
        raise CentralError("give the units this user works for (--unit U, repeatable, or --unit '*' for all)")
    secret = secrets.token_urlsafe(32)
    with archive.catalogue.transaction() as db:
        if db.execute("SELECT 1 FROM users WHERE id = ?", [user_id]).fetchone():
            raise CentralError(f"user {user_id} already exists; use 'users token {user_id}' to issue a new token")
        db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                   [user_id, name, json.dumps(sorted(roles)), json.dumps(sorted(units)), own_archive_no,
                    _digest(secret), utcnow(), by or audit.local_user()])
        audit.record(db, archive, "user.add", f"user:{user_id}",
                     {"user": user_id, "roles": sorted(roles), "units": sorted(units),
                      "own_archive_no": own_archive_no}, by=by)
    return f"{TOKEN_PREFIX}.{user_id}.{secret}"


def reissue_token(archive: Archive, user_id: str, by: str | None = None) -> str:
    """Replace a user's token (the old one stops working at once)."""
    secret = secrets.token_urlsafe(32)
    with archive.catalogue.transaction() as db:
        if db.execute("UPDATE users SET token_sha256 = ? WHERE id = ?", [_digest(secret), user_id]).rowcount != 1:
            raise CentralError(f"no user {user_id}")
        audit.record(db, archive, "user.token", f"user:{user_id}", {"user": user_id}, by=by)
    return f"{TOKEN_PREFIX}.{user_id}.{secret}"


def relate(archive: Archive, user_id: str, archive_no: str, relation: str, by: str | None = None) -> None:
    """Record that a dossier belongs to a relative of the user: they may never consult it."""
    with archive.catalogue.transaction() as db:
        if not db.execute("SELECT 1 FROM users WHERE id = ?", [user_id]).fetchone():
            raise CentralError(f"no user {user_id}")
        db.execute("INSERT OR REPLACE INTO user_relations VALUES (?, ?, ?)", [user_id, archive_no, relation])
        audit.record(db, archive, "user.relation", f"user:{user_id}",
                     {"user": user_id, "archive_no": archive_no, "relation": relation}, by=by)


def disable(archive: Archive, user_id: str, by: str | None = None) -> None:
    with archive.catalogue.transaction() as db:
        if db.execute("UPDATE users SET disabled_at = ? WHERE id = ? AND disabled_at IS NULL",
                      [utcnow(), user_id]).rowcount != 1:
            raise CentralError(f"no enabled user {user_id}")
        audit.record(db, archive, "user.disable", f"user:{user_id}", {"user": user_id}, by=by)


def listing(archive: Archive) -> list[dict]:
    out = archive.catalogue.query("SELECT id, name, roles, units, own_archive_no, created_at, disabled_at"
                                  " FROM users ORDER BY id")
    for row in out:
        row["roles"], row["units"] = json.loads(row["roles"]), json.loads(row["units"])
    return out


def count(archive: Archive) -> int:
    return archive.catalogue.one("SELECT COUNT(*) AS n FROM users")["n"]


def authenticate(archive: Archive, token: str | None) -> Actor:
    """The user a bearer token belongs to; a wrong, disabled or malformed token is refused (and logged)."""
    parts = (token or "").strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise Unauthenticated("no valid user token: pass the token 'quire-central users add' printed "
                              "(metadata 'authorization: Bearer qt1.…', or --token-file / QUIRE_TOKEN)")
    user_id, secret = parts[1], parts[2]
    row = archive.catalogue.one("SELECT * FROM users WHERE id = ?", [user_id])
    if row is None or not hmac.compare_digest(row["token_sha256"], _digest(secret)) or row["disabled_at"]:
        with archive.catalogue.transaction() as db:
            audit.record(db, archive, "login.refused", f"user:{user_id}", {"user": user_id},
                         by=f"user:{user_id}")
        raise Unauthenticated(f"token for user {user_id!r} refused (unknown, replaced or disabled); "
                              "ask an administrator for a new one")
    relatives = [r["archive_no"] for r in
                 archive.catalogue.query("SELECT archive_no FROM user_relations WHERE user_id = ?", [user_id])]
    return actor_from_row(row, relatives)


def from_metadata(archive: Archive, metadata) -> Actor:
    """Authenticate a gRPC call by its ``authorization: Bearer`` metadata."""
    for key, value in metadata or ():
        if key == "authorization" and value.startswith("Bearer "):
            return authenticate(archive, value.removeprefix("Bearer "))
    return authenticate(archive, None)
