"""Station call authentication — the one place a station's identity is established.

Every StationSync call but GetInfo and Enroll carries the station id, a time, a nonce and an
Ed25519 signature over them and the request's digest. A forged call fails the signature, a
replayed one its nonce, a stale one its time, a revoked station its registration.
"""

import contextvars
import time
from datetime import datetime, timezone

import grpc

from quire import callauth, keys
from quire.errors import BadSignature

from . import refusals, stations
from .archive import Archive
from .errors import CentralError, NotEnrolled
from .store.nonces import open_nonces

NONCES_FILE = "nonces.db"   # under the archive home, beside an SQLite catalogue but not in it

OPEN_METHODS = {"/quire.v1.StationSync/GetInfo", "/quire.v1.StationSync/Enroll"}
SERVICE_PREFIX = "/quire.v1.StationSync/"

current_station: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_station", default=None)


class CallRefused(CentralError):
    code = grpc.StatusCode.UNAUTHENTICATED
    scope = "caller"


class StationUnproven(CallRefused):
    """An unknown station, or a known one and another key: the caller is told alike (``told``), so that
    which station ids exist cannot be probed; the message, for the log, says which."""

    def __init__(self, station_id: str, reason: str):
        super().__init__(reason)
        self.told = (f"station {station_id!r} is not registered with this archive under the key that signed this "
                     "call; enrol it ('quire-station enroll') or ask the archive's administrator to check its "
                     "registration ('quire-central stations list')")


class StationAuthInterceptor(grpc.ServerInterceptor):
    """Checks the signed call metadata before a StationSync handler runs."""

    def __init__(self, archive: Archive):
        self.archive = archive
        self.nonces = open_nonces(archive.catalogue, archive.config.home, NONCES_FILE, "station")

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        method = details.method
        if handler is None or not method.startswith(SERVICE_PREFIX) or method in OPEN_METHODS:
            return handler
        if handler.unary_unary:
            return handler._replace(unary_unary=self._guarded(handler.unary_unary, method, callauth.body_digest))
        if handler.stream_unary:
            # A client stream's messages are not known yet: its signature covers the call, not a body.
            return handler._replace(stream_unary=self._guarded(handler.stream_unary, method, lambda _: ""))
        raise CallRefused(f"{method}: no authentication rule for this call shape")

    def _guarded(self, inner, method: str, digest):
        """``inner`` run only for an authenticated station, which ``current_station`` names meanwhile."""

        def behaviour(request, context):
            row = self._authenticate(method, context, digest(request))
            station_id = row["id"]
            refusals.authenticated(f"station:{station_id}")
            token = current_station.set(station_id)
            try:
                with stations.proven(row):
                    return inner(request, context)
            finally:
                current_station.reset(token)

        return behaviour

    def _authenticate(self, method: str, context, body_sha256: str) -> dict:
        """The calling station's row, once its signature, registration, clock and nonce are checked."""
        meta = {}
        for key, value in context.invocation_metadata():
            meta[key] = value
        station_id = meta.get(callauth.HEADER_STATION)
        signature = meta.get(callauth.HEADER_SIGNATURE)
        nonce = meta.get(callauth.HEADER_NONCE, "")
        try:
            time_ms = int(meta.get(callauth.HEADER_TIME, ""))
        except ValueError:
            time_ms = None
        if not station_id or not isinstance(signature, bytes) or time_ms is None or not nonce:
            raise CallRefused(f"{method}: unsigned call; stations sign every call (quire-station signs "
                              "automatically once enrolled)")
        payload = callauth.call_payload(method, station_id, time_ms, nonce, body_sha256)
        try:
            row = stations.get(self.archive, station_id)
            keys.verify(bytes(row["public_key"]), keys.CALL_CONTEXT, payload, signature, f"call {method}")
        except NotEnrolled as exc:
            raise StationUnproven(station_id, str(exc)) from None
        except BadSignature as exc:
            raise StationUnproven(station_id, f"station {station_id}: {exc}; call refused") from None
        stations.refuse_inactive(row)   # told only to the holder of the station's key
        now_ms = int(time.time() * 1000)
        if abs(now_ms - time_ms) > callauth.MAX_CLOCK_SKEW_MS:
            raise CallRefused(f"station {station_id}: call time is {(time_ms - now_ms) / 1000:+.0f} s from the "
                              "archive's clock; set the station's clock (NTP) and retry")
        first_seen = self.nonces.first_use(station_id, nonce, time_ms, now_ms)
        if first_seen is not None:
            when = datetime.fromtimestamp(first_seen / 1000, timezone.utc).isoformat(timespec="seconds")
            raise CallRefused(f"station {station_id}: replayed call refused — its nonce was already used by a call "
                              f"signed at {when}; a station never repeats one, so if this station did not "
                              "resend a captured call, check that no other machine holds its key")
        return row
