"""A full disk on either side stops cleanly, says so, keeps nothing half-done and recovers."""

import hashlib

import pytest

from central.verify import verify
from station import outbox
from station.errors import StationDiskFull
from station.scan import scan
from station.sync import sync
from tests.conftest import make_station, register


def test_station_disk_full_stops_the_batch_cleanly_and_resumes(small_disk):
    st = make_station(small_disk.path / "st", dpi=300)
    try:
        small_disk.fill(leave_bytes=20_000_000)  # less than one raw 300-dpi page needs in the spool
        with pytest.raises(StationDiskFull) as info:
            scan(st, {"archive_no": "D-F"}, {"item": "1-1", "title": "t"}, "synthetic:seed=2,sheets=3")
        message = str(info.value)
        assert "disk is full" in message and "resume at page" in message
        batch = st.store.batches()[0]
        assert batch["state"] in ("interrupted", "open") and batch["pages"] < 6
        for page in st.store.pages(batch["id"]):  # what was stored is whole
            data = st.store.page_path(page["sha256"], page["media_type"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == page["sha256"]
        assert not any((st.config.pages_dir / "tmp").iterdir()), "temporary files left behind"
        assert not list((st.config.home / "spool").glob("*.tmp")) and not list((st.config.home / "spool").glob(".*.tmp"))
        small_disk.free()
        result = scan(st, {"archive_no": "D-F"}, {"item": "1-1", "title": "t"}, "synthetic:seed=2,sheets=3")
        assert result.first_page == batch["pages"] + 1 and result.bundle_id and result.total_pages == 6
    finally:
        st.close()


def test_archive_disk_full_is_reported_and_the_bundle_retried_later(small_disk, tmp_path):
    from central import config
    from central.archive import open_archive
    from central.server import build_server

    archive = open_archive(config.load(small_disk.path / "central"))
    server, port = build_server(archive, "127.0.0.1:0")
    server.start()
    address = f"127.0.0.1:{port}"
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=300, sync_retry_span_s=0.2,
                                                 backoff_base_s=0.01))
    try:
        scan(st, {"archive_no": "D-G"}, {"item": "2-1", "title": "t"}, "synthetic:seed=5,sheets=2")
        small_disk.fill(leave_bytes=300_000)
        report = sync(st)
        (reason,) = report.failed.values()
        assert "disk is full" in reason
        (bundle,) = outbox.pending(st.store)  # still queued on the station
        assert bundle["last_error"] == reason
        assert archive.catalogue.query("SELECT * FROM materials") == []
        stored = archive.catalogue.query("SELECT sha256 FROM blobs")
        assert all(archive.blobs.rehash(b["sha256"])[0] == b["sha256"] for b in stored)
        small_disk.free()
        assert len(sync(st).committed) == 1
        assert verify(archive).ok
    finally:
        server.stop(None).wait()
        archive.close()
        st.close()


def test_station_disk_full_between_the_sides_of_a_sheet_keeps_neither(small_disk):
    st = make_station(small_disk.path / "st", dpi=300)
    try:
        small_disk.fill(leave_bytes=40_000_000)  # room for one raw 300-dpi side (26 MB), not for both
        with pytest.raises(StationDiskFull) as info:
            scan(st, {"archive_no": "D-H"}, {"item": "1-1", "title": "t"}, "synthetic:seed=2,sheets=2")
        assert "resume at page 1" in str(info.value)
        assert st.store.pages(st.store.batches()[0]["id"]) == []
        assert not list((st.config.home / "spool").glob("*.npy")), "one side of a sheet left in the spool"
        small_disk.free()
        result = scan(st, {"archive_no": "D-H"}, {"item": "1-1", "title": "t"}, "synthetic:seed=2,sheets=2")
        assert result.first_page == 1 and result.total_pages == 4
    finally:
        st.close()
