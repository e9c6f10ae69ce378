"""The station's channel to the central service: TLS with the pinned certificate, every call signed,
spread over every process of the archive by gRPC's own round-robin balancing."""

import hashlib
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quire import callauth, keys

from .errors import CentralKeyMismatch, CentralUnreachable, NotEnrolledError, StationError

TLS_NAME = "quire-central"   # the name in the central service's self-signed certificate

log = logging.getLogger("quire.station.transport")

# Every call goes to the next archive process that is up (round robin); one that is down or presents
# another certificate is left out until it answers again. Only GetInfo is retried by gRPC itself: the
# other calls carry a nonce the archive processes share, so a retry of one that reached a process
# before it died would be refused as a replay — sync retries those itself, each with a fresh nonce.
_SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "quire.v1.StationSync", "method": "GetInfo"}, {"service": "grpc.health.v1.Health"}],
        "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.2s", "maxBackoff": "2s", "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
})


def entries(central: str) -> list[str]:
    """The HOST:PORT entries of a ``central`` setting ("a:7443" or "a:7443,b:7443")."""
    return [e.strip() for e in central.split(",") if e.strip()]


def endpoints(central: str) -> list[str]:
    """Every address the ``central`` setting stands for: each entry, a name resolved to all its addresses
    (an entry that does not resolve is left out and logged)."""
    found: list[str] = []
    for entry in entries(central):
        host, port = _split(entry)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("central archive address %s does not resolve (%s); trying the others", entry, exc)
            continue
        for family, _, _, _, sockaddr in infos:
            address = f"[{sockaddr[0]}]:{sockaddr[1]}" if family == socket.AF_INET6 else f"{sockaddr[0]}:{sockaddr[1]}"
            if address not in found:
                found.append(address)
    return found


def grpc_target(central: str) -> str:
    """The gRPC target for the ``central`` setting: one entry as a ``dns:///`` name (gRPC resolves it again
    as it changes, balancing over every address it gives); several as an ``ipv4:``/``ipv6:`` list of their
    addresses, resolved now (gRPC's address lists hold one family: IPv4 is used when both appear)."""
    listed = entries(central)
    if len(listed) == 1:
        host, port = _split(listed[0])
        return f"dns:///{listed[0]}" if not _is_ip(host) else _literal_target([listed[0]])
    found = endpoints(central)
    if not found:
        raise CentralUnreachable(f"none of the central archive addresses {', '.join(listed)} resolves; check "
                                 "the names in station.toml ('central') or use IP addresses")
    v4 = [a for a in found if not a.startswith("[")]
    v6 = [a for a in found if a.startswith("[")]
    if v4 and v6:
        log.warning("central archive addresses %s are IPv6 beside IPv4 ones: only the IPv4 ones are used",
                    ", ".join(v6))
    return _literal_target(v4 or v6)


def _literal_target(addresses: list[str]) -> str:
    return ("ipv6:" if addresses[0].startswith("[") else "ipv4:") + ",".join(addresses)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def probe(station, address: str, timeout_s: float) -> dict[str, str]:
    """Each address of ``address`` with "" when the archive process there answers gRPC's health check
    through the pinned TLS identity, else why not. (Which process served a given call, gRPC's Python
    client does not say; the balancer uses exactly those that answer.)"""
    found = {}
    for endpoint in endpoints(address) or entries(address):
        try:
            with open_channel(station, endpoint) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
            status = health_pb2.HealthCheckResponse
            found[endpoint] = "" if reply.status == status.SERVING else \
                f"not serving ({status.ServingStatus.Name(reply.status)})"
        except grpc.RpcError as exc:
            found[endpoint] = f"{exc.code().name}: {exc.details()}"
        except StationError as exc:   # not enrolled, a name that stopped resolving
            found[endpoint] = str(exc)
    return found


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
    """Whether anything accepts a connection at ``address`` (any of its entries; who it is, the pins tell)."""
    for endpoint in endpoints(address):
        try:
            with socket.create_connection(_split(endpoint), timeout=timeout_s):
                return True
        except OSError:
            continue
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
    """A channel to ``address`` (one HOST:PORT, a name with several addresses, or a comma-separated list)
    that trusts only the pinned certificate (or ``cert_pem``) at every address, spreads calls over the
    addresses that answer and signs every call. With ``insecure`` set in the station config (a lab),
    plain text is used."""
    options = [("grpc.ssl_target_name_override", TLS_NAME),
               ("grpc.max_send_message_length", station.config.chunk_bytes + (64 << 10)),
               ("grpc.service_config", _SERVICE_CONFIG),
               ("grpc.enable_retries", 1)]
    target = grpc_target(address)
    if station.config.insecure:
        channel = grpc.insecure_channel(target, options=options)
    else:
        cert_pem = cert_pem or station.store.get_meta("central_cert")
        if not cert_pem:
            raise NotEnrolledError("this station has not enrolled with a central archive yet; "
                                   "run 'quire-station enroll --central HOST:PORT'")
        creds = grpc.ssl_channel_credentials(root_certificates=cert_pem.encode())
        channel = grpc.secure_channel(target, creds, options=options)
    return grpc.intercept_channel(channel, _Signer(station.station_id, station.key))


def explain_unavailable(station, address: str, exc: grpc.RpcError) -> Exception:
    """An UNAVAILABLE call: an impostor presenting another certificate, or simply unreachable."""
    pinned = station.store.get_meta("central_cert")
    if pinned and not station.config.insecure:
        for endpoint in endpoints(address):
            try:
                presented = fetch_certificate(endpoint, timeout_s=5)
            except CentralUnreachable:
                continue
            if presented != ssl.PEM_cert_to_DER_cert(pinned):
                return CentralKeyMismatch(
                    f"central service at {endpoint} presents TLS certificate "
                    f"SHA256:{hashlib.sha256(presented).hexdigest()}, not the one pinned at enrolment "
                    f"(SHA256:{hashlib.sha256(ssl.PEM_cert_to_DER_cert(pinned)).hexdigest()}); nothing was sent. "
                    "If the archive really re-keyed, an operator must re-enrol this station")
    where = address if len(entries(address)) == 1 else f"{address} (none of them)"
    return CentralUnreachable(f"central service at {where} is unreachable ({exc.details()}); bundles stay queued")


def certificates(address: str, timeout_s: float = 10.0) -> dict[str, bytes]:
    """The DER certificate each address of ``address`` presents, for those that answer (unverified)."""
    presented = {}
    for endpoint in endpoints(address):
        try:
            presented[endpoint] = fetch_certificate(endpoint, timeout_s)
        except CentralUnreachable:
            continue
    return presented


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
