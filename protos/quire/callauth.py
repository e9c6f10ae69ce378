"""Signed calls: what a station signs for each gRPC call, and the pairing code of an enrolment.

A call signature covers the method, the station, a time and a nonce, and the SHA-256 of the
request message, so a forged call fails, a replayed one is caught by its nonce, and an old one
by its time.
"""

import hashlib

from .canonical import canonical_bytes

HEADER_STATION = "quire-station"
HEADER_TIME = "quire-time-ms"
HEADER_NONCE = "quire-nonce"
HEADER_SIGNATURE = "quire-signature-bin"   # "-bin": gRPC carries the value as raw bytes
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000
NONCE_BYTES = 16   # random bytes of a call's nonce, sent as hex


def call_payload(method: str, station_id: str, time_ms: int, nonce: str, body_sha256: str) -> bytes:
    """Canonical bytes a station signs for one call (``body_sha256`` is "" for a client stream)."""
    return canonical_bytes({"method": method, "station": station_id, "time_ms": time_ms,
                            "nonce": nonce, "body_sha256": body_sha256})


def body_digest(message) -> str:
    """SHA-256 of a request message's deterministic serialisation."""
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()


def enrol_payload(station_id: str, public_key: bytes, hostname: str, time_ms: int) -> bytes:
    """Canonical bytes of an enrolment request, signed with the key being enrolled."""
    return canonical_bytes({"station": station_id, "public_key": public_key.hex(),
                            "hostname": hostname, "time_ms": time_ms})


def pairing_code(central_key: bytes, station_key: bytes) -> str:
    """Eight digits both sides derive from both keys; a man in the middle changes them."""
    digest = hashlib.sha256(b"quire.pairing.v1\x00" + central_key + station_key).digest()
    number = int.from_bytes(digest[:8], "big") % 10**8
    return f"{number // 10**4:04d}-{number % 10**4:04d}"
