"""Sync that survives broken networks, killed processes and a restarted archive: nothing lost,
nothing duplicated, nothing stored corrupt."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from central.verify import verify
from station import outbox
from station.scan import scan
from station.sync import sync
from tests.conftest import cli_in_process, make_station, register, run_cli
from tests.netfaults import FaultyProxy


def station_pages(st) -> dict:
    """(archive_no, item) → [(n, sha256)] for every sealed batch of a station."""
    out = {}
    for batch in st.store.batches("sealed"):
        out[(batch["archive_no"], batch["item"])] = [(p["n"], p["sha256"]) for p in st.store.pages(batch["id"])]
    return out


def central_pages(archive) -> dict:
    out = {}
    for m in archive.catalogue.query("SELECT id, archive_no, item FROM materials"):
        rows = archive.catalogue.query("SELECT n, sha256 FROM pages WHERE material_id = ? ORDER BY n", [m["id"]])
        out[(m["archive_no"], m["item"])] = [(r["n"], r["sha256"]) for r in rows]
    return out


@pytest.fixture
def flaky_station(tmp_path, central):
    archive, address = central
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=200, sync_timeout_s=3.0,
                                                 backoff_base_s=0.05, backoff_max_s=0.2,
                                                 chunk_bytes=16384))
    for n, item in enumerate(("1-1", "4-1-2", "9-2-1"), 1):
        scan(st, {"archive_no": "D-50"}, {"item": item, "title": "t"}, f"synthetic:seed={n},sheets=2")
    yield st
    st.close()


def test_connections_cut_at_random_points_still_deliver_everything(central, flaky_station):
    archive, address = central
    proxy = FaultyProxy(address, cut_after=(2_000, 300_000), seed=7, max_faults=12)
    try:
        report = sync(flaky_station, proxy.address, sleep=lambda s: None)
    finally:
        proxy.close()
    assert proxy.cuts >= 5, "the proxy should have cut several uploads"
    assert len(report.committed) == 3 and report.retries >= proxy.cuts - 1
    assert central_pages(archive) == station_pages(flaky_station)
    assert verify(archive).ok
    assert not any(archive.config.uploads_dir.iterdir()), "partial uploads left behind"


def test_a_stalled_connection_times_out_and_the_upload_resumes(central, flaky_station):
    archive, address = central
    proxy = FaultyProxy(address, stall_after=(50_000, 200_000), seed=3, max_faults=2)
    try:
        report = sync(flaky_station, proxy.address, sleep=lambda s: None)
    finally:
        proxy.close()
    assert proxy.stalls == 2
    assert len(report.committed) == 3
    assert central_pages(archive) == station_pages(flaky_station) and verify(archive).ok


def test_a_cut_upload_leaves_no_error_in_the_archive_log(central, flaky_station, caplog):
    """A station that goes away mid-upload is routine for the archive, not an incident."""
    import logging

    archive, address = central
    caplog.set_level(logging.INFO)
    proxy = FaultyProxy(address, cut_after=(20_000, 200_000), seed=11, max_faults=4)
    try:
        report = sync(flaky_station, proxy.address, sleep=lambda s: None)
    finally:
        proxy.close()
    assert proxy.cuts == 4 and len(report.committed) == 3
    assert any("caller disconnected" in r.getMessage() for r in caplog.records), "no upload was cut mid-stream"
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == []


@pytest.mark.parametrize("stored", [False, True], ids=["refused-before-storing", "answer-lost-after-storing"])
def test_a_commit_that_fails_is_delivered_again(central, flaky_station, monkeypatch, stored):
    """A Commit answered with a failure — the archive down before it stored the bundle, or gone after
    storing it — is followed by the bundle offered and committed again: every bundle arrives once,
    in order, and the receipts still witness one log."""
    from central import ingest
    from central.errors import CentralError

    class Unavailable(CentralError):
        code = grpc.StatusCode.UNAVAILABLE

    archive, address = central
    commit, calls = ingest.commit, []

    def first_commit_fails(*args):
        calls.append(args[-1])
        if len(calls) == 1:
            if stored:
                commit(*args)
            raise Unavailable("archive restarting")
        return commit(*args)

    monkeypatch.setattr(ingest, "commit", first_commit_fails)
    queued = [bundle["id"] for bundle in outbox.pending(flaky_station.store)]
    report = sync(flaky_station, address, sleep=lambda s: None)
    assert report.committed == queued and report.failed == {} and report.alarms == []
    assert report.retries == 1
    assert central_pages(archive) == station_pages(flaky_station) and verify(archive).ok
    assert outbox.pending(flaky_station.store) == []


def _serve(home: Path, port: int = 0) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).parent / "quire-central"
    proc = subprocess.Popen([str(exe), "--home", str(home), "serve", "--listen", f"127.0.0.1:{port}",
                             "--no-advertise"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return proc, line.removeprefix("listening on ")


def _pages_stored(home: Path, item: str) -> int:
    """Pages of the batch for `item` the station has stored, read from outside the process; -1 before it exists."""
    import sqlite3

    db = home / "station.db"
    if not db.exists():
        return -1
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT id FROM batches WHERE archive_no = 'D-K' AND item = ?", [item]).fetchone()
        if row is None:
            return -1
        return conn.execute("SELECT count(*) FROM pages WHERE batch_id = ?", [row[0]]).fetchone()[0]
    finally:
        conn.close()


def test_kill_minus_nine_during_scan_and_sync_loses_and_duplicates_nothing(tmp_path):
    """20 trials: the station process is killed at random moments while scanning or syncing. (What the
    operator does between kills — status, the scan again, the last sync — runs in this process.)"""
    from central import config
    from central.archive import open_archive

    central_home = tmp_path / "central"
    # Pages at 150 dpi (a quarter of the default's bytes and pixels): what is killed matters here, not the image.
    (central_home / "profiles").mkdir(parents=True)
    (central_home / "profiles" / "tests-150dpi.toml").write_text(
        'format = "quire.profile/1"\nname = "tests-150dpi"\nversion = 1\nextends = "gbt33870"\n'
        'title = "gbt33870 at 150 dpi, for fast tests"\n[resolution]\nmin_dpi = 150\n')
    cli_in_process("quire-central", "--home", central_home, "init")
    cli_in_process("quire-central", "--home", central_home, "profiles", "default", "tests-150dpi")
    server, address = _serve(central_home)
    proxy = FaultyProxy(address, rate_bytes_s=1_000_000)  # slow enough for kills to land mid-upload
    home = tmp_path / "st"
    home.mkdir()
    (home / "station.toml").write_text("dpi = 150\nchunk_bytes = 32768\nsync_timeout_s = 5.0\n"
                                       "backoff_base_s = 0.05\nbackoff_max_s = 0.2\n")
    st = ["--home", home]
    rng = random.Random(20261121)
    killed = {"scan": 0, "sync": 0}
    try:
        key = cli_in_process("quire-station", *st, "init", "--id", "st-kill").stdout.split("--key ")[1].split()[0]
        cli_in_process("quire-central", "--home", central_home, "stations", "add", "st-kill", "--key", key, "--unit", "u")
        cli_in_process("quire-station", *st, "enroll", "--central", address)
        exe = str(Path(sys.executable).parent / "quire-station")
        for trial in range(20):
            item = f"1-{trial // 2 + 1}"
            if trial % 2 == 0:
                args = [exe, "--home", str(home), "scan", "--dossier", "D-K", "--material", item, "--title", "t",
                        "--source", f"synthetic:seed={trial},sheets=2"]
            else:
                args = [exe, "--home", str(home), "sync", "--central", proxy.address]
            sent_before = proxy.upstream_bytes
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # The kill lands at a random point of observed progress, not at a guessed time: while
            # scanning, once a random number of this batch's pages (0-3 of 4) is stored; while syncing,
            # once the proxy has forwarded a random number of bytes.
            if trial % 2 == 0:
                want = rng.randint(0, 3)
                progressed = lambda: _pages_stored(home, item) >= want  # noqa: E731
            else:
                want = rng.randint(5_000, 375_000)
                progressed = lambda: proxy.upstream_bytes - sent_before >= want  # noqa: E731
            deadline = time.monotonic() + 60
            while proc.poll() is None and not progressed() and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.2))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                killed["scan" if trial % 2 == 0 else "sync"] += 1
            proc.wait()
            status = json.loads(cli_in_process("quire-station", *st, "status", "--json").stdout)
            if any(b["item"] == item for b in status["batches_open"]):
                # status shows the batch open: the operator runs the same scan again, and it resumes
                cli_in_process("quire-station", *st, "scan", "--dossier", "D-K", "--material", item, "--title", "t",
                        "--source", f"synthetic:seed={trial + 100},sheets=2")
        cli_in_process("quire-station", *st, "sync", "--central", address)
    finally:
        proxy.close()
        server.terminate()
        server.wait(timeout=30)
    assert killed["scan"] >= 8 and killed["sync"] >= 5, killed

    from station import config as station_config
    from station.home import open_station

    station = open_station(station_config.load(home))
    archive = open_archive(config.load(central_home))
    try:
        expected = station_pages(station)
        assert len(expected) == 10
        for pages in expected.values():
            assert [n for n, _ in pages] == list(range(1, len(pages) + 1))  # no gap, no duplicate
        assert central_pages(archive) == expected
        assert all(b["state"] == "committed" for b in outbox.bundles(station.store))
        report = verify(archive)
        assert report.ok, report.problems
    finally:
        station.close()
        archive.close()


def test_archive_restarted_mid_upload_resumes_from_its_committed_offset(tmp_path):
    from central import config
    from central.archive import open_archive

    central_home = tmp_path / "central"
    server, address = _serve(central_home)
    port = int(address.rsplit(":", 1)[1])
    proxy = FaultyProxy(address, rate_bytes_s=300_000)
    home = tmp_path / "st"
    st = make_station(home, station_id="st-restart", dpi=300, sync_timeout_s=5.0, backoff_base_s=0.2,
                      backoff_max_s=0.5, chunk_bytes=65536)
    try:
        run_cli("quire-central", "--home", central_home, "stations", "add", "st-restart", "--key",
                st.public_key.hex(), "--unit", "u")
        from station.enrol import enroll

        enroll(st, address)
        scan(st, {"archive_no": "D-R"}, {"item": "2-1", "title": "t"}, "synthetic:seed=4,sheets=2")
        sync_proc = subprocess.Popen([str(Path(sys.executable).parent / "quire-station"), "--home", str(home),
                                      "sync", "--central", proxy.address], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while proxy.upstream_bytes < 1_200_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sync_proc.poll() is None, "the upload finished before the archive could be killed"
        server.send_signal(signal.SIGKILL)  # the archive dies mid-upload
        server.wait()
        server, _ = _serve(central_home, port)  # and comes back on the same port
        out, _ = sync_proc.communicate(timeout=120)
        assert sync_proc.returncode == 0, out
        assert "committed 1 bundle(s)" in out
        total = sum(p["bytes"] for p in st.store.pages(st.store.batches()[0]["id"]))
        sent = int(re.search(r"(\d+) bytes sent", out).group(1))
        assert sent < 2 * total, f"{sent} bytes sent for {total}: the upload started over"
    finally:
        proxy.close()
        server.terminate()
        server.wait(timeout=30)
    archive = open_archive(config.load(central_home))
    try:
        assert central_pages(archive) == station_pages(st)
        assert verify(archive).ok
    finally:
        archive.close()
        st.close()


def test_status_tells_what_waits_and_why(flaky_station):
    import contextlib
    import io
    from dataclasses import replace

    from station.cli import main
    from station.errors import CentralUnreachable

    with pytest.raises(CentralUnreachable):  # nothing listens there; tried once
        sync(replace(flaky_station, config=flaky_station.config.model_copy(update={"sync_retry_span_s": 0})),
             "127.0.0.1:9")
    db = flaky_station.store.db
    db.execute("UPDATE bundles SET state = 'uploading', last_error = NULL, uploaded_bytes ="
               " (SELECT SUM(bytes) FROM pages p WHERE p.batch_id = bundles.batch_id) / 2 WHERE rowid = 1")
    db.execute("UPDATE bundles SET state = 'rejected', last_error = 'BelowResolution page 1' WHERE rowid = 2")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--home", str(flaky_station.config.home), "status"]) == 0
    text = out.getvalue()
    assert "outbox: 2 waiting, 0 committed, 1 rejected" in text
    assert re.search(r"uploading (49|50) %, 4 pages", text), text
    assert "rejected, 4 pages — BelowResolution page 1" in text
    assert "sealed, 4 pages — waiting for the next sync" in text
    assert re.search(r"central offline since \S+: central service at 127.0.0.1:9 is unreachable", text), text


def test_a_chunk_damaged_on_the_wire_is_refused_and_sent_again(tmp_path, archive):
    """Plain-text lab mode, where nothing but the chunk CRC stands between a flipped bit and the disk."""
    from central.server import build_server

    server, port = build_server(archive, "127.0.0.1:0", tls=False)
    server.start()
    proxy = FaultyProxy(f"127.0.0.1:{port}", flip_at=400_000)
    try:
        st = register(archive, proxy.address, make_station(tmp_path / "st", proxy.address, insecure=True, dpi=200,
                                                           backoff_base_s=0.01, chunk_bytes=65536))
        scan(st, {"archive_no": "D-51"}, {"item": "1-1", "title": "t"}, "synthetic:seed=4,sheets=3")
        report = sync(st, sleep=lambda s: None)
    finally:
        proxy.close()
        server.stop(grace=None).wait()
    assert proxy.flips == 1 and proxy.connections >= 2, "the damaged stream should have been refused and redone"
    assert len(report.committed) == 1 and report.retries >= 1
    assert central_pages(archive) == station_pages(st) and verify(archive).ok
    assert not any(archive.config.uploads_dir.iterdir())
    st.close()


def test_a_partial_upload_damaged_by_an_archive_power_cut_is_sent_again(central, flaky_station):
    """Bytes the archive had not yet flushed when it lost power: the resume point lies past garbage.
    The finished blob fails its digest, is discarded, and the station sends it again from the start."""
    import google_crc32c

    from central import ingest
    from quire.v1 import sync_pb2

    archive, address = central
    bundle = outbox.pending(flaky_station.store)[0]
    ingest.offer(archive, flaky_station.station_id, bundle["manifest"], bundle["signature"])
    page = json.loads(bundle["manifest"])["pages"][0]
    data = flaky_station.store.page_path(page["sha256"], page["media_type"]).read_bytes()
    half = data[:len(data) // 2]
    written = ingest.write(archive, iter([sync_pb2.WriteRequest(  # a stream that broke off half way
        station_id=flaky_station.station_id, bundle_id=bundle["id"], sha256=page["sha256"], write_offset=0,
        data=half, data_crc32c=google_crc32c.value(half))]))
    assert not written.complete and written.size == len(half)
    [partial] = archive.config.uploads_dir.iterdir()
    partial.write_bytes(bytes(len(half) // 2) + half[len(half) // 2:])  # the first half of it lost to the power cut
    report = sync(flaky_station, address, sleep=lambda s: None)
    assert len(report.committed) == 3 and report.retries == 1
    assert central_pages(archive) == station_pages(flaky_station) and verify(archive).ok
    assert not any(archive.config.uploads_dir.iterdir())


def test_a_cut_connection_keeps_every_whole_chunk_that_reached_the_archive(central, tmp_path, monkeypatch):
    """The resume point after a cut is within one chunk of what reached the archive before the cut: the
    archive does not drop chunks it had received but not yet written (bench/sync.py measures this at
    full-size chunks). The station hears of the cut before the archive has written what it had taken
    off the connection, so the resume point is read once the archive has finished the broken call."""
    import threading

    from central import ingest

    archive, address = central
    write, finished = ingest.write, threading.Event()

    def write_and_tell(*args):
        try:
            return write(*args)
        finally:
            finished.set()

    monkeypatch.setattr(ingest, "write", write_and_tell)
    chunk = 65536
    st = register(archive, address, make_station(tmp_path / "st", address, chunk_bytes=chunk, sync_retry_span_s=0))
    scan(st, {"archive_no": "D-52"}, {"item": "1-1", "title": "t"}, "synthetic:seed=6,sheets=3")
    assert st.store.db.execute("SELECT SUM(bytes) FROM pages").fetchone()[0] > 2_000_000
    proxy = FaultyProxy(address, cut_after=(1_500_000, 1_500_000), max_faults=1)
    try:
        report = sync(st, proxy.address, sleep=lambda s: None)
        assert finished.wait(60), "the archive never finished the cut Write call"
    finally:
        proxy.close()
    assert proxy.cuts == 1 and report.failed, "the upload should have been cut"
    bundle = outbox.pending(st.store)[0]
    resume = ingest.offer(archive, st.station_id, bundle["manifest"], bundle["signature"])
    held = sum(resume.committed_sizes) + sum(archive.blobs.stat(r["sha256"])
                                             for r in archive.catalogue.query("SELECT sha256 FROM blobs"))
    # What the archive's kernel took before the cut, less the calls before the pages (handshake, offer:
    # well under 64 kB) and the chunk cut in two.
    assert proxy.upstream_bytes - 64_000 - chunk <= held <= proxy.upstream_bytes, (held, proxy.upstream_bytes)
    st.close()


def test_status_shows_an_upload_moving_on_a_slow_link(central, tmp_path):
    """One Write stream over a throttled link: `status` reports a rising share while it runs."""
    import sqlite3
    import threading

    archive, address = central
    st = register(archive, address, make_station(tmp_path / "st", address, chunk_bytes=65536))
    scan(st, {"archive_no": "D-53"}, {"item": "1-1", "title": "t"}, "synthetic:seed=8,sheets=2")
    total = st.store.db.execute("SELECT SUM(bytes) FROM pages").fetchone()[0]
    proxy = FaultyProxy(address, rate_bytes_s=total / 5)   # about five seconds for the one stream
    seen = set()
    try:
        syncing = threading.Thread(target=lambda: sync(st, proxy.address, sleep=lambda s: None))
        syncing.start()
        db = sqlite3.connect(st.config.db_path)
        while syncing.is_alive():
            row = db.execute("SELECT state, uploaded_bytes FROM bundles").fetchone()
            if row[0] == "uploading":
                seen.add(100 * row[1] // total)
            time.sleep(0.2)
        db.close()
        syncing.join()
    finally:
        proxy.close()
    assert len([p for p in seen if 0 < p < 100]) >= 2, f"progress seen: {sorted(seen)}"
    assert central_pages(archive) == station_pages(st)
    st.close()
