"""Enrolment: find the central archive, check its identity, ask to be enrolled, pin its keys."""

import hashlib
import socket
import ssl
import time
from dataclasses import dataclass

import grpc

from quire import callauth, keys
from quire.errors import BadSignature
from quire.v1 import sync_pb2, sync_pb2_grpc

from .errors import CentralKeyMismatch, CentralUnreachable, EnrolmentPending, SyncError
from .home import Station
from .transport import certificates, entries, explain_unavailable, fetch_certificate, open_channel


@dataclass
class Enrolment:
    address: str
    state: str            # "pending" or "approved"
    pairing_code: str
    unit: str
    central_fingerprint: str


def enroll(station: Station, address: str, wait_s: float = 0.0, poll_s: float = 1.0) -> Enrolment:
    """Ask the archive at ``address`` to enrol this station and pin its key and certificate.

    The pairing code is derived from both keys: the operator approves only when the code the
    station shows equals the one the archive lists, so an impostor in between is caught.
    """
    cert_pem = None
    if not station.config.insecure:
        cert_pem = ssl.DER_cert_to_PEM_cert(_one_certificate(address))
        pinned = station.store.get_meta("central_cert")
        if pinned and pinned != cert_pem:
            raise CentralKeyMismatch(
                f"this station is pinned to another central archive certificate than the one {address} "
                "presents; nothing was sent. Re-keying is an explicit operator action on both sides")
    deadline = time.monotonic() + wait_s
    with open_channel(station, address, cert_pem) as channel:
        stub = sync_pb2_grpc.StationSyncStub(channel)
        try:
            info = stub.GetInfo(sync_pb2.GetInfoRequest(), timeout=station.config.sync_timeout_s)
            if cert_pem:
                _check_binding(info, cert_pem)
            _check_key_pin(station, info.public_key, address)
            while True:
                response = stub.Enroll(_request(station), timeout=station.config.sync_timeout_s)
                if response.pairing_code != callauth.pairing_code(info.public_key, station.public_key):
                    raise CentralKeyMismatch(f"central service at {address} returned a pairing code that "
                                             "does not match its key; refusing to enrol")
                if response.state == sync_pb2.EnrollResponse.APPROVED or time.monotonic() >= deadline:
                    break
                time.sleep(poll_s)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise explain_unavailable(station, address, exc) from None
            raise SyncError(f"central service at {address} refused enrolment: {exc.details()}") from None
    station.store.set_meta("central_key", info.public_key.hex())
    if cert_pem:
        station.store.set_meta("central_cert", cert_pem)
    station.store.set_meta("central_address", address)
    approved = response.state == sync_pb2.EnrollResponse.APPROVED
    return Enrolment(address, "approved" if approved else "pending", response.pairing_code, response.unit,
                     keys.fingerprint(info.public_key))


def _one_certificate(address: str) -> bytes:
    """The certificate every process of the archive at ``address`` presents: the pin must hold at each."""
    presented = certificates(address)
    if not presented and len(entries(address)) == 1:
        return fetch_certificate(address)   # raises, saying why the one address does not answer
    if not presented:
        raise CentralUnreachable(f"no TLS service answers at any of {address}; check that the archive "
                                 "processes run and that the firewall lets this station reach them")
    distinct = set(presented.values())
    if len(distinct) > 1:
        listing = ", ".join(f"{where} SHA256:{hashlib.sha256(cert).hexdigest()[:16]}…"
                            for where, cert in presented.items())
        raise CentralKeyMismatch(f"the addresses of {address} present different TLS certificates ({listing}); "
                                 "every process of one archive serves the same home and so the same certificate — "
                                 "one of them is another archive or an impostor. Nothing was sent; fix the list")
    return distinct.pop()


def _request(station: Station) -> sync_pb2.EnrollRequest:
    host = socket.gethostname()
    time_ms = int(time.time() * 1000)
    payload = callauth.enrol_payload(station.station_id, station.public_key, host, time_ms)
    return sync_pb2.EnrollRequest(station_id=station.station_id, public_key=station.public_key, hostname=host,
                                  time_ms=time_ms, signature=keys.sign(station.key, keys.ENROL_CONTEXT, payload))


def _check_binding(info, cert_pem: str) -> None:
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem)).digest()
    try:
        if info.tls_cert_sha256 != digest:
            raise BadSignature("TLS certificate binding", keys.key_id(info.public_key))
        keys.verify(info.public_key, keys.TLS_BINDING_CONTEXT, digest, info.tls_binding_signature,
                    "TLS certificate binding")
    except BadSignature:
        raise CentralKeyMismatch("the central service's TLS certificate is not vouched for by its archive key; "
                                 "something is between this station and the archive — refusing") from None


def _check_key_pin(station: Station, public_key: bytes, address: str) -> None:
    pinned = station.store.get_meta("central_key")
    if pinned and bytes.fromhex(pinned) != public_key:
        raise CentralKeyMismatch(
            f"central service at {address} presents key {keys.fingerprint(public_key)}, but this station "
            f"trusts {keys.fingerprint(bytes.fromhex(pinned))}; nothing was sent")


def require_approved(enrolment: Enrolment) -> None:
    if enrolment.state != "approved":
        raise EnrolmentPending(
            f"enrolment pending: pairing code {enrolment.pairing_code}. Ask the archive operator to compare it "
            f"and run 'quire-central stations approve {enrolment.pairing_code} --unit UNIT'")
