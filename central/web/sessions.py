"""Server-side sessions in the catalogue: idle and absolute expiry, a CSRF secret each, every end audited."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from quire.db import utcnow

from .. import audit, users
from ..archive import Archive
from ..permissions import Actor
from ..store import web_sessions

IDLE_S = 30 * 60            # signed out after half an hour without a request
SEEN_STEP_S = 30            # the idle clock restarts at most this often: no write on every request
ABSOLUTE_S = 12 * 60 * 60   # and after a working day whatever happens
COOKIE = "quire_session"


@dataclass(frozen=True)
class Visit:
    """A request by a signed-in person: who they are now, and their session."""

    actor: Actor
    token_sha256: str
    csrf: str
    must_change_password: bool


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _age_s(stamp: str, now: datetime) -> float:
    return (now - datetime.fromisoformat(stamp)).total_seconds()


def begin(archive: Archive, user_id: str, address: str) -> str:
    """Open a session for a signed-in user (the sign-in is audited by the caller); returns the cookie value."""
    token, now = secrets.token_urlsafe(32), utcnow()
    with archive.catalogue.transaction() as db:
        web_sessions.add(db, _digest(token), user_id, secrets.token_urlsafe(32), address, now)
    return token


def resume(archive: Archive, token: str | None) -> Visit | None:
    """The visit a session cookie belongs to, or None: unknown, ended, expired, its user disabled or their
    password reset since (then ended and audited). A live session's idle clock restarts."""
    if not token:
        return None
    row = web_sessions.get(archive.catalogue, _digest(token))
    if row is None or row["ended_at"]:
        return None
    now = datetime.now(timezone.utc)
    how = ("absolute" if _age_s(row["created_at"], now) > ABSOLUTE_S
           else "idle" if _age_s(row["seen_at"], now) > IDLE_S else None)
    person = users.enabled(archive, row["user_id"])
    if person is None:
        how = "disabled"
    elif person[1]["password_must_change"] and (person[1]["password_set_at"] or "") > row["created_at"]:
        how = "password-reset"   # an administrator set a new password: sessions opened before it end
    if how:
        end(archive, row["token_sha256"], how, f"user:{row['user_id']}")
        return None
    if _age_s(row["seen_at"], now) > SEEN_STEP_S:
        with archive.catalogue.transaction() as db:
            web_sessions.seen(db, row["token_sha256"], utcnow())
    actor, user = person
    return Visit(actor, row["token_sha256"], row["csrf"], bool(user["password_must_change"]))


def end(archive: Archive, token_sha256: str, how: str, by: str) -> None:
    """Close a session ('signed-out', 'idle', 'absolute', 'disabled', 'password-reset'); log the sign-out."""
    with archive.catalogue.transaction() as db:
        ended = web_sessions.end(db, token_sha256, how, utcnow())
        if ended is None:
            return
        audit.record(db, archive, "logout", f"user:{ended['user_id']}",
                     {"user": ended["user_id"], "via": "web", "how": how, "address": ended["address"]}, by=by)

