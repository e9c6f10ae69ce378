"""The one place where exceptions become gRPC statuses."""

import errno
import logging
import re
import sqlite3
import uuid

import grpc

from quire import refusal

from . import refusals
from .archive import Archive
from .errors import CentralError

log = logging.getLogger("quire.central")


class ErrorInterceptor(grpc.ServerInterceptor):
    """CentralError → its status and message (a refusal also into the archive's audit log); anything
    else → INTERNAL with an incident id."""

    def __init__(self, archive: Archive):
        self.archive = archive

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                wrap = _translated_stream if kind.endswith("_stream") else _translated
                return handler._replace(**{kind: wrap(behaviour, method, self.archive)})
        return handler


def _translated(behaviour, method: str, archive: Archive):
    def wrapper(request, context):
        refusals.call_begins(context, request)
        try:
            return behaviour(request, context)
        except Exception as exc:
            _abort(context, method, exc, archive)

    return wrapper


def _translated_stream(behaviour, method: str, archive: Archive):
    def wrapper(request, context):
        refusals.call_begins(context, request)
        try:
            yield from behaviour(request, context)
        except Exception as exc:
            _abort(context, method, exc, archive)

    return wrapper


def _abort(context, method: str, exc: Exception, archive: Archive):
    if isinstance(exc, grpc.RpcError) and not context.is_active():
        # Reading the request stream failed because the caller went away (cut, killed): no incident.
        # Re-raised, not answered: gRPC ends a call quietly on the RpcError its own request iterator
        # raised, whereas a returned None would reach the serializer and be logged as an error.
        log.info("%s: caller disconnected mid-call", method)
        raise exc
    if _disk_full(exc):
        log.error("%s: the archive's disk is full (%s)", method, exc)
        _refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                "the archive's disk is full; nothing of this call was kept and the station will retry "
                "later (administrator: free space in the archive's home)", "ARCHIVE_DISK_FULL", "call")
    if isinstance(exc, CentralError):
        refusals.at_door(archive, method, exc)
        # ``told``: what the caller may learn where the log keeps more (which station ids exist).
        _refuse(context, exc.code, getattr(exc, "told", None) or str(exc), _upper_snake(type(exc).__name__),
                exc.scope, getattr(exc, "retry_after_s", None))
    incident = uuid.uuid4().hex[:12]
    # Full detail stays in the service log; the caller only gets the incident id.
    log.error("%s failed, incident %s", method, incident, exc_info=exc)
    _refuse(context, grpc.StatusCode.INTERNAL,
            f"internal error, incident {incident}; give this id to the archive administrator", "INTERNAL", "call")


def _refuse(context, code: grpc.StatusCode, message: str, reason: str, scope: str,
            retry_after_s: float | None = None):
    """End the call with ``code``, ``message`` and the typed reason and scope a station decides on; with
    ``retry_after_s``, the trailer telling it when to try again."""
    pushback_ms = None if retry_after_s is None else round(retry_after_s * 1000)
    context.abort_with_status(refusal.status(code, message, reason, scope, pushback_ms))


def _upper_snake(name: str) -> str:
    """BundleRejected → BUNDLE_REJECTED."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def _disk_full(exc: Exception) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)
