"""What a stranger sends the archive is bounded and answered plainly (hostile input, items 2-4): an
enrolment flood is refused and logged, malformed input is INVALID_ARGUMENT without a traceback, and
which station ids exist cannot be probed."""

import subprocess
import sys
import time
from pathlib import Path

import grpc
import nacl.signing
import pytest

from central import audit, config, limits, stations
from central.archive import open_archive
from quire import callauth, keys, refusal
from quire.db import utcnow
from quire.v1 import access_pb2, sync_pb2, sync_pb2_grpc
from station.transport import TLS_NAME
from tests.central.test_auth import raw_call, signed
from tests.conftest import run_cli


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every test here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


ENROLL = "/quire.v1.StationSync/Enroll"


def _channel(archive, address) -> grpc.Channel:
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(archive.tls.cert_pem),
                               options=[("grpc.ssl_target_name_override", TLS_NAME)])


def _enrol_request(station_id: str, hostname: str, key=None, public_key: bytes | None = None):
    key = key or nacl.signing.SigningKey.generate()
    public_key = bytes(key.verify_key) if public_key is None else public_key
    time_ms = int(time.time() * 1000)
    payload = callauth.enrol_payload(station_id, public_key, hostname, time_ms)
    return sync_pb2.EnrollRequest(station_id=station_id, public_key=public_key, hostname=hostname, time_ms=time_ms,
                                  signature=keys.sign(key, keys.ENROL_CONTEXT, payload))


def _enrol(channel, request) -> grpc.RpcError | sync_pb2.EnrollResponse:
    try:
        return sync_pb2_grpc.StationSyncStub(channel).Enroll(request, timeout=30)
    except grpc.RpcError as exc:
        return exc


def _home_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.rglob("*") if p.is_file())


def test_an_enrolment_flood_with_huge_hostnames_is_refused_and_the_home_stays_small(central):
    archive, address = central
    home = archive.config.home
    before = _home_bytes(home)
    with _channel(archive, address) as channel:
        answers = [_enrol(channel, _enrol_request(f"st-flood-{i}", "h" * (4 << 20))) for i in range(25)]
        long_name = _enrol(channel, _enrol_request("st-long", "h" * 254))
    assert all(isinstance(a, grpc.RpcError) and a.code() == grpc.StatusCode.INVALID_ARGUMENT for a in answers)
    assert "the request is 4194" in answers[0].details() and "at most 1024" in answers[0].details()
    assert long_name.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "hostname is 254 bytes, at most 253" in long_name.details()
    assert _home_bytes(home) - before < 1 << 20
    assert stations.pending(archive) == []
    refused = [e for e in audit.entries(archive) if e["event"] == "call.refused" and e["method"] == ENROLL]
    assert refused and all(len(e["reason"]) < 500 for e in refused)


def test_pending_enrolments_are_bounded_per_address_and_logged(central):
    archive, address = central
    with _channel(archive, address) as channel:
        answers = [_enrol(channel, _enrol_request(f"st-new-{i}", f"pi-{i}.local")) for i in range(25)]
    accepted = [a for a in answers if isinstance(a, sync_pb2.EnrollResponse)]
    assert len(accepted) == stations.PENDING_PER_SOURCE
    refused = answers[len(accepted):]
    assert all(a.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for a in refused)
    assert "waiting for approval from this address" in refused[0].details()
    asked = [e for e in audit.entries(archive) if e["event"] == "station.enrol_request"]
    assert [(e["station_id"], e["hostname"]) for e in asked] == [(f"st-new-{i}", f"pi-{i}.local")
                                                                  for i in range(stations.PENDING_PER_SOURCE)]
    assert all(e["by"].startswith("peer:ipv4:127.0.0.1") for e in asked)


def test_stations_pending_stays_readable_whatever_is_pending(archive):
    # Rows an archive accepted before its requests were bounded: huge and with terminal escapes.
    with archive.catalogue.transaction() as db:
        for i in range(300):
            db.execute("INSERT INTO enrolments VALUES (?, ?, ?, ?, ?)",
                       [f"{i:04d}-0000", f"st-{i}", bytes(32 - len(str(i))) + str(i).encode(),
                        "\x1b[2J" + "h" * ((4 << 20) if i < 3 else 10), utcnow()])
    out = run_cli("quire-central", "--home", archive.config.home, "stations", "pending").stdout
    assert len(out) < 40_000
    assert "\x1b" not in out and "\\x1b[2J" in out
    assert "and 200 more" in out


def test_a_bad_station_id_or_key_at_enrolment_is_invalid_argument(central):
    archive, address = central
    with _channel(archive, address) as channel:
        bad_id = _enrol(channel, _enrol_request("../etc passwd", "pi.local"))
        short_key = _enrol(channel, _enrol_request("st-ok", "pi.local", public_key=bytes(31)))
        huge_time = _enrol(channel, sync_pb2.EnrollRequest(station_id="st-ok", public_key=bytes(32), hostname="pi",
                                                           time_ms=10**18, signature=bytes(64)))
    assert bad_id.code() == grpc.StatusCode.INVALID_ARGUMENT and "station_id" in bad_id.details()
    assert short_key.code() == grpc.StatusCode.INVALID_ARGUMENT and "public_key is 31 bytes, not 32" in short_key.details()
    assert huge_time.code() == grpc.StatusCode.INVALID_ARGUMENT and "time_ms" in huge_time.details()


def test_unknown_station_and_wrong_key_are_answered_alike_and_logged_apart(central, station):
    archive, address = central
    stranger = nacl.signing.SigningKey.generate()
    unknown = _refused(archive, address, signed(stranger, station_id="st-ghost"))
    wrong_key = _refused(archive, address, signed(stranger, station_id="st-test"))
    assert unknown.code() == wrong_key.code()
    assert unknown.details().replace("st-ghost", "ID") == wrong_key.details().replace("st-test", "ID")
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED and "quire-station enroll" in unknown.details()
    assert refusal.scope_of(unknown) == refusal.scope_of(wrong_key) == "caller"
    reasons = [e["reason"] for e in audit.entries(archive) if e["event"] == "call.refused"]
    assert "station 'st-ghost' is not registered" in reasons[-2] and "signature does not verify" in reasons[-1]


def _refused(archive, address, metadata) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        raw_call(archive, address, metadata)
    return info.value


def test_every_field_of_every_request_has_a_declared_bound():
    requests = [m.input_type for service in (sync_pb2.DESCRIPTOR.services_by_name["StationSync"],
                                             access_pb2.DESCRIPTOR.services_by_name["ArchiveAccess"])
                for m in service.methods]
    for message in requests:
        declared = limits.REQUESTS[message.full_name].fields
        assert set(declared) == {f.name for f in message.fields}, message.full_name


# ---- through `quire-central serve`, whose log is what an administrator reads ---------------------

@pytest.fixture
def served(tmp_path):
    """A `quire-central serve` process on loopback; yields (archive, address, stderr reader)."""
    home = tmp_path / "central"
    open_archive(config.load(home)).close()
    exe = Path(sys.executable).parent / "quire-central"
    proc = subprocess.Popen([str(exe), "--home", str(home), "serve", "--listen", "127.0.0.1:0", "--no-advertise"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    archive = open_archive(config.load(home))
    log: list[str] = []

    def stop() -> str:
        proc.terminate()
        log.append(proc.communicate(timeout=30)[1])
        return log[0]

    try:
        yield archive, proc.stdout.readline().strip().removeprefix("listening on "), stop
    finally:
        if not log:
            stop()
        archive.close()


def test_a_time_header_of_4000_digits_is_invalid_argument_without_a_traceback(served):
    archive, address, stop = served
    stranger = nacl.signing.SigningKey.generate()
    stations.add(archive, "st-test", bytes(stranger.verify_key).hex(), "unit-a")  # so the time is read
    metadata = [(k, "9" * 4000 if k == callauth.HEADER_TIME else v)
                for k, v in signed(stranger)]
    err = _refused(archive, address, metadata)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert callauth.HEADER_TIME in err.details() and "\n" not in err.details()
    log = stop()
    assert "Traceback" not in log and "incident" not in log


def test_undecodable_requests_are_invalid_argument_and_logged_a_bounded_number_of_times(served):
    archive, address, stop = served
    garbage = b"\xff\xff\xff\xff"
    methods = ["Enroll", "GetInfo", "Offer", "QueryWriteStatus", "Commit", "Notices"]
    codes = []
    with _channel(archive, address) as channel:
        for i in range(148):
            name = methods[i % len(methods)]
            call = channel.unary_unary(f"/quire.v1.StationSync/{name}")
            if i % 10 == 9:
                call = channel.stream_unary("/quire.v1.StationSync/Write")
                garbage_in = iter([garbage])
            try:
                call(garbage_in if i % 10 == 9 else garbage, timeout=10)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                assert "\n" not in exc.details()
    # An unsigned upload stream is refused by authentication before its first message is read.
    assert set(codes[i] for i in range(148) if i % 10 != 9) == {grpc.StatusCode.INVALID_ARGUMENT}
    assert set(codes[9::10]) == {grpc.StatusCode.UNAUTHENTICATED}
    lines = stop().splitlines()
    assert len(lines) < 30 and not any("Traceback" in line for line in lines), "\n".join(lines[:40])
    assert any("not a valid" in line for line in lines)
