"""Kiosk sessions, in the service's memory: a CSRF secret each, idle and absolute expiry; a disabled
operator's session ends at its next request. A restart of the service signs everyone out."""

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

IDLE_S = 30 * 60            # signed out after half an hour without a request
ABSOLUTE_S = 12 * 60 * 60   # and after a working day whatever happens
COOKIE = "quire_kiosk"
LOGIN_COOKIE = "quire_kiosk_login"   # the sign-in form's own CSRF secret (double submit)


@dataclass
class Session:
    operator: str
    csrf: str
    created: float
    seen: float


class Sessions:
    """Open sessions by the SHA-256 of their cookie (the cookie itself is kept nowhere)."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, Session] = {}

    def begin(self, operator: str) -> str:
        token, now = secrets.token_urlsafe(32), self._clock()
        with self._lock:
            self._open[_digest(token)] = Session(operator, secrets.token_urlsafe(32), now, now)
        return token

    def resume(self, token: str | None, enabled, touch: bool = True) -> Session | None:
        """The session of a cookie, or None (unknown, expired, its operator disabled since)."""
        if not token:
            return None
        key, now = _digest(token), self._clock()
        with self._lock:
            session = self._open.get(key)
            if session is None:
                return None
            if now - session.created > ABSOLUTE_S or now - session.seen > IDLE_S:
                del self._open[key]
                return None
        if not enabled(session.operator):
            self.end(token)
            return None
        if touch:
            session.seen = now
        return session

    def end(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._open.pop(_digest(token), None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
