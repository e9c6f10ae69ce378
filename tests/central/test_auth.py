"""Only enrolled stations' own, fresh, correctly signed calls get through (tests over real TLS)."""

import secrets
import sqlite3
import ssl
import time
from contextlib import contextmanager

import grpc
import nacl.signing
import psycopg
import pytest

from central import changes, stations
from central.permissions import local_operator
from central.store.postgres import WRITE_LOCK
from quire import callauth, keys
from quire.v1 import sync_pb2, sync_pb2_grpc
from station.enrol import enroll
from station.sync import sync
from station.transport import TLS_NAME
from tests.conftest import make_station, register


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


REQUEST = sync_pb2.QueryWriteStatusRequest(station_id="st-test", bundle_id="0" * 64, sha256="0" * 64)
METHOD = "/quire.v1.StationSync/QueryWriteStatus"


def raw_call(archive, address, metadata, request=REQUEST):
    """One QueryWriteStatus over the archive's TLS, with exactly the metadata given."""
    creds = grpc.ssl_channel_credentials(root_certificates=archive.tls.cert_pem)
    with grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", TLS_NAME)]) as ch:
        return sync_pb2_grpc.StationSyncStub(ch).QueryWriteStatus(request, metadata=metadata, timeout=10)


def signed(key, station_id="st-test", time_ms=None, nonce=None, request=REQUEST):
    time_ms = int(time.time() * 1000) if time_ms is None else time_ms
    nonce = nonce or secrets.token_hex(16)
    payload = callauth.call_payload(METHOD, station_id, time_ms, nonce, callauth.body_digest(request))
    return [(callauth.HEADER_STATION, station_id), (callauth.HEADER_TIME, str(time_ms)),
            (callauth.HEADER_NONCE, nonce), (callauth.HEADER_SIGNATURE, keys.sign(key, keys.CALL_CONTEXT, payload))]


def refused(archive, address, metadata, request=REQUEST) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        raw_call(archive, address, metadata, request)
    return info.value


def test_a_correctly_signed_call_passes_authentication(central, station):
    archive, address = central
    err = refused(archive, address, signed(station.key))
    assert err.code() == grpc.StatusCode.NOT_FOUND  # past authentication: the bundle is simply unknown


def test_unsigned_and_forged_calls_are_refused(central, station):
    archive, address = central
    assert refused(archive, address, []).code() == grpc.StatusCode.UNAUTHENTICATED
    forged = signed(nacl.signing.SigningKey.generate())
    err = refused(archive, address, forged)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "not registered with this archive under the key" in err.details()


def test_a_replayed_call_is_refused(central, station):
    archive, address = central
    metadata = signed(station.key)
    assert refused(archive, address, metadata).code() == grpc.StatusCode.NOT_FOUND
    err = refused(archive, address, metadata)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "replayed" in err.details()


@contextmanager
def _writer_lock_held(archive):
    """The catalogue's writer lock held from another connection, as by a long write on another process."""
    if archive.config.catalogue:
        with psycopg.connect(archive.config.catalogue) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield
        return
    conn = sqlite3.connect(archive.config.db_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_a_forged_call_is_refused_at_once_while_another_process_writes(central, station):
    """The refusal does not wait for the writer to log it (it used to, past the call's deadline); its audit
    entry follows once the writer is done."""
    archive, address = central

    def logged() -> int:
        return archive.catalogue.one("SELECT COUNT(*) AS n FROM audit_entries WHERE event = 'call.refused'")["n"]

    before = logged()
    with _writer_lock_held(archive):
        err = refused(archive, address, signed(nacl.signing.SigningKey.generate()))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (err.code(), err.details())
        assert "not registered with this archive under the key" in err.details()
    deadline = time.monotonic() + 30
    while logged() == before:
        assert time.monotonic() < deadline, "the refusal never reached the audit log"
        time.sleep(0.05)


def test_a_stale_call_is_refused_with_the_clock_advice(central, station):
    archive, address = central
    err = refused(archive, address, signed(station.key, time_ms=int(time.time() * 1000) - 3_600_000))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "clock" in err.details()


def test_a_signature_does_not_cover_another_request(central, station):
    archive, address = central
    other = sync_pb2.QueryWriteStatusRequest(station_id="st-test", bundle_id="1" * 64, sha256="0" * 64)
    err = refused(archive, address, signed(station.key), request=other)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_station_cannot_speak_for_another(tmp_path, central, station):
    archive, address = central
    other = register(archive, address, make_station(tmp_path / "other", address, station_id="st-other"))
    err = refused(archive, address, signed(other.key, station_id="st-other"))  # request says st-test
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "claims to be 'st-test'" in err.details()
    other.close()


def test_a_revoked_station_is_refused_at_once(central, station):
    from station.scan import scan

    archive, address = central
    scan(station, {"archive_no": "D-1"}, {"item": "1-1", "title": "t"}, "synthetic:seed=1,sheets=1")
    changes.propose(archive, local_operator("officer"), "revoke_station", {"station_id": station.station_id},
                    "station reported stolen")  # suspended at once, before a second person confirms
    report = sync(station)
    assert "suspended" in report.stopped and "revocation" in report.stopped and not report.rejected
    assert archive.catalogue.query("SELECT * FROM bundles") == []


def test_enrolment_needs_the_operator_to_approve_the_same_code(tmp_path, central):
    archive, address = central
    st = make_station(tmp_path / "new", address, station_id="st-new")
    first = enroll(st, address)
    assert first.state == "pending"
    (waiting,) = stations.pending(archive)
    assert waiting["code"] == first.pairing_code and waiting["station_id"] == "st-new"
    assert first.pairing_code == callauth.pairing_code(archive.public_key, st.public_key)
    stations.approve(archive, first.pairing_code, "unit-b")
    second = enroll(st, address)
    assert (second.state, second.unit) == ("approved", "unit-b")
    assert stations.pending(archive) == []
    assert st.store.get_meta("central_cert") == ssl.DER_cert_to_PEM_cert(
        ssl.PEM_cert_to_DER_cert(archive.tls.cert_pem.decode()))
    st.close()


def test_sync_before_enrolment_says_what_to_do(tmp_path, central):
    from station.errors import NotEnrolledError

    _, address = central
    st = make_station(tmp_path / "fresh", address)
    with pytest.raises(NotEnrolledError, match="quire-station enroll"):
        sync(st)
    st.close()


def test_a_call_replayed_after_the_archive_is_killed_and_restarted_is_refused(tmp_path):
    """The nonce cache outlives the process: kill -9 the archive, start it again, replay a captured call."""
    import signal

    from central import config
    from central.archive import open_archive
    from tests.test_sync_faults import _serve

    home = tmp_path / "central"
    key = nacl.signing.SigningKey.generate()
    archive = open_archive(config.load(home))
    stations.add(archive, "st-test", bytes(key.verify_key).hex(), "unit-a")
    archive.close()
    server, address = _serve(home)
    try:
        metadata = signed(key)
        assert refused(archive, address, metadata).code() == grpc.StatusCode.NOT_FOUND
        server.send_signal(signal.SIGKILL)
        server.wait()
        server, address = _serve(home)
        err = refused(archive, address, metadata)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "replayed call refused" in err.details() and "already used" in err.details()
