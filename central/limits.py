"""Bounds on what a caller may send — every field of every request, the signed-call headers and a
request's size before it is decoded — checked before authentication or any handler runs."""

import re
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from quire import callauth
from quire.v1 import access_pb2, sync_pb2

from .errors import CentralError

Check = Callable[[object], str | None]   # a field's value → what is wrong with it, or None

STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
HOSTNAME_BYTES = 253                     # RFC 1035's longest name
MAX_SAFE_INT = 2**53 - 1                 # the largest integer canonical JSON (RFC 8785) holds; calls sign it
MAX_CHUNK_BYTES = 64 << 20               # central.toml's ceiling; the configured size is gRPC's message limit
MANIFEST_BYTES = 8 << 20
OPEN_REQUEST_BYTES = 4096                # a health or reflection request (a service name, a symbol)
SHOWN_CHARS = 24                         # of a refused value, quoted back to the caller and the log


class BadRequest(CentralError):
    """A request, or a header of it, outside its declared bounds — or not a request of its type at all."""

    code = grpc.StatusCode.INVALID_ARGUMENT


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def text(max_bytes: int, pattern: re.Pattern | None = None, empty: bool = True) -> Check:
    """A string of at most ``max_bytes`` UTF-8 bytes, matching ``pattern`` unless empty (where allowed)."""

    def check(value) -> str | None:
        size = len(value.encode())
        if size > max_bytes:
            return f"is {size} bytes, at most {max_bytes} are accepted"
        if not value:
            return None if empty else "is empty"
        if pattern is not None and not pattern.fullmatch(value):
            return f"{_shown(value)} is not of the form {pattern.pattern}"
        return None

    return check


def blob(max_bytes: int | None = None, exact: int | None = None, empty: bool = False) -> Check:
    """Bytes of exactly ``exact`` or at most ``max_bytes`` (empty only where allowed)."""

    def check(value) -> str | None:
        if not value and empty:
            return None
        if exact is not None and len(value) != exact:
            return f"is {len(value)} bytes, not {exact}"
        if max_bytes is not None and len(value) > max_bytes:
            return f"is {len(value)} bytes, at most {max_bytes} are accepted"
        return None

    return check


def integer(lo: int, hi: int) -> Check:
    def check(value) -> str | None:
        return None if lo <= value <= hi else f"is {_shown(value)}, not within {lo}…{hi}"

    return check


def numeral(hi: int) -> Check:
    """A header holding a non-negative decimal integer of at most ``hi``."""

    def check(value) -> str | None:
        if not (isinstance(value, str) and value.isascii() and value.isdigit()) or len(value) > len(str(hi)):
            return f"{_shown(value)} is not a decimal number of at most {len(str(hi))} digits"
        return None if int(value) <= hi else f"is {_shown(value)}, more than {hi}"

    return check


def _nothing(_value) -> None:
    """A flag: nothing in it to bound."""


INT32 = integer(-2**31, 2**31 - 1)         # left to the use case, which says what it means
INT64 = integer(-2**63, 2**63 - 1)
STATION = text(63, STATION_ID, empty=False)
OPTIONAL_STATION = text(63, STATION_ID)    # a Write stream names its station on its first message only
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
DIGEST = text(64, SHA256_HEX, empty=False)
OPTIONAL_DIGEST = text(64, SHA256_HEX)
SIGNATURE = blob(exact=64)
ARCHIVE_NO, ITEM, PROSE = text(128), text(32), text(2000)


@dataclass(frozen=True)
class Request:
    """One request type's bounds: on its encoded size (None: gRPC's message limit) and on each field."""

    name: str
    max_bytes: int | None
    fields: dict[str, Check]


REQUESTS = {r.name: r for r in [
    Request(sync_pb2.GetInfoRequest.DESCRIPTOR.full_name, 64, {}),
    Request(sync_pb2.EnrollRequest.DESCRIPTOR.full_name, 1024, {
        "station_id": STATION, "public_key": blob(exact=32),
        "hostname": text(HOSTNAME_BYTES, re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")),
        "time_ms": integer(0, MAX_SAFE_INT), "signature": SIGNATURE}),
    Request(sync_pb2.OfferRequest.DESCRIPTOR.full_name, None, {
        "station_id": STATION, "manifest": blob(max_bytes=MANIFEST_BYTES), "signature": SIGNATURE}),
    Request(sync_pb2.QueryWriteStatusRequest.DESCRIPTOR.full_name, 1024, {
        "station_id": STATION, "bundle_id": DIGEST, "sha256": DIGEST}),
    Request(sync_pb2.WriteRequest.DESCRIPTOR.full_name, None, {
        "station_id": OPTIONAL_STATION, "bundle_id": OPTIONAL_DIGEST, "sha256": OPTIONAL_DIGEST,
        "write_offset": integer(0, MAX_SAFE_INT), "data": blob(max_bytes=MAX_CHUNK_BYTES, empty=True),
        "finish_write": _nothing, "data_crc32c": _nothing}),
    Request(sync_pb2.CommitRequest.DESCRIPTOR.full_name, 1024, {"station_id": STATION, "bundle_id": DIGEST}),
    Request(sync_pb2.NoticesRequest.DESCRIPTOR.full_name, 1024, {"station_id": STATION, "after_id": INT64}),
    Request(sync_pb2.DirectoryRequest.DESCRIPTOR.full_name, 1024, {"station_id": STATION, "archive_no": ARCHIVE_NO}),
    Request(access_pb2.WhoamiRequest.DESCRIPTOR.full_name, 64, {}),
    Request(access_pb2.ConsultationRequest.DESCRIPTOR.full_name, 4096, {
        "archive_no": ARCHIVE_NO, "purpose": PROSE, "days": INT32, "export": _nothing}),
    Request(access_pb2.ConsultationDecision.DESCRIPTOR.full_name, 4096, {
        "id": INT64, "approve": _nothing, "reason": PROSE, "what": text(16)}),
    Request(access_pb2.ConsultationRef.DESCRIPTOR.full_name, 64, {"id": INT64}),
    Request(access_pb2.ListConsultationsRequest.DESCRIPTOR.full_name, 64, {}),
    Request(access_pb2.ListMaterialsRequest.DESCRIPTOR.full_name, 1024, {
        "archive_no": ARCHIVE_NO, "consultation_id": INT64}),
    Request(access_pb2.GetPageRequest.DESCRIPTOR.full_name, 1024, {
        "archive_no": ARCHIVE_NO, "item": ITEM, "n": INT32, "consultation_id": INT64, "export": _nothing}),
]}

HEADERS = {callauth.HEADER_STATION: STATION, callauth.HEADER_TIME: numeral(MAX_SAFE_INT),
           callauth.HEADER_NONCE: text(2 * callauth.NONCE_BYTES, re.compile(f"[0-9a-f]{{{2 * callauth.NONCE_BYTES}}}"),
                                       empty=False),
           callauth.HEADER_SIGNATURE: SIGNATURE}

_INPUTS = {f"/{service.full_name}/{method.name}": method.input_type.full_name
           for pb2 in (sync_pb2, access_pb2) for service in pb2.DESCRIPTOR.services_by_name.values()
           for method in service.methods}


def _problems(message, fields: dict[str, Check]) -> list[str]:
    """Every field of ``message`` outside its bound, each as "name what is wrong"."""
    found = ((name, check(getattr(message, name))) for name, check in fields.items())
    return [f"{name} {problem}" for name, problem in found if problem]


@dataclass(frozen=True)
class _Unreadable:
    """What a request that could not be decoded is handed on as, so that it is refused, not logged as a fault."""

    problem: str


def _quiet(deserialize, max_bytes: int | None, type_name: str):
    """``deserialize`` that hands on an _Unreadable instead of raising: gRPC would log each failure's traceback."""

    def read(data: bytes):
        if max_bytes is not None and len(data) > max_bytes:
            return _Unreadable(f"the request is {len(data)} bytes; at most {max_bytes} are accepted for this call")
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - any decoding failure is the caller's malformed input
            return _Unreadable(f"the request is not a valid {type_name} message")

    return read


class LimitsInterceptor(grpc.ServerInterceptor):
    """Refuses a request outside its declared bounds before authentication or any handler sees it."""

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        type_name = _INPUTS.get(details.method, "request")
        declared = REQUESTS.get(type_name, Request(type_name, OPEN_REQUEST_BYTES, {}))
        admit = _Admission(declared)
        handler = handler._replace(request_deserializer=_quiet(handler.request_deserializer, declared.max_bytes,
                                                               type_name))
        if handler.unary_unary or handler.unary_stream:
            kind = "unary_unary" if handler.unary_unary else "unary_stream"
            return handler._replace(**{kind: admit.one(getattr(handler, kind))})
        kind = "stream_unary" if handler.stream_unary else "stream_stream"
        return handler._replace(**{kind: admit.each(getattr(handler, kind))})


class _Admission:
    """One method's checks, run on its headers and on each request message."""

    def __init__(self, declared: Request):
        self.declared = declared

    def one(self, inner):
        def behaviour(request, context):
            self._headers(context)
            self._message(request)
            return inner(request, context)

        return behaviour

    def each(self, inner):
        def behaviour(requests, context):
            self._headers(context)
            return inner(self._checked(requests), context)

        return behaviour

    def _checked(self, requests):
        for request in requests:
            self._message(request)
            yield request

    def _headers(self, context) -> None:
        found = [(key, HEADERS[key](value)) for key, value in context.invocation_metadata() or () if key in HEADERS]
        self._refuse([f"header {key} {problem}" for key, problem in found if problem])

    def _message(self, request) -> None:
        if isinstance(request, _Unreadable):
            self._refuse([request.problem])
        self._refuse(_problems(request, self.declared.fields))

    def _refuse(self, found: list[str]) -> None:
        if found:
            raise BadRequest(f"malformed request: {'; '.join(found)} — nothing was done; send a well-formed "
                             "request (quire-station does; another client must follow quire/v1/*.proto)")
