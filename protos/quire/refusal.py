"""Typed refusals: the google.rpc.ErrorInfo the archive attaches to every refused call, saying its scope.

A station decides what to do with a refusal from its scope alone, never from the message, which is
for people: "bundle" (this bundle cannot be accepted: keep it aside for an operator), "caller" (this
station may not call now — unknown, suspended, revoked, clock off: stop and keep every bundle
queued) or "call" (this one call failed: try it again later).
"""

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "quire.archive"
SCOPES = ("bundle", "caller", "call")


def status(code: grpc.StatusCode, message: str, reason: str, scope: str) -> grpc.Status:
    """A gRPC status carrying ``message`` and an ErrorInfo with ``reason`` (UPPER_SNAKE) and ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"refusal scope {scope!r} is not one of {', '.join(SCOPES)}")
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata={"scope": scope}))
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=[info]))


def scope_of(error: grpc.RpcError) -> str | None:
    """The scope the archive gave a failed call, or None when it gave none (an older archive, or a
    failure of the connection rather than a refusal)."""
    if not isinstance(error, grpc.Call):
        return None
    try:
        detail = rpc_status.from_call(error)
    except ValueError:
        return None  # details that contradict the call's own status: not to be trusted
    for packed in detail.details if detail else ():
        info = error_details_pb2.ErrorInfo()
        if packed.Unpack(info) and info.domain == DOMAIN and info.metadata.get("scope") in SCOPES:
            return info.metadata["scope"]
    return None
