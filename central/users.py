"""People who use the archive: accounts, bearer tokens (hashed at rest) and 回避 relations."""

import hashlib
import hmac
import json
import re
import secrets
from functools import cache

import argon2

from quire.db import utcnow

from . import audit, refusals
from .archive import Archive
from .errors import CentralError
from .permissions import Actor, PermissionDenied, Unauthenticated, actor_from_row, check_roles
from .store import users as store_users

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
    try:
        check_roles(set(roles))
    except PermissionDenied as exc:
        raise refusals.logged(archive, exc, "access.denied", f"user:{user_id}",
                              {"action": "user.add", "user": user_id, "roles": sorted(roles)},
                              by=by or audit.local_user()) from None
    if not units:
        raise CentralError("give the units this user works for (--unit U, repeatable, or --unit '*' for all)")
    secret = secrets.token_urlsafe(32)
    with archive.catalogue.transaction() as db:
        if store_users.exists(db, user_id):
            raise CentralError(f"user {user_id} already exists; use 'users token {user_id}' to issue a new token")
        store_users.add(db, {"id": user_id, "name": name, "roles": json.dumps(sorted(roles)),
                             "units": json.dumps(sorted(units)), "own_archive_no": own_archive_no,
                             "token_sha256": _digest(secret), "created_at": utcnow(),
                             "created_by": by or audit.local_user()})
        audit.record(db, archive, "user.add", f"user:{user_id}",
                     {"user": user_id, "roles": sorted(roles), "units": sorted(units),
                      "own_archive_no": own_archive_no}, by=by)
    return f"{TOKEN_PREFIX}.{user_id}.{secret}"


def reissue_token(archive: Archive, user_id: str, by: str | None = None) -> str:
    """Replace a user's token (the old one stops working at once)."""
    secret = secrets.token_urlsafe(32)
    with archive.catalogue.transaction() as db:
        if not store_users.set_token(db, user_id, _digest(secret)):
            raise CentralError(f"no user {user_id}")
        audit.record(db, archive, "user.token", f"user:{user_id}", {"user": user_id}, by=by)
    return f"{TOKEN_PREFIX}.{user_id}.{secret}"


def relate(archive: Archive, user_id: str, archive_no: str, relation: str, by: str | None = None) -> None:
    """Record that a dossier belongs to a relative of the user: they may never consult it."""
    with archive.catalogue.transaction() as db:
        if not store_users.exists(db, user_id):
            raise CentralError(f"no user {user_id}")
        store_users.relate(db, user_id, archive_no, relation)
        audit.record(db, archive, "user.relation", f"user:{user_id}",
                     {"user": user_id, "archive_no": archive_no, "relation": relation}, by=by)


def relations(archive: Archive) -> list[dict]:
    """Every recorded 回避 relation (user_id, archive_no, relation), by user."""
    return store_users.relations(archive.catalogue)


def disable(archive: Archive, user_id: str, by: str | None = None) -> None:
    with archive.catalogue.transaction() as db:
        if not store_users.disable(db, user_id, utcnow()):
            raise CentralError(f"no enabled user {user_id}")
        audit.record(db, archive, "user.disable", f"user:{user_id}", {"user": user_id}, by=by)


def listing(archive: Archive) -> list[dict]:
    out = store_users.listed(archive.catalogue)
    for row in out:
        row["roles"], row["units"] = json.loads(row["roles"]), json.loads(row["units"])
    return out


def count(archive: Archive) -> int:
    return store_users.count(archive.catalogue)


def authenticate(archive: Archive, token: str | None, by: str | None = None) -> Actor:
    """The user a bearer token belongs to; a missing, malformed, wrong or disabled token is refused and
    logged as presented by ``by`` (a peer's address, or the local user by default)."""
    parts = (token or "").strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        what = "not a user token (those begin 'qt1.')" if token else "no user token, and this archive has users"
        raise _refused(archive, Unauthenticated(
            f"{what}: pass the token 'quire-central users add' printed (--token-file FILE or $QUIRE_TOKEN; "
            "over gRPC, metadata 'authorization: Bearer qt1.…')"), None, "malformed" if token else "missing", by)
    user_id, secret = parts[1], parts[2]
    row = store_users.get(archive.catalogue, user_id)
    if row is None or not hmac.compare_digest(row["token_sha256"], _digest(secret)) or row["disabled_at"]:
        raise _refused(archive, Unauthenticated(
            f"token for user {user_id[:refusals.CLAIM_CHARS]!r} refused (unknown, replaced or disabled); "
            "ask an administrator for a new one"), user_id[:refusals.CLAIM_CHARS], "refused", by)
    return _actor(archive, row)


def _actor(archive: Archive, row: dict) -> Actor:
    return actor_from_row(row, store_users.relatives_of(archive.catalogue, row["id"]))


def _refused(archive: Archive, exc: Unauthenticated, user: str | None, token: str, by: str | None):
    """The refused login in the audit log (never the token itself), ready to raise."""
    return refusals.logged(archive, exc, "login.refused", f"user:{user}" if user else "login",
                           {"user": user, "token": token}, by=by or audit.local_user())


def from_metadata(archive: Archive, metadata, by: str) -> Actor:
    """Authenticate a gRPC call by its ``authorization: Bearer`` metadata (``by``: the peer)."""
    for key, value in metadata or ():
        if key == "authorization":
            return authenticate(archive, value.removeprefix("Bearer "), by)
    return authenticate(archive, None, by)


# ---- passwords (the web console) ----------------------------------------------------------------

PASSWORD_MIN_CHARS = 10
# argon2id with the library's RFC 9106 low-memory profile (64 MiB, 3 passes): slow for a thief, fine on a Pi.
_hasher = argon2.PasswordHasher()


@cache
def _decoy() -> str:
    """A hash to verify against when the account has none, so an unknown account takes as long."""
    return _hasher.hash(secrets.token_urlsafe(16))


def set_password(archive: Archive, user_id: str, password: str, by: str | None = None,
                 must_change: bool = True) -> None:
    """Store an argon2id hash of ``password``; one set by someone else must be changed at first sign-in."""
    if len(password) < PASSWORD_MIN_CHARS or password.strip() != password or password == user_id:
        raise CentralError(f"a password has at least {PASSWORD_MIN_CHARS} characters, no leading or trailing "
                           "spaces, and is not the user id; choose a longer one")
    with archive.catalogue.transaction() as db:
        if not store_users.set_password(db, user_id, _hasher.hash(password), must_change, utcnow()):
            raise CentralError(f"no user {user_id}")
        audit.record(db, archive, "user.password", f"user:{user_id}",
                     {"user": user_id, "must_change": must_change}, by=by)


def check_password(archive: Archive, user_id: str, password: str) -> dict | None:
    """The enabled user's row when ``password`` is theirs, else None; always spends one hash."""
    row = store_users.get(archive.catalogue, user_id)
    stored = row["password_hash"] if row and row["password_hash"] else _decoy()
    try:
        _hasher.verify(stored, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return None
    if row is None or not row["password_hash"] or row["disabled_at"]:
        return None
    if _hasher.check_needs_rehash(stored):
        with archive.catalogue.transaction() as db:
            store_users.rehash_password(db, user_id, _hasher.hash(password))
    return row


def change_password(archive: Archive, actor: Actor, old: str, new: str) -> None:
    """A user replaces their own password, proving the old one."""
    if check_password(archive, actor.id, old) is None:
        raise CentralError("the current password is wrong; type it again")
    if new == old:
        raise CentralError("choose a new password, not the current one")
    set_password(archive, actor.id, new, by=actor.label, must_change=False)


def enabled(archive: Archive, user_id: str) -> tuple[Actor, dict] | None:
    """An enabled user as an Actor (roles, units and 回避 as they are now) with their row; None otherwise."""
    row = store_users.get(archive.catalogue, user_id)
    if row is None or row["disabled_at"]:
        return None
    return _actor(archive, row), row
