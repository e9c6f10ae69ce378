"""Scanning through python-sane with SANE's own `test` backend: ADF batches, faults, resume.

libsane runs in the scanner-driver process (station.capture.driver), never in the test runner, so
these tests scan in-process; the hang and crash cases are in tests/station/capture/test_driver.py.
"""

import sqlite3

import pytest

from station import outbox
from station.errors import CoverOpen, ScannerJammed, ScannerNotFound
from station.scan import scan
from tests.conftest import make_station, run_cli

DOSSIER = {"archive_no": "D-0042"}
MATERIAL = {"item": "4-1-2", "title": "学历证明"}


@pytest.fixture
def st(tmp_path):
    # 50 dpi keeps the test device's 200×200 mm pages small; the SANE path is the same.
    station = make_station(tmp_path / "st", dpi=50, sane_options={"test_picture": "Color pattern"})
    yield station
    station.close()


def test_adf_batch_runs_until_the_feeder_is_empty(st):
    result = scan(st, DOSSIER, MATERIAL, "sane:test:0")
    pages = st.store.pages(result.batch_id)
    assert [p["n"] for p in pages] == list(range(1, 11))  # the test feeder holds ten sheets
    assert all(p["dpi"] == 50 for p in pages)
    assert outbox.get(st.store, result.bundle_id)["state"] == "sealed"


def _cli_station(tmp_path, **sane_options):
    """A station home whose station.toml scans the test device at 50 dpi, used through the CLI."""
    home = tmp_path / "cli-st"
    make_station(home).close()
    options = "".join(f'{k} = "{v}"\n' for k, v in sane_options.items())
    (home / "station.toml").write_text(f"dpi = 50\n[sane_options]\n{options}")
    return home


def _scan_cli(home, source):
    return run_cli("quire-station", "--home", home, "scan", "--dossier", DOSSIER["archive_no"], "--material",
                   MATERIAL["item"], "--title", MATERIAL["title"], "--source", source, check=False)


# Fault injection through the CLI, as an operator meets it: the exit code and the words on stderr.
def test_jam_keeps_every_page_before_it_and_the_same_command_resumes(tmp_path):
    home = _cli_station(tmp_path, test_picture="Color pattern")
    jammed = _scan_cli(home, "fault:jam@4:sane:test:0")
    assert jammed.returncode == ScannerJammed.exit_code, jammed.stderr
    assert "jammed" in jammed.stderr and "pages 1–3 are stored" in jammed.stderr and "page 4" in jammed.stderr
    st = make_station(home)
    try:
        batch = st.store.batches()[0]
        assert batch["state"] == "interrupted" and batch["pages"] == 3
        for page in st.store.pages(batch["id"]):
            assert st.store.page_path(page["sha256"], page["media_type"]).exists()
        assert outbox.pending(st.store) == []  # nothing sealed from a broken batch
    finally:
        st.close()

    resumed = _scan_cli(home, "sane:test:0")
    assert resumed.returncode == 0, resumed.stderr
    st = make_station(home)
    try:
        (batch,) = st.store.batches()
        assert batch["state"] == "sealed"
        assert [p["n"] for p in st.store.pages(batch["id"])] == list(range(1, 14))
    finally:
        st.close()


def test_cover_open_is_reported_in_words_an_operator_can_act_on(tmp_path):
    home = _cli_station(tmp_path, read_return_value="SANE_STATUS_COVER_OPEN")
    proc = _scan_cli(home, "sane:test:0")
    assert proc.returncode == CoverOpen.exit_code and "cover open — close it" in proc.stderr
    st = make_station(home)
    try:
        assert st.store.batches()[0]["state"] == "interrupted"
    finally:
        st.close()


def test_missing_device_is_named(st):
    with pytest.raises(ScannerNotFound, match="nosuch:0"):
        scan(st, DOSSIER, MATERIAL, "sane:nosuch:0")


class ProbeSource:
    """Checks, each time the next page is requested, that the previous one is durably stored.

    Durable means committed to the station's SQLite with its file fsynced: as a raw page in the
    capture spool, or already as a processed page in the page store (a page leaves the spool
    only after it is in the store). Both tables are read in one statement, one snapshot.
    """

    name = "probe"

    def __init__(self, inner, db_path):
        self.inner, self.db_path, self.checked = inner, db_path, 0

    def pages(self):
        for n, page in enumerate(self.inner.pages(), 1):
            yield page
            # Back here only when the scanner is asked for the next page: page n must be committed.
            conn = sqlite3.connect(self.db_path)
            count = conn.execute("SELECT COUNT(*) FROM (SELECT batch_id, n FROM pages"
                                 " UNION SELECT batch_id, n FROM spool)").fetchone()[0]
            conn.close()
            assert count == n, f"page {n} not committed before page {n + 1} was requested"
            self.checked += 1

    def close(self):
        self.inner.close()


def test_each_page_is_committed_before_the_next_is_requested(st):
    from station.capture import open_source

    probe = ProbeSource(open_source("sane:test:0", 50, {}), st.config.db_path)
    scan(st, DOSSIER, MATERIAL, probe)
    assert probe.checked == 10


@pytest.mark.parametrize("picture,blank,colour", [("Color pattern", False, "colour"), ("Solid black", False, "grey"),
                                                  ("Solid white", True, "grey")])
def test_test_device_pages_at_300_dpi_get_the_right_flags(picture, blank, colour):
    from station.capture import open_source
    from station.pipeline import process_page

    source = open_source("sane:test:0", 300, {"test_picture": picture, "source": "Flatbed"})
    try:
        page = next(source.pages())
    finally:
        source.close()
    record = process_page(page.image, page.dpi).record
    assert (record["blank"], record["colour"]) == (blank, colour)


FAULT_LOOP = """
import sys, threading, time
import numpy as np
from station.capture.sane_source import SaneSource
from station.errors import ScannerJammed

stop = threading.Event()
def busy():                             # a pipeline worker's kind of load
    a = np.random.rand(200, 200)
    while not stop.is_set():
        a @ a
workers = [threading.Thread(target=busy) for _ in range(2)]
for w in workers:
    w.start()
source = SaneSource("test:0", dpi=25, options={"source": "Flatbed", "read_return_value": "SANE_STATUS_JAMMED"},
                    page_timeout_s=20)
faults, deadline = 0, time.monotonic() + float(sys.argv[2])
try:
    while faults < int(sys.argv[1]) and time.monotonic() < deadline:
        try:
            next(source.pages())
        except ScannerJammed:
            faults += 1
        # Threads come and go between scans, as each batch's pool and store threads do.
        churn = threading.Thread(target=bytearray, args=(100_000,))
        churn.start()
        churn.join()
finally:
    source.close()
    stop.set()
    for w in workers:
        w.join()
print(faults)
"""


def test_scanner_faults_over_and_over_never_hang_capture():
    # A reader thread that libsane cancels while it is still allocating dies holding a glibc malloc
    # lock, and the next sane_read/sane_cancel blocks forever. Before the fix (the driver waits for
    # data before it reads) this loop hung in about half the runs of 2,000 faults. The driver process
    # would now be killed at the page deadline (ScannerDriverHung, the loop's exit code) rather than
    # hang the station, but each such kill would still cost a page: the fault path must not hang.
    import subprocess
    import sys

    try:
        proc = subprocess.run([sys.executable, "-c", FAULT_LOOP, "6000", "30"], capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("SANE capture hung: a jammed scan never returned from sane_read/sane_cancel")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 200         # faults enough to meet the race, even on a loaded machine


def test_after_a_sane_scan_a_write_to_a_closed_pipe_is_an_error_not_death(tmp_path):
    """libsane resets SIGPIPE to 'terminate' in the process that loads it: that is the driver process
    alone, so the station survives a client (or log reader) that went away."""
    import subprocess
    import sys

    code = ("import socket\n"
            "from station.capture.sane_source import SaneSource\n"
            "src = SaneSource('test:0', 50, {})\n"
            "next(src.pages()); src.close()\n"
            "a, b = socket.socketpair(); b.close()\n"
            "try:\n    a.send(b'x'); a.send(b'x')\nexcept BrokenPipeError:\n    print('EPIPE')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "EPIPE", (proc.returncode, proc.stderr)


def test_a_page_slower_than_the_set_timeout_is_stopped_and_names_the_setting(tmp_path):
    """scanner_page_timeout_s in station.toml reaches the driver: a scanner slower than it is stopped
    and the operator is told which setting to raise."""
    from station.errors import ConfigError, ScannerDriverHung

    home = tmp_path / "slow-st"
    make_station(home).close()
    # The test device pauses 0.2 s after each buffer it hands over: a 600-dpi page takes ~15 s.
    (home / "station.toml").write_text(
        "dpi = 600\nscanner_page_timeout_s = 5\n[sane_options]\nread_delay = true\nread_delay_duration = 200000\n")
    slow = _scan_cli(home, "sane:test:0")
    assert slow.returncode == ScannerDriverHung.exit_code, slow.stderr
    assert "within 5 s" in slow.stderr and "raise scanner_page_timeout_s in station.toml" in slow.stderr
    (home / "station.toml").write_text("scanner_page_timeout_s = 1\n")
    refused = _scan_cli(home, "sane:test:0")
    assert refused.returncode == ConfigError.exit_code
    assert "station.toml: scanner_page_timeout_s: must be at least 5 (got 1)" in refused.stderr
