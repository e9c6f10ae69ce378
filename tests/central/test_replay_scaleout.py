"""Several archive processes on one PostgreSQL share one replay guard: a signed call taken by one is
refused as a replay by every other (on SQLite each home keeps its own nonces.db: test_auth.py)."""

import time
import uuid
from contextlib import ExitStack

import grpc
import nacl.signing
import psycopg
import pytest

from central import config, stations
from central.archive import open_archive
from central.server import build_server
from central.store.postgres import WRITE_LOCK
from tests.central.test_auth import refused, signed


@pytest.fixture
def two_processes(tmp_path, pg_cluster, pg_catalogue_template, s3_server):
    """Two archive homes on one PostgreSQL database and one bucket prefix, each with its own gRPC server,
    as two machines behind a load balancer; yields [(archive, address), (archive, address)] and the URL."""
    url = pg_cluster.create_database(pg_catalogue_template)
    prefix = uuid.uuid4().hex
    with ExitStack() as stack:
        served = []
        for name in ("machine-a", "machine-b"):
            home = tmp_path / name
            home.mkdir()
            s3_server.credentials_file(home / "s3.toml")
            (home / "central.toml").write_text(f'catalogue = "{url}"\nblobs = "s3://{s3_server.bucket}/{prefix}"\n'
                                               'blobs_credentials = "s3.toml"\n')
            archive = open_archive(config.load(home))
            stack.callback(archive.close)
            server, port = build_server(archive, "127.0.0.1:0")
            server.start()
            stack.callback(lambda s=server: s.stop(grace=None).wait())
            served.append((archive, f"127.0.0.1:{port}"))
        yield served, url


def test_a_call_taken_by_one_process_is_refused_as_a_replay_by_another(two_processes):
    (first, first_address), (second, second_address) = two_processes[0]
    key = nacl.signing.SigningKey.generate()
    stations.add(first, "st-test", bytes(key.verify_key).hex(), "unit-a")
    metadata = signed(key)
    assert refused(first, first_address, metadata).code() == grpc.StatusCode.NOT_FOUND  # taken: bundle unknown
    err = refused(second, second_address, metadata)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "replayed call refused" in err.details() and "already used" in err.details()
    # ... and a fresh call by the same station is still served by either process
    assert refused(second, second_address, signed(key)).code() == grpc.StatusCode.NOT_FOUND


def test_a_signed_call_does_not_wait_for_the_catalogue_writer(two_processes):
    """Recording a call's nonce takes no part in the archive's single-writer lock: while a long write holds
    that lock, a station's signed call is still authenticated and answered (before the 10 s call deadline)."""
    first, _ = two_processes[0][0]
    key = nacl.signing.SigningKey.generate()
    stations.add(first, "st-test", bytes(key.verify_key).hex(), "unit-a")
    with psycopg.connect(two_processes[1]) as writer, writer.transaction():
        writer.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        for archive, address in two_processes[0]:
            assert refused(archive, address, signed(key)).code() == grpc.StatusCode.NOT_FOUND


def test_a_refused_call_is_refused_at_once_while_another_connection_holds_the_writer_lock(two_processes):
    """A forged, replayed or revoked station's call is answered with its reason while a long write holds the
    archive's writer lock on another connection (its refusal is not held up by the audit log); the refusals
    reach the audit log once the lock is free. A good call's nonce is still recorded: its replay on the other
    process is refused."""
    (first, first_address), (second, second_address) = two_processes[0]
    key, gone = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    stations.add(first, "st-test", bytes(key.verify_key).hex(), "unit-a")
    stations.add(first, "st-gone", bytes(gone.verify_key).hex(), "unit-a")
    with first.catalogue.transaction() as db:
        stations.revoke(db, first, "st-gone", "test", 0)
    before = _refusals_logged(first)
    with psycopg.connect(two_processes[1]) as writer, writer.transaction():
        writer.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        taken = signed(key)
        assert refused(first, first_address, taken).code() == grpc.StatusCode.NOT_FOUND   # a good call goes through
        answers = [refused(second, second_address, taken),                          # ... and its replay elsewhere
                   refused(first, first_address, signed(nacl.signing.SigningKey.generate())),   # forged
                   refused(second, second_address, signed(gone, station_id="st-gone"))]        # revoked
        told = [(grpc.StatusCode.UNAUTHENTICATED, "replayed call refused"),
                (grpc.StatusCode.UNAUTHENTICATED, "not registered with this archive under the key"),
                (grpc.StatusCode.PERMISSION_DENIED, "was revoked at")]
        for answer, (code, reason) in zip(answers, told):
            assert answer.code() == code and reason in answer.details(), (reason, answer.code(), answer.details())
        assert _refusals_logged(first) == before   # not yet: the writer holds the log
    deadline = time.monotonic() + 30
    while _refusals_logged(first) < before + 3:
        assert time.monotonic() < deadline, "the refusals never reached the audit log"
        time.sleep(0.05)


def _refusals_logged(archive) -> int:
    return archive.catalogue.one("SELECT COUNT(*) AS n FROM audit_entries WHERE event = 'call.refused'")["n"]


def test_the_shared_guard_forgets_nonces_past_the_clock_window_only(two_processes):
    """Old nonces are pruned from the shared table, recent ones kept (a replay inside the window is refused)."""
    from central.store.nonces import SharedNonces

    (first, _), (second, _) = two_processes[0]
    now_ms = 10_000_000_000
    old = SharedNonces(first.catalogue, "station", window_ms=1000, prune_every_s=3600)
    assert old.first_use("st-x", "n-old", now_ms - 5000, now_ms - 5000) is None
    assert old.first_use("st-x", "n-new", now_ms - 10, now_ms - 10) is None
    other = SharedNonces(second.catalogue, "station", window_ms=1000, prune_every_s=3600)
    assert other.first_use("st-x", "n-new", now_ms, now_ms) == now_ms - 10   # prunes first, then refuses
    assert other.first_use("st-x", "n-old", now_ms, now_ms) is None          # pruned: past the window
