"""No stranger, and no silent station, can take every thread of the archive (hostile input, item 1)."""

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from central import audit, capacity, config, profile
from central.archive import open_archive
from central.server import build_server
from quire import refusal
from quire.v1 import sync_pb2, sync_pb2_grpc
from station.scan import scan
from station.sync import sync
from station.transport import open_channel
from tests.conftest import TEST_PROFILE, make_station, register, wait_until, write_test_profile
from tests.netfaults import SilentStream


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


IDLE_S = 3


@pytest.fixture
def busy_archive(tmp_path):
    """A real archive that ends a silent stream after IDLE_S seconds, served on loopback."""
    home = tmp_path / "central"
    write_test_profile(home)
    (home / "central.toml").write_text(f"stream_idle_s = {IDLE_S}\n")
    archive = open_archive(config.load(home))
    profile.set_default(archive, TEST_PROFILE)
    server, port = build_server(archive, "127.0.0.1:0")
    server.start()
    yield archive, f"127.0.0.1:{port}"
    server.stop(None)
    archive.close()


def test_idle_strangers_and_stalled_uploads_cannot_stop_a_stations_sync(tmp_path, busy_archive):
    archive, address = busy_archive
    station = register(archive, address, make_station(tmp_path / "station", address, dpi=150))
    scan(station, {"archive_no": "D-0001"}, {"item": "4-1-2", "title": "学历证明"}, "synthetic:sheets=2")

    silence = SilentStream()
    attacker = grpc.secure_channel(
        address, grpc.ssl_channel_credentials(archive.tls.cert_pem),
        options=[("grpc.ssl_target_name_override", "quire-central")])
    reflections = [reflection_pb2_grpc.ServerReflectionStub(attacker).ServerReflectionInfo(iter(silence))
                   for _ in range(25)]
    watches = [health_pb2_grpc.HealthStub(attacker).Watch(health_pb2.HealthCheckRequest()) for _ in range(25)]
    # Ten signed Write streams from the enrolled station itself that never send a chunk.
    own = open_channel(station, address)
    writes = [own.stream_unary("/quire.v1.StationSync/Write", request_serializer=None,
                               response_deserializer=sync_pb2.WriteResponse.FromString).future(iter(silence))
              for _ in range(10)]
    try:
        time.sleep(1)   # every call has reached the archive and holds what it can
        started = time.monotonic()
        report = sync(station)
        took = time.monotonic() - started
        assert len(report.committed) == 1 and not report.failed and not report.rejected, report
        assert took < 20, f"the sync waited {took:.0f} s behind idle streams"

        # The stalled uploads were ended once silent for IDLE_S, freeing their threads.
        for write in writes:
            with pytest.raises(grpc.RpcError) as ended:
                write.result(timeout=IDLE_S + 10)
            assert ended.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED)
        # Strangers beyond their small share were turned away at once, not queued.
        refused = 0
        for call in watches:
            try:
                next(call)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                refused += 1
        assert refused >= 20
        # The archive still answers a health check of its own.
        check = health_pb2_grpc.HealthStub(attacker).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        silence.released.set()
        for call in [*reflections, *watches]:
            call.cancel()
        attacker.close()
        own.close()
        station.close()


def test_a_station_told_to_wait_for_a_free_upload_slot_is_not_an_audited_refusal(tmp_path):
    """Every upload slot taken is the archive's own back-off: the station hears RESOURCE_EXHAUSTED with the time
    to wait (grpc-retry-pushback-ms) and sends again then; the service log says so, the audit log keeps refusals
    of someone, not turns to wait."""
    home = tmp_path / "central"
    home.mkdir()
    (home / "central.toml").write_text(f"stream_idle_s = {IDLE_S}\nworkers = 4\n")   # two upload slots
    archive = open_archive(config.load(home))
    server, port = build_server(archive, "127.0.0.1:0")
    server.start()
    address = f"127.0.0.1:{port}"
    first = register(archive, address, make_station(tmp_path / "first", address, "st-first"))
    second = register(archive, address, make_station(tmp_path / "second", address, "st-second"))
    silence = SilentStream()
    channels = [open_channel(station, address) for station in (first, second)]

    def write(channel):
        return channel.stream_unary("/quire.v1.StationSync/Write", request_serializer=None,
                                    response_deserializer=sync_pb2.WriteResponse.FromString).future(iter(silence))
    try:
        holding = [write(channels[0]) for _ in range(2)]
        wait_until(lambda: server.uploads_free == 0, "the first station's two streams to hold both slots")
        told = []
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as waited:
                write(channels[1]).result(timeout=10)
            assert waited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "as many uploads as it can (2 at once" in waited.value.details()
            assert refusal.reason_of(waited.value) == refusal.UPLOADS_FULL
            told.append(refusal.pushback_s(waited.value))
        # The archive says when to come back, later for each upload already told to wait: turns, not a stampede.
        assert all(t is not None and 0 < t <= 30 for t in told), told
        assert told[0] < told[1] < told[2], told
        assert f"send it again in {told[2]:.1f} s" in waited.value.details()
        # The first station's third stream at once is refused as before: more than one station's share,
        # with no time named (the station backs off and reconnects as after any refused call).
        with pytest.raises(grpc.RpcError) as refused:
            write(channels[0]).result(timeout=10)
        assert "uploads open" in refused.value.details()
        assert refusal.reason_of(refused.value) == "BUSY" and refusal.pushback_s(refused.value) is None
        silence.released.set()
        for call in holding:
            try:
                call.result(timeout=IDLE_S + 10)
            except grpc.RpcError:
                pass
        reasons = [e["reason"] for e in audit.entries(archive) if e["event"] == "call.refused"]
        assert any("uploads open" in reason for reason in reasons), reasons
        assert not any("as many uploads as it can" in reason for reason in reasons), reasons
    finally:
        silence.released.set()
        for channel in channels:
            channel.close()
        first.close()
        second.close()
        server.stop(None)
        archive.close()


def test_a_default_archive_takes_fourteen_uploads_at_once(tmp_path):
    """16 workers by default, all but two for uploads: at fifty stations this kept PostgreSQL + S3 and SQLite +
    disk alike faster than 8 (bench.scaleout --workers 16 beside the default, four pairs each)."""
    home = tmp_path / "central"
    home.mkdir()
    settings = config.load(home)
    shares = capacity.CapacityInterceptor(settings.workers, settings.open_calls, settings.stream_idle_s)
    try:
        assert shares.upload_slots == 14
    finally:
        shares.close()
