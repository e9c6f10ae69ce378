"""Typed refusals: the google.rpc.ErrorInfo the archive attaches to every refused call, saying its scope.

A station decides what to do with a refusal from its scope alone, never from the message, which is
for people: "bundle" (this bundle cannot be accepted: keep it aside for an operator), "caller" (this
station may not call now — unknown, suspended, revoked, clock off: stop and keep every bundle
queued) or "call" (this one call failed: try it again later). A refusal that is the archive's own flow
control may say, in the trailer ``grpc-retry-pushback-ms``, how long to wait before that next try.
"""

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "quire.archive"
SCOPES = ("bundle", "caller", "call")
UPLOADS_FULL = "UPLOADS_FULL"          # reason: every upload slot of the archive is taken; wait, then send again
PUSHBACK_HEADER = "grpc-retry-pushback-ms"   # gRPC's own name for "try again after this many ms"


def status(code: grpc.StatusCode, message: str, reason: str, scope: str,
           retry_after_ms: int | None = None) -> grpc.Status:
    """A gRPC status carrying ``message`` and an ErrorInfo with ``reason`` (UPPER_SNAKE) and ``scope``;
    with ``retry_after_ms``, also the pushback trailer saying when to try again."""
    if scope not in SCOPES:
        raise ValueError(f"refusal scope {scope!r} is not one of {', '.join(SCOPES)}")
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata={"scope": scope}))
    found = rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=[info]))
    if retry_after_ms is None:
        return found
    return found._replace(trailing_metadata=(*found.trailing_metadata, (PUSHBACK_HEADER, str(int(retry_after_ms)))))


def scope_of(error: grpc.RpcError) -> str | None:
    """The scope the archive gave a failed call, or None when it gave none (an older archive, or a
    failure of the connection rather than a refusal)."""
    info = _info(error)
    return info.metadata["scope"] if info else None


def reason_of(error: grpc.RpcError) -> str | None:
    """The reason (UPPER_SNAKE) the archive gave a failed call, or None when it gave none."""
    info = _info(error)
    return info.reason if info else None


def pushback_s(error: grpc.RpcError) -> float | None:
    """How long the archive asked the caller to wait before trying again, or None when it did not say
    (or said something that is not a count of milliseconds)."""
    if not isinstance(error, grpc.Call):
        return None
    for key, value in error.trailing_metadata() or ():
        if key == PUSHBACK_HEADER:
            try:
                ms = int(value)
            except (TypeError, ValueError):
                return None
            return ms / 1000 if ms >= 0 else None
    return None


def _info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    if not isinstance(error, grpc.Call):
        return None
    try:
        detail = rpc_status.from_call(error)
    except ValueError:
        return None  # details that contradict the call's own status: not to be trusted
    for packed in detail.details if detail else ():
        info = error_details_pb2.ErrorInfo()
        if packed.Unpack(info) and info.domain == DOMAIN and info.metadata.get("scope") in SCOPES:
            return info
    return None
