"""The copy's gRPC face: the ArchiveReplica servicer, and the gate that keeps stations and readers off a copy."""

import time
from datetime import datetime, timezone

import grpc

from quire import callauth, keys
from quire.errors import BadSignature
from quire.v1 import sync_pb2, sync_pb2_grpc

from . import replica
from .archive import Archive
from .auth import CallRefused
from .read_ahead import read_ahead
from .store.nonces import NonceCache, SharedNonces, open_nonces

NONCES_FILE = "replica-nonces.db"
SERVICE_PREFIX = "/quire.v1.ArchiveReplica/"
_GATED = ("/quire.v1.StationSync/", "/quire.v1.ArchiveAccess/")
_OPEN = {"/quire.v1.StationSync/GetInfo"}


class ReplicaServicer(sync_pb2_grpc.ArchiveReplicaServicer):
    """Thin: every call is authenticated as the pinned primary, then handed to ``replica``."""

    def __init__(self, archive: Archive):
        self.archive = archive
        self._nonces: NonceCache | SharedNonces | None = None

    def State(self, request, context):
        self._authenticate(context, "State", callauth.body_digest(request))
        return replica.position(self.archive)

    def Offer(self, request, context):
        self._authenticate(context, "Offer", callauth.body_digest(request))
        transfer_id, missing, sizes = replica.offer(self.archive, request.manifest, request.signature)
        return sync_pb2.OfferResponse(bundle_id=transfer_id, missing_sha256=missing, committed_sizes=sizes)

    def Write(self, request_iterator, context):
        self._authenticate(context, "Write", "")
        written = replica.write(self.archive, read_ahead(iter(request_iterator)))
        return sync_pb2.WriteResponse(committed_size=written.size, complete=written.complete,
                                      completed_sha256=written.completed)

    def Commit(self, request, context):
        self._authenticate(context, "Commit", callauth.body_digest(request))
        data, signature = replica.commit(self.archive, request.bundle_id)
        return sync_pb2.CommitResponse(receipt=sync_pb2.SignedReceipt(receipt=data, signature=signature))

    def _authenticate(self, context, name: str, body_sha256: str) -> None:
        """The call must be signed, fresh and new, by the primary this copy was set up for."""
        state = replica.load_state(self.archive.config)
        meta = dict(context.invocation_metadata() or ())
        method = SERVICE_PREFIX + name
        try:
            time_ms = int(meta.get(callauth.HEADER_TIME, ""))
            nonce, signature = meta[callauth.HEADER_NONCE], meta[callauth.HEADER_SIGNATURE]
            caller = meta[callauth.HEADER_STATION]
        except (KeyError, ValueError):
            raise CallRefused(f"{method}: unsigned call; only the primary, signing with its archive key, may "
                              "replicate to this copy") from None
        payload = callauth.call_payload(method, caller, time_ms, nonce, body_sha256)
        try:
            keys.verify(bytes.fromhex(state["primary_key"]), keys.CALL_CONTEXT, payload, signature, f"call {method}")
        except BadSignature:
            raise CallRefused(f"{method}: not signed by {state['primary_fingerprint']}, the primary this copy "
                              "follows; refused") from None
        now_ms = int(time.time() * 1000)
        if abs(now_ms - time_ms) > callauth.MAX_CLOCK_SKEW_MS:
            raise CallRefused(f"{method}: call time is {(time_ms - now_ms) / 1000:+.0f} s from the copy's clock; "
                              "set both clocks (NTP) and retry")
        if self._nonces is None:
            self._nonces = open_nonces(self.archive.catalogue, self.archive.config.home, NONCES_FILE, "replica")
        seen = self._nonces.first_use(caller, nonce, time_ms, now_ms)
        if seen is not None:
            when = datetime.fromtimestamp(seen / 1000, timezone.utc).isoformat(timespec="seconds")
            raise CallRefused(f"{method}: replayed call refused (its nonce was first used at {when})")


class CopyGate(grpc.ServerInterceptor):
    """On an off-site copy, stations and readers are turned away with where to go; the copy only follows."""

    def __init__(self, archive: Archive):
        self.archive = archive

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        method = details.method
        if handler is None or method in _OPEN or not method.startswith(_GATED) \
                or not replica.is_replica(self.archive.config):
            return handler
        message = self._message()

        def refuse(request, context):
            raise replica.ReplicaError(message)  # translated, with its scope, by the error interceptor

        if handler.unary_unary:
            return handler._replace(unary_unary=refuse)
        if handler.stream_unary:
            return handler._replace(stream_unary=refuse)
        if handler.unary_stream:
            return handler._replace(unary_stream=refuse)
        return handler._replace(stream_stream=refuse)

    def _message(self) -> str:
        try:
            state = replica.load_state(self.archive.config)
            primary = f"archive {state['primary_fingerprint']} at {state['primary_address']}"
        except replica.ReplicaError:
            primary = "another archive"
        return (f"this is an off-site copy of {primary}: use the primary. If the primary is lost, an "
                "administrator promotes this copy ('quire-central promote --identity DIR') and it serves stations")
