"""One call at a time writes a page's partial upload: a second call for the same page (a station
reconnecting while the archive still writes its cut stream) neither writes the same bytes again nor
races the first; it is told to resume, and resumes where the first call ended."""

import json
import subprocess
import sys
import textwrap
import threading
import time

import google_crc32c
import grpc
import pytest

from central import config as central_config
from central.archive import open_blobs
from central.errors import ConfigError, WrongOffset
from quire import manifest as manifest_format
from quire.v1 import sync_pb2, sync_pb2_grpc
from station import outbox
from station.scan import scan
from station.transport import open_channel

CHUNK = 64 << 10


@pytest.fixture
def station_dpi() -> int:
    """Pages at 300 dpi: a page offered here must be more than eight chunks long."""
    return 300


def _offered_page(station, address):
    """Scan one sheet and offer its bundle; (bundle id, a missing page's sha256, its bytes)."""
    scan(station, {"archive_no": "D-LOCK"}, {"item": "1-1", "title": "t"}, "synthetic:seed=3,sheets=1")
    (bundle,) = outbox.pending(station.store)
    with open_channel(station, address) as ch:
        offer = sync_pb2_grpc.StationSyncStub(ch).Offer(sync_pb2.OfferRequest(
            station_id=station.station_id, manifest=bundle["manifest"], signature=bundle["signature"]), timeout=30)
    pages = {p["sha256"]: p for p in manifest_format.blobs(json.loads(bundle["manifest"]))}
    sha = max(offer.missing_sha256, key=lambda s: pages[s]["bytes"])
    data = station.store.page_path(sha, pages[sha]["media_type"]).read_bytes()
    assert len(data) > 8 * CHUNK
    return offer.bundle_id, sha, data


def _requests(station, bundle_id, sha, data, start, stop, finish, gate=None):
    """A Write stream of ``data[start:stop]``; with ``gate``, it waits there before ending (a stream
    still open: its call still holds the page)."""
    for at in range(start, stop, CHUNK):
        piece = data[at:min(at + CHUNK, stop)]
        msg = sync_pb2.WriteRequest(write_offset=at, data=piece, data_crc32c=google_crc32c.value(piece),
                                    finish_write=finish and at + len(piece) >= stop)
        if at == start:
            msg.station_id, msg.bundle_id, msg.sha256 = station.station_id, bundle_id, sha
        yield msg
    if gate is not None:
        gate.wait(60)


def _status(stub, station, bundle_id, sha):
    return stub.QueryWriteStatus(sync_pb2.QueryWriteStatusRequest(
        station_id=station.station_id, bundle_id=bundle_id, sha256=sha), timeout=30)


def _partial(archive, station, sha):
    return archive.blobs.uploads / f"{sha}.{station.station_id}.part"


def _until(condition, what):
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def test_a_second_write_while_the_first_still_writes_is_told_to_resume_and_resumes_from_its_end(central, station):
    archive, address = central
    archive.blobs.lock_wait_s = 0.2
    bundle_id, sha, data = _offered_page(station, address)
    half = (len(data) // 2 // CHUNK) * CHUNK
    gate, answers = threading.Event(), {}
    with open_channel(station, address) as ch:
        stub = sync_pb2_grpc.StationSyncStub(ch)
        first = threading.Thread(target=lambda: answers.update(first=stub.Write(
            _requests(station, bundle_id, sha, data, 0, half, finish=False, gate=gate), timeout=60)))
        first.start()
        try:
            _until(lambda: _partial(archive, station, sha).exists()
                   and _partial(archive, station, sha).stat().st_size == half, "the first call wrote half the page")
            # The first call still holds the page: its resume point is not told, nor a second writer let in.
            with pytest.raises(grpc.RpcError) as asked:
                _status(stub, station, bundle_id, sha)
            with pytest.raises(grpc.RpcError) as wrote:
                stub.Write(_requests(station, bundle_id, sha, data, half, len(data), finish=True), timeout=60)
        finally:
            gate.set()
            first.join()
        for refused in (asked.value, wrote.value):
            assert refused.code() == grpc.StatusCode.OUT_OF_RANGE   # what the station retries
            assert "another call is still writing this page" in refused.details()
        assert answers["first"].committed_size == half and not answers["first"].complete
        resume = _status(stub, station, bundle_id, sha)
        assert (resume.committed_size, resume.complete) == (half, False)
        second = stub.Write(_requests(station, bundle_id, sha, data, resume.committed_size, len(data), finish=True),
                            timeout=60)
    assert second.complete and list(second.completed_sha256) == [sha]
    with archive.blobs.open(sha) as fh:
        assert fh.read() == data
    assert not _partial(archive, station, sha).exists()


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from central.store.blobs import DiskBlobStore
    blobs, uploads, station_id, sha, limit, first = sys.argv[1:]
    upload = DiskBlobStore(Path(blobs), Path(uploads)).open_upload(station_id, sha, int(limit))
    upload.append(0, Path(first).read_bytes())
    upload.sync()
    print("holding", flush=True)
    time.sleep(600)
""")


def test_a_writer_killed_while_holding_a_page_lets_the_next_call_resume_it(central, station, tmp_path):
    archive, address = central
    bundle_id, sha, data = _offered_page(station, address)
    (tmp_path / "first").write_bytes(data[:CHUNK])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(archive.blobs.files.root), str(archive.blobs.uploads),
                               station.station_id, sha, str(len(data)), str(tmp_path / "first")],
                              stdout=subprocess.PIPE, text=True)
    # Another serve process on this home, whose operator set a shorter wait in central.toml.
    toml = archive.config.home / "central.toml"
    toml.write_text((toml.read_text() if toml.exists() else "") + "upload_lock_wait_s = 0.2\n")
    waiting = open_blobs(central_config.load(archive.config.home))
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(WrongOffset, match="another call is still writing this page after 0.2 s"):
            waiting.open_upload(station.station_id, sha, len(data))
    finally:
        waiting.close()
        holder.kill()   # SIGKILL: no cleanup runs in the holder
        holder.wait()
        holder.stdout.close()
    with open_channel(station, address) as ch:
        stub = sync_pb2_grpc.StationSyncStub(ch)
        resume = _status(stub, station, bundle_id, sha)
        assert (resume.committed_size, resume.complete) == (CHUNK, False)
        done = stub.Write(_requests(station, bundle_id, sha, data, CHUNK, len(data), finish=True), timeout=60)
    assert done.complete
    with archive.blobs.open(sha) as fh:
        assert fh.read() == data


@pytest.mark.parametrize("value", ["0", "-1", "601", '"ten"'])
def test_an_upload_lock_wait_out_of_range_is_refused_naming_the_setting(tmp_path, value):
    (tmp_path / "central.toml").write_text(f"upload_lock_wait_s = {value}\n")
    with pytest.raises(ConfigError, match="upload_lock_wait_s: must be") as refused:
        central_config.load(tmp_path)
    assert str(tmp_path / "central.toml") in str(refused.value)
