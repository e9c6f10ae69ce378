"""Station call authentication — the one place a station's identity is established.

Every StationSync call but GetInfo and Enroll carries the station id, a time, a nonce and an
Ed25519 signature over them and the request's digest. A forged call fails the signature, a
replayed one its nonce, a stale one its time, a revoked station its registration.
"""

import contextvars
import threading
import time
from collections import OrderedDict

import grpc

from quire import callauth, keys
from quire.errors import BadSignature

from . import stations
from .archive import Archive
from .errors import CentralError, SignatureInvalid

OPEN_METHODS = {"/quire.v1.StationSync/GetInfo", "/quire.v1.StationSync/Enroll"}
SERVICE_PREFIX = "/quire.v1.StationSync/"

current_station: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_station", default=None)


class CallRefused(CentralError):
    code = grpc.StatusCode.UNAUTHENTICATED


class NonceCache:
    """Nonces seen within the clock-skew window; a nonce seen twice is a replay."""

    def __init__(self, window_ms: int = 2 * callauth.MAX_CLOCK_SKEW_MS, limit: int = 200_000):
        self.window_ms, self.limit = window_ms, limit
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, station_id: str, nonce: str, now_ms: int) -> bool:
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now_ms - self.window_ms
                                  or len(self._seen) > self.limit):
                self._seen.popitem(last=False)
            if (station_id, nonce) in self._seen:
                return False
            self._seen[(station_id, nonce)] = now_ms
            return True


class StationAuthInterceptor(grpc.ServerInterceptor):
    """Checks the signed call metadata before a StationSync handler runs."""

    def __init__(self, archive: Archive):
        self.archive = archive
        self.nonces = NonceCache()

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
            token = current_station.set(self._authenticate(method, context, digest(request)))
            try:
                return inner(request, context)
            finally:
                current_station.reset(token)

        return behaviour

    def _authenticate(self, method: str, context, body_sha256: str) -> str:
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
        if not station_id or not isinstance(signature, bytes) or time_ms is None or len(nonce) < 16:
            raise CallRefused(f"{method}: unsigned call; stations sign every call (quire-station signs "
                              "automatically once enrolled)")
        row = stations.active(self.archive, station_id)
        payload = callauth.call_payload(method, station_id, time_ms, nonce, body_sha256)
        try:
            keys.verify(bytes(row["public_key"]), keys.CALL_CONTEXT, payload, signature, f"call {method}")
        except BadSignature as exc:
            raise SignatureInvalid(f"station {station_id}: {exc}; call refused") from None
        now_ms = int(time.time() * 1000)
        if abs(now_ms - time_ms) > callauth.MAX_CLOCK_SKEW_MS:
            raise CallRefused(f"station {station_id}: call time is {(time_ms - now_ms) / 1000:+.0f} s from the "
                              "archive's clock; set the station's clock (NTP) and retry")
        if not self.nonces.first_use(station_id, nonce, now_ms):
            raise CallRefused(f"station {station_id}: replayed call (nonce seen before) refused")
        return station_id
