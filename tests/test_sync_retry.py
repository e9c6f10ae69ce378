"""A sync rides out a short outage: the first call is retried like any other, retries back off over a
span that outlasts an archive restart, and "bytes sent" is what the archive acknowledged."""

import re
import signal
import sqlite3
import time
from pathlib import Path

from central import config
from central.archive import open_archive
from central.verify import verify
from station import config as station_config
from station.home import open_station
from station.scan import scan
from tests.conftest import make_station, register, run_cli, wait_until
from tests.netfaults import FaultyProxy
from tests.station.test_daemon import Daemon
from tests.station.test_notify import NotifyListener
from tests.test_sync_faults import _serve, central_pages, station_pages


def _page_bytes(st) -> int:
    return st.store.db.execute("SELECT SUM(bytes) FROM pages").fetchone()[0]


def test_a_cut_during_the_first_tls_handshake_is_retried(tmp_path, central):
    archive, address = central
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=150))
    scan(st, {"archive_no": "D-60"}, {"item": "1-1", "title": "t"}, "synthetic:seed=1,sheets=1")
    st.close()
    # The first connection that sends anything is cut 200 bytes into the TLS ClientHello of GetInfo.
    proxy = FaultyProxy(address, cut_after=(200, 200), max_faults=1)
    try:
        proc = run_cli("quire-station", "--home", tmp_path / "st", "sync", "--central", proxy.address, check=False)
    finally:
        proxy.close()
    assert proxy.cuts == 1, "the handshake should have been cut"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "committed 1 bundle(s)" in proc.stdout


def test_bytes_sent_is_what_the_archive_acknowledged(tmp_path, central):
    """A stream cut mid-upload: bytes handed to gRPC past what the archive kept are not counted twice."""
    archive, address = central
    st = register(archive, address, make_station(tmp_path / "st", address, dpi=200, chunk_bytes=65536))
    scan(st, {"archive_no": "D-61"}, {"item": "1-1", "title": "t"}, "synthetic:seed=2,sheets=2")
    total = _page_bytes(st)
    st.close()
    proxy = FaultyProxy(address, cut_after=(total // 2, total // 2), max_faults=1)
    try:
        out = run_cli("quire-station", "--home", tmp_path / "st", "sync", "--central", proxy.address).stdout
    finally:
        proxy.close()
    assert proxy.cuts == 1 and proxy.upstream_bytes > total
    assert f"committed 1 bundle(s), 4 pages, {total} bytes sent" in out, out


def _committed(home: Path) -> int:
    db = sqlite3.connect(f"file:{home / 'station.db'}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT count(*) FROM bundles WHERE state IN ('committed', 'purged')").fetchone()[0]
    finally:
        db.close()


def test_the_daemon_rides_out_an_archive_restart_without_waiting_for_its_next_round(tmp_path):
    """The archive process is killed mid-upload and comes back 1.5 s later; the daemon, whose next round
    is an hour away, delivers the bundle within its retry span. (The quick first back-off keeps the old
    five tries well inside the outage.)"""
    central_home = tmp_path / "central"
    server, address = _serve(central_home)
    port = int(address.rsplit(":", 1)[1])
    proxy = FaultyProxy(address, rate_bytes_s=300_000)
    home = tmp_path / "st"
    st = make_station(home, station_id="st-rides", dpi=300, chunk_bytes=65536)
    listener = NotifyListener()
    daemon = None
    try:
        run_cli("quire-central", "--home", central_home, "stations", "add", "st-rides", "--key",
                st.public_key.hex(), "--unit", "u")
        from station.enrol import enroll

        enroll(st, address)
        scan(st, {"archive_no": "D-62"}, {"item": "2-1", "title": "t"}, "synthetic:seed=4,sheets=2")
        total = _page_bytes(st)
        st.close()
        (home / "station.toml").write_text(
            f'central = "{proxy.address}"\nsync_interval_s = 3600\nbackoff_base_s = 0.05\nbackoff_max_s = 2.0\n'
            'zeroconf_interfaces = ["127.0.0.1"]\n')
        daemon = Daemon(home, listener)
        deadline = time.monotonic() + 60
        while proxy.upstream_bytes < total // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _committed(home) == 0, "the upload finished before the archive could be killed"
        server.send_signal(signal.SIGKILL)  # the archive dies mid-upload
        server.wait()
        time.sleep(1.5)
        server, _ = _serve(central_home, port)  # and comes back on the same port
        restarted = time.monotonic()
        while _committed(home) == 0 and time.monotonic() - restarted < 60:
            time.sleep(0.2)
        assert _committed(home) == 1, daemon.output()
        # The station records the commit inside the sync; the daemon logs the state once the sync returns.
        wait_until(lambda: "central online" in daemon.output(), f"'central online' in {daemon.log_path}")
        log = daemon.output()
        assert not re.search(r"Traceback", log), log
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.close()
        listener.close()
        proxy.close()
        server.terminate()
        server.wait(timeout=30)
    archive = open_archive(config.load(central_home))
    st = open_station(station_config.load(home))
    try:
        assert central_pages(archive) == station_pages(st) and verify(archive).ok
    finally:
        archive.close()
        st.close()
