"""The capture spool: pages durable as soon as captured, processed alongside capture, stored in order,
the scanner held back only when the spool is full, and nothing lost or doubled when a run is killed."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from station.capture.synthetic import SyntheticSource, render_page
from station.pipeline import PipelineConfig
from station.scan import open_spool, scan
from tests.conftest import cli_in_process, make_station, read_frozen, run_cli

DOSSIER = {"archive_no": "D-0100"}
MATERIAL = {"item": "1-1", "title": "干部履历表"}


def _with_pipeline(station, **settings):
    station.config = station.config.model_copy(update={"pipeline": PipelineConfig(**settings)})
    return station


class FastFeeder:
    """A scanner faster than any CPU: the same page again and again, and a count of what waits in the spool."""

    name = "fast"

    def __init__(self, page, count, db_path):
        self.page, self.count, self.db_path, self.most_waiting = page, count, db_path, 0

    def pages(self):
        for _ in range(self.count):
            yield self.page
            conn = sqlite3.connect(self.db_path)
            waiting = conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
            conn.close()
            self.most_waiting = max(self.most_waiting, waiting)

    def close(self):
        pass


def test_pages_are_processed_on_several_workers_and_stored_in_page_order(tmp_path):
    st = _with_pipeline(make_station(tmp_path / "st", dpi=100), workers=3)
    try:
        source = SyntheticSource(seed=8, sheets=4, dpi=100, max_skew_deg=10)
        truth = [p.truth["skew_deg"] for p in SyntheticSource(seed=8, sheets=4, dpi=100, max_skew_deg=10).pages()]
        seen = []
        result = scan(st, DOSSIER, MATERIAL, source, on_page=lambda n, record: seen.append(n))
        assert seen == list(range(1, 9)) and result.pages == result.total_pages == 8
        stored = st.store.pages(result.batch_id)
        assert [p["n"] for p in stored] == seen
        measured = [json.loads(p["record_json"])["skew_deg"] for p in stored]
        assert measured == pytest.approx(truth, abs=0.15)       # each page landed under its own number
        assert open_spool(st).waiting() == []
        assert not any((st.config.home / "spool").glob("*.npy"))
    finally:
        st.close()


def test_a_scanner_faster_than_the_cpu_is_held_back_at_the_spool_limit(tmp_path):
    st = _with_pipeline(make_station(tmp_path / "st", dpi=150), workers=1, spool_pages=2)
    try:
        feeder = FastFeeder(render_page(3, 0, dpi=150), 8, st.config.db_path)
        result = scan(st, DOSSIER, MATERIAL, feeder)
        assert result.total_pages == 8
        assert feeder.most_waiting <= 2        # bounded: never more than the limit captured ahead
        assert result.held_s > 0               # and the scanner did wait for the CPU to catch up
    finally:
        st.close()


@pytest.mark.parametrize("fault_at", [3, 4])
def test_a_duplex_sheet_is_kept_whole_or_not_at_all(tmp_path, fault_at):
    """A jam on a sheet's back loses its front too: the operator feeds that sheet again, and its
    front is not captured twice (fronts and backs keep alternating)."""
    from station.capture.faults import FaultSource
    from station.errors import ScannerJammed

    st = make_station(tmp_path / "st", dpi=150)
    try:
        with pytest.raises(ScannerJammed) as info:
            scan(st, DOSSIER, MATERIAL, FaultSource("jam", fault_at, SyntheticSource(seed=3, sheets=3, dpi=150)))
        message = str(info.value)
        assert "pages 1–2 are stored" in message and "resume at page 3" in message
        assert ("feed that whole sheet again" in message) == (fault_at == 4), message
        assert [p["n"] for p in st.store.pages(st.store.batches()[0]["id"])] == [1, 2]
        # The operator feeds sheets 2 and 3 again.
        result = scan(st, DOSSIER, MATERIAL, SyntheticSource(seed=3, sheets=3, dpi=150))
        blank = [json.loads(p["record_json"])["blank"] for p in st.store.pages(result.batch_id)]
        assert blank == [False, True] * 3    # every synthetic back is blank: page 3 is a front again
    finally:
        st.close()


KILLED_RUN = """
import sys, time
from station import config, home
from station.scan import scan
from station.capture.synthetic import SyntheticSource
st = home.open_station(config.load(sys.argv[1]))
scan(st, {"archive_no": "D-0100"}, {"item": "1-1", "title": "x"}, SyntheticSource(seed=2, sheets=12, dpi=150))
"""


def _durable(db_path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(db_path)
    found = conn.execute("SELECT n, 'page' FROM pages UNION ALL SELECT n, 'spool' FROM spool").fetchall()
    conn.close()
    return found


def _kill_while_spooled(run: subprocess.Popen, db_path) -> list[tuple[int, str]]:
    """kill -9 ``run`` while some pages are stored and others still wait in the spool; what is durable then."""
    try:
        deadline = time.monotonic() + 120
        # Stopped first, so what is seen is what the kill leaves (a loaded machine may store the last
        # spooled page between).
        while True:
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            durable = read_frozen(run, lambda: _durable(db_path)) or []
            stored = {n for n, kind in durable if kind == "page"}
            # A page stored but not yet released from the spool is in both: it does not count as waiting.
            if stored and {n for n, kind in durable if kind == "spool"} - stored:
                break
            run.send_signal(signal.SIGCONT)
            time.sleep(0.02)
    finally:
        run.kill()          # stopped or not, and also when the loop failed: a stopped run would never end
        run.wait(timeout=30)
    return durable


def test_a_run_killed_mid_batch_loses_and_doubles_nothing(tmp_path):
    st = make_station(tmp_path / "st", dpi=150)
    open_spool(st).close()
    st.close()
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "st")], cwd=os.getcwd())
    _kill_while_spooled(run, st.config.db_path)
    captured = {n for n, _ in _durable(st.config.db_path)}
    assert captured == set(range(1, len(captured) + 1))

    from station import home
    station = home.open_station(st.config)
    try:
        # The operator feeds the sheets the killed run did not capture.
        result = scan(station, DOSSIER, MATERIAL, SyntheticSource(seed=2, sheets=12, dpi=150))
        pages = [p["n"] for p in station.store.pages(result.batch_id)]
        assert pages == list(range(1, 25))                      # every page of the 12 sheets once
        assert result.first_page == len(captured) + 1 and result.recovered >= 1
        assert open_spool(station).waiting() == []
    finally:
        station.close()


def test_a_scan_killed_with_pages_spooled_shows_them_in_status_and_the_resumed_scan_prints_them(tmp_path):
    """quire-station scan killed -9 mid-batch: status counts every durable page (stored or spooled); the
    same command again prints each recovered page as it stores it, then the remaining sheets fed again."""
    home = tmp_path / "st"
    st = make_station(home)
    open_spool(st).close()
    st.close()
    (home / "station.toml").write_text("dpi = 150\n")
    scan_args = ("--home", home, "scan", "--dossier", "D-0100", "--material", "1-1", "--title", "干部履历表",
                 "--source", "synthetic:seed=2,sheets=12", "--json")
    with open(tmp_path / "killed.out", "w") as out:
        run = subprocess.Popen([str(Path(sys.executable).parent / "quire-station"), *map(str, scan_args)],
                               stdout=out, stderr=subprocess.DEVNULL)
        durable = _kill_while_spooled(run, st.config.db_path)
    captured = {n for n, _ in durable}
    spooled = sorted(n for n, kind in durable if kind == "spool")
    (batch,) = json.loads(cli_in_process("quire-station", "--home", home, "status", "--json").stdout)["batches_open"]
    assert batch["pages"] == len(captured) and batch["pages_spooled"] == len(set(spooled) - {
        n for n, kind in durable if kind == "page"})
    status = cli_in_process("quire-station", "--home", home, "status").stdout
    assert f"batch D-0100 1-1 open: {len(captured)} pages" in status

    resumed = run_cli("quire-station", *scan_args)
    printed = [json.loads(line)["n"] for line in resumed.stdout.splitlines()]
    assert printed == spooled + list(range(len(captured) + 1, 25))   # the recovered pages first, like the rest
    assert f"24 pages (resumed at page {len(captured) + 1})" in resumed.stderr
    station = make_station(home)
    try:
        (sealed,) = station.store.batches()
        assert [p["n"] for p in station.store.pages(sealed["id"])] == list(range(1, 25))
    finally:
        station.close()


def test_a_second_scan_on_the_same_station_is_refused_while_one_runs(tmp_path):
    from station.errors import StoreError

    st = make_station(tmp_path / "st", dpi=100)
    try:
        running = open_spool(st)
        try:
            with pytest.raises(StoreError, match="another scan is running"):
                scan(st, DOSSIER, MATERIAL, SyntheticSource(seed=1, sheets=1, dpi=100))
        finally:
            running.close()
        assert scan(st, DOSSIER, MATERIAL, SyntheticSource(seed=1, sheets=1, dpi=100)).total_pages == 2
    finally:
        st.close()


def test_a_worker_lets_the_captured_page_go_before_it_encodes_the_output(tmp_path, monkeypatch):
    # Memory on a Pi (issue 18): a worker holds one full-size image while encoding, not two. Counted, not
    # timed: at each encode, how many pages loaded from the spool are still alive anywhere in the process.
    import weakref

    from station import spool as spool_module
    from station.pipeline import encode as encode_module

    loaded, alive_at_encode = [], []
    load, encode = spool_module._load_page, encode_module.encode

    def load_and_watch(path):
        image = load(path)
        loaded.append(weakref.ref(image))
        return image

    def encode_and_count(*args, **kwargs):
        alive_at_encode.append(sum(ref() is not None for ref in loaded))
        return encode(*args, **kwargs)

    monkeypatch.setattr(spool_module, "_load_page", load_and_watch)
    monkeypatch.setattr(encode_module, "encode", encode_and_count)
    st = _with_pipeline(make_station(tmp_path / "st", dpi=100), workers=1)
    try:
        result = scan(st, DOSSIER, MATERIAL, SyntheticSource(seed=8, sheets=3, dpi=100))
        assert result.total_pages == 6 and len(alive_at_encode) == 6
        assert alive_at_encode == [0] * 6       # the page being encoded was already let go
    finally:
        st.close()


_WORKER_PAGE = """
import threading
from quire.memory import tune_allocator
tune_allocator()                    # as the station's entry points do
from station.capture.synthetic import render_page
from station.pipeline import process_page
image = render_page(3, 0, dpi=300).image
def resident_mb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) // 1024
before = resident_mb()
worker = threading.Thread(target=process_page, args=(image, 300))
worker.start(); worker.join()
print(resident_mb() - before)
"""


def test_a_page_processed_on_a_worker_thread_leaves_its_analysis_memory_to_the_system():
    # Issue 18: each worker thread has its own glibc heap, which kept its page's analysis copies (up to the
    # 32 MiB trim limit) while three workers made their full-size outputs. A colour A4 page at 300 dpi.
    proc = subprocess.run([sys.executable, "-c", _WORKER_PAGE], capture_output=True, text=True, check=True)
    assert int(proc.stdout) < 20, f"{proc.stdout} MB more resident after one page"
