"""Signing in with a password: lockout with back-off per account and per address, every outcome audited."""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from quire.db import utcnow

from .. import audit, refusals, users
from ..archive import Archive
from ..store import signin_failures
from . import sessions
from .fmt import when

ACCOUNT_FREE_FAILURES = 5     # failures an account may have before it is locked
ADDRESS_FREE_FAILURES = 20    # failures one address may have, over any accounts
FIRST_LOCK_S = 60             # each further failure doubles the lock, up to an hour
MAX_LOCK_S = 60 * 60


@dataclass(frozen=True)
class Outcome:
    """A session cookie, or why not (a message for the person at the keyboard) and the HTTP status."""

    token: str | None = None
    message: str = ""
    status: int = 200


def sign_in(archive: Archive, user_id: str, password: str, address: str) -> Outcome:
    """Check the password unless the account or the address is locked; lock after repeated failures."""
    user_id = user_id.strip().lower()[:refusals.CLAIM_CHARS]
    keys = {"user": f"user:{user_id}", "addr": f"addr:{address}"}
    locked = _locked_until(archive, keys.values())
    if locked:
        refusals.record(archive, "login.refused", f"user:{user_id}",
                        {"user": user_id, "via": "web", "address": address, "reason": f"locked until {locked}"},
                        by=f"peer:{address}")
        return Outcome(message=f"登录已暂时锁定（多次密码错误），请于 {when(locked, seconds=True)} 之后再试；"
                               "如需立即解锁，请联系系统管理员。", status=429)
    if users.check_password(archive, user_id, password) is None:
        _failed(archive, user_id, address, keys)
        return Outcome(message="账号或密码不正确。", status=401)
    with archive.catalogue.transaction() as db:
        signin_failures.clear(db, keys["user"])
        audit.record(db, archive, "login", f"user:{user_id}", {"user": user_id, "via": "web", "address": address},
                     by=f"user:{user_id}")
    return Outcome(token=sessions.begin(archive, user_id, address))


def _failed(archive: Archive, user_id: str, address: str, keys: dict) -> None:
    """Count the failure against the account and the address, lock either past its allowance; audit both."""
    now = datetime.now(timezone.utc)
    with archive.catalogue.transaction() as db:
        counts = {}
        for kind, key in keys.items():
            failures = signin_failures.count(db, key) + 1
            allowed = ACCOUNT_FREE_FAILURES if kind == "user" else ADDRESS_FREE_FAILURES
            until = None
            if failures >= allowed:
                lock_s = min(MAX_LOCK_S, FIRST_LOCK_S * 2 ** (failures - allowed))
                until = (now + timedelta(seconds=lock_s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            signin_failures.put(db, key, failures, utcnow(), until)
            counts[kind] = failures
            if until:
                audit.record(db, archive, "login.lockout", key,
                             {"user": user_id, "via": "web", "address": address, "locked": key,
                              "failures": failures, "until": until}, by=f"peer:{address}")
        audit.record(db, archive, "login.refused", f"user:{user_id}",
                     {"user": user_id, "via": "web", "address": address, "reason": "wrong password or unknown account",
                      "account_failures": counts["user"], "address_failures": counts["addr"]}, by=f"peer:{address}")


def _locked_until(archive: Archive, keys) -> str | None:
    return signin_failures.locked_until(archive.catalogue, keys, utcnow())


def unlock(archive: Archive, user_id: str) -> None:
    """Clear an account's failures (an administrator has just reset its password, which is audited)."""
    with archive.catalogue.transaction() as db:
        signin_failures.clear(db, f"user:{user_id}")
