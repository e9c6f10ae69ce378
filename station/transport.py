"""The station's channel to the central service: TLS with the pinned certificate, every call signed."""

import hashlib
import secrets
import socket
import ssl
import time

import grpc

from quire import callauth, keys

from .errors import CentralKeyMismatch, CentralUnreachable, NotEnrolledError

TLS_NAME = "quire-central"   # the name in the central service's self-signed certificate


def fetch_certificate(address: str, timeout_s: float = 10.0) -> bytes:
    """The DER certificate the service at ``address`` presents (unverified: the caller pins or compares it)."""
    host, port = _split(address)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # trust comes from the pin and the pairing code, not from a CA
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, ctx.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise CentralUnreachable(f"no TLS service at {address} ({exc})") from None


def answers(address: str, timeout_s: float) -> bool:
    """Whether anything accepts a connection at ``address`` (who it is, the pins tell)."""
    try:
        with socket.create_connection(_split(address), timeout=timeout_s):
            return True
    except OSError:
        return False


class _Signer(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Adds the station's signature, time and nonce to every call."""

    def __init__(self, station_id: str, key):
        self.station_id, self.key = station_id, key

    def _details(self, details, body_sha256: str):
        time_ms = int(time.time() * 1000)
        nonce = secrets.token_hex(16)
        payload = callauth.call_payload(details.method, self.station_id, time_ms, nonce, body_sha256)
        metadata = list(details.metadata or []) + [
            (callauth.HEADER_STATION, self.station_id),
            (callauth.HEADER_TIME, str(time_ms)),
            (callauth.HEADER_NONCE, nonce),
            (callauth.HEADER_SIGNATURE, keys.sign(self.key, keys.CALL_CONTEXT, payload)),
        ]
        return details._replace(metadata=metadata) if hasattr(details, "_replace") else _Details(details, metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details, callauth.body_digest(request)), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details, ""), request_iterator)


class _Details(grpc.ClientCallDetails):
    def __init__(self, details, metadata):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


def open_channel(station, address: str, cert_pem: str | None = None) -> grpc.Channel:
    """A channel to ``address`` that trusts only the pinned certificate (or ``cert_pem``) and
    signs every call. With ``insecure`` set in the station config (a lab), plain text is used."""
    options = [("grpc.ssl_target_name_override", TLS_NAME),
               ("grpc.max_send_message_length", station.config.chunk_bytes + (64 << 10))]
    if station.config.insecure:
        channel = grpc.insecure_channel(address, options=options)
    else:
        cert_pem = cert_pem or station.store.get_meta("central_cert")
        if not cert_pem:
            raise NotEnrolledError("this station has not enrolled with a central archive yet; "
                                   "run 'quire-station enroll --central HOST:PORT'")
        creds = grpc.ssl_channel_credentials(root_certificates=cert_pem.encode())
        channel = grpc.secure_channel(address, creds, options=options)
    return grpc.intercept_channel(channel, _Signer(station.station_id, station.key))


def explain_unavailable(station, address: str, exc: grpc.RpcError) -> Exception:
    """An UNAVAILABLE call: an impostor presenting another certificate, or simply unreachable."""
    pinned = station.store.get_meta("central_cert")
    if pinned and not station.config.insecure:
        try:
            presented = fetch_certificate(address, timeout_s=5)
        except CentralUnreachable:
            presented = None
        if presented is not None and presented != ssl.PEM_cert_to_DER_cert(pinned):
            return CentralKeyMismatch(
                f"central service at {address} presents TLS certificate "
                f"SHA256:{hashlib.sha256(presented).hexdigest()}, not the one pinned at enrolment "
                f"(SHA256:{hashlib.sha256(ssl.PEM_cert_to_DER_cert(pinned)).hexdigest()}); nothing was sent. "
                "If the archive really re-keyed, an operator must re-enrol this station")
    return CentralUnreachable(f"central service at {address} is unreachable ({exc.details()}); bundles stay queued")


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
