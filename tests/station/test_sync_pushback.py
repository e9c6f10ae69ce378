"""An archive whose upload slots are all taken tells the station how long to wait; the station waits and sends
the same upload again on the same connection, without offering the bundle again. A station over its own share
of uploads is handled as before: a fresh connection and a new offer."""

import threading
from types import SimpleNamespace

import pytest

from central import config, ingest, profile
from central.archive import open_archive
from central.server import build_server
from central.verify import verify
from quire.v1 import sync_pb2
from station.scan import scan
from station.sync import MIN_TURN_WAIT_S, _Backoff, sync
from station.transport import open_channel
from tests.conftest import TEST_PROFILE, make_station, register, use_blob_kind, wait_until, write_test_profile
from tests.netfaults import FaultyProxy, SilentStream
from tests.test_sync_faults import central_pages, station_pages


@pytest.fixture(params=["disk", "scaled"])
def blob_kind(request):
    """Every archive here runs on both kinds of storage: embedded (SQLite, disk) and scaled (PostgreSQL, S3)."""
    return request.param


@pytest.fixture
def serve(tmp_path, blob_kind, request):
    """Serve a real archive on loopback with ``workers`` gRPC threads (all but two take uploads)."""
    started = []

    def start(workers: int):
        home = tmp_path / "central"
        write_test_profile(home)
        use_blob_kind(home, blob_kind, request)
        with open(home / "central.toml", "a") as toml:
            toml.write(f"workers = {workers}\n")
        archive = open_archive(config.load(home))
        profile.set_default(archive, TEST_PROFILE)
        server, port = build_server(archive, "127.0.0.1:0")
        server.start()
        started.append((server, archive))
        return archive, server, f"127.0.0.1:{port}"

    yield start
    for server, archive in started:
        server.stop(None)
        archive.close()


def _hold_slots(station, server, address: str, silence: SilentStream, n: int):
    """``n`` signed Write streams of ``station`` that hold an upload slot each until ``silence`` is released."""
    free = server.uploads_free
    channel = open_channel(station, address)
    write = channel.stream_unary("/quire.v1.StationSync/Write", request_serializer=None,
                                 response_deserializer=sync_pb2.WriteResponse.FromString)
    calls = [write.future(iter(silence)) for _ in range(n)]
    wait_until(lambda: server.uploads_free == free - n, f"{n} streams to hold an upload slot each")
    return channel, calls


def _end(channel, calls) -> None:
    for call in calls:
        call.cancel()
    channel.close()


@pytest.fixture
def offers(monkeypatch):
    """How many Offer calls the archive served."""
    counted = [0]
    real = ingest.offer

    def counting(*args, **kw):
        counted[0] += 1
        return real(*args, **kw)

    monkeypatch.setattr(ingest, "offer", counting)
    return counted


def test_a_full_archive_makes_the_station_wait_and_resume_on_the_same_connection(tmp_path, serve, offers):
    archive, server, address = serve(workers=3)   # one upload slot
    holder = register(archive, address, make_station(tmp_path / "holder", address, "st-holder"))
    st = register(archive, address, make_station(tmp_path / "st", address, "st-waits", dpi=150))
    scan(st, {"archive_no": "D-70"}, {"item": "1-1", "title": "t"}, "synthetic:seed=3,sheets=2")
    silence = SilentStream()
    channel, calls = _hold_slots(holder, server, address, silence, 1)
    release = threading.Timer(2.5, silence.released.set)
    proxy = FaultyProxy(address)   # counts the station's connections
    try:
        release.start()
        report = sync(st, proxy.address)
        assert report.committed and not report.failed and not report.rejected, report
        assert report.waits >= 1, "the station should have found every upload slot taken"
        assert proxy.connections == 1, f"the station reconnected: {proxy.connections} connections"
        assert offers[0] == 1, f"the bundle was offered {offers[0]} times"
        assert central_pages(archive) == station_pages(st)   # every page once, none missing
        assert verify(archive).ok
    finally:
        release.cancel()
        silence.released.set()
        _end(channel, calls)
        proxy.close()
        holder.close()
        st.close()


def test_a_station_over_its_own_share_of_uploads_reconnects_and_offers_again_as_before(tmp_path, serve, offers):
    archive, server, address = serve(workers=4)   # two upload slots, both held by the station's own streams
    st = register(archive, address, make_station(tmp_path / "st", address, "st-share", dpi=150))
    scan(st, {"archive_no": "D-71"}, {"item": "1-1", "title": "t"}, "synthetic:seed=4,sheets=2")
    silence = SilentStream()
    channel, calls = _hold_slots(st, server, address, silence, 2)
    release = threading.Timer(1.5, silence.released.set)
    proxy = FaultyProxy(address)
    try:
        release.start()
        report = sync(st, proxy.address)
        assert report.committed and not report.failed and not report.rejected, report
        assert report.retries >= 1 and report.waits == 0, report
        assert proxy.connections >= 2 and offers[0] >= 2, (proxy.connections, offers[0])
        assert central_pages(archive) == station_pages(st)
    finally:
        release.cancel()
        silence.released.set()
        _end(channel, calls)
        proxy.close()
        st.close()


def test_the_station_waits_as_long_as_the_archive_says_within_its_own_bounds():
    """Told 2 s: it waits 1.5-2.5 s, not always the same (stations told alike do not come back together);
    told longer than its longest back-off, that back-off; no wait once the retry span is used up."""
    now, slept = [0.0], []

    def sleep(s):
        slept.append(s)
        now[0] += s

    cfg = SimpleNamespace(sync_retry_span_s=30.0, backoff_base_s=0.5, backoff_max_s=5.0)
    backoff = _Backoff(cfg, sleep, clock=lambda: now[0])
    for _ in range(10):
        assert backoff.wait_turn(2.0)
    assert all(1.5 <= s <= 2.5 for s in slept) and len(set(slept)) > 1, slept
    assert backoff.wait_turn(600.0) and slept[-1] == 5.0
    told_nothing = len(slept)
    assert backoff.wait_turn(0.0) and slept[-1] >= 0.75 * MIN_TURN_WAIT_S   # a zero from a proxy does not spin
    while backoff.wait_turn(2.0):
        pass
    assert now[0] == pytest.approx(30.0) and len(slept) > told_nothing
