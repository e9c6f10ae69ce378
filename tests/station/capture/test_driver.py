"""The scanner-driver process: libsane runs only in a child the station kills when it hangs or dies.

SANE's `test` device, slowed down to about a second a page (its read-limit and read-delay
options), lets a test freeze (SIGSTOP) or kill (SIGKILL) the driver in the middle of a page.
"""

import os
import signal
import threading
import time

import pytest

from station.capture.sane_source import SaneSource
from station.errors import ScannerDriverCrashed, ScannerDriverHung, ScannerJammed
from station.scan import open_spool, scan
from tests.conftest import make_station

DOSSIER = {"archive_no": "D-0042"}
MATERIAL = {"item": "4-1-2", "title": "学历证明"}
PAGE_TIMEOUT_S = 3.0
# About a second a page: the test backend's reader waits 80 ms before each of the ~14 buffers of a
# 50 dpi colour pattern, so a signal sent soon after a page is asked for lands while it is read.
SLOW = {"enable_test_options": True, "read_delay": True, "read_delay_duration": 80_000}


@pytest.fixture
def st(tmp_path):
    station = make_station(tmp_path / "st", dpi=50)
    yield station
    station.close()


def _source(**options) -> SaneSource:
    return SaneSource("test:0", 50, {"test_picture": "Color pattern", **options}, page_timeout_s=PAGE_TIMEOUT_S)


class SignalMidPage:
    """Delivers the inner source's pages; once page ``at`` is asked for, slows the device down and
    sends the driver process ``signum`` shortly after, while it reads that page."""

    def __init__(self, inner: SaneSource, at: int, signum: int):
        self.inner, self.at, self.signum = inner, at, signum
        self.name, self.pid, self.timer = inner.name, None, None

    def pages(self):
        pages = self.inner.pages()
        n = 1
        while True:
            if n == self.at:
                for name, value in SLOW.items():
                    setattr(self.inner.dev, name, value)
                self.pid = self.inner.driver.pid
                self.timer = threading.Timer(0.3, os.kill, (self.pid, self.signum))
                self.timer.start()
            page = next(pages, None)
            if page is None:
                return
            yield page
            n += 1

    def close(self):
        if self.timer is not None:
            self.timer.join()
        self.inner.close()


def _numbers(st, batch_id) -> list[int]:
    return [p["n"] for p in st.store.pages(batch_id)]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("signum,error,words", [
    (signal.SIGSTOP, ScannerDriverHung, f"stopped responding (no answer within {PAGE_TIMEOUT_S:g} s while scanning"),
    (signal.SIGKILL, ScannerDriverCrashed, "stopped unexpectedly (it was killed by SIGKILL while scanning"),
])
def test_a_driver_that_hangs_or_dies_mid_page_costs_that_page_only(st, signum, error, words):
    source = _source()
    faulty = SignalMidPage(source, at=4, signum=signum)
    started = time.monotonic()
    with pytest.raises(error) as info:
        scan(st, DOSSIER, MATERIAL, faulty)
    assert time.monotonic() - started < 4 * 1 + PAGE_TIMEOUT_S + 10   # three pages, then the deadline
    message = str(info.value)
    assert words in message and "pages 1–3 are stored" in message and "resume at page 4" in message
    assert "check the feeder" in message
    assert _gone(faulty.pid) and not source.running     # killed and reaped, nothing left behind

    (batch,) = st.store.batches()
    assert batch["state"] == "interrupted" and _numbers(st, batch["id"]) == [1, 2, 3]
    spool = open_spool(st)
    try:
        assert spool.waiting() == []                    # every captured page stored, none left over
    finally:
        spool.close()

    # The next scan starts a fresh driver (the device opened and configured as before) and resumes.
    result = scan(st, DOSSIER, MATERIAL, source)
    assert result.first_page == 4 and source.driver.starts == 2
    assert _numbers(st, batch["id"]) == list(range(1, 14))   # each page once: 3 before, the test feeder's 10 after
    assert st.store.batch(batch["id"]).state == "sealed"


def test_a_driver_found_dead_between_uses_is_restarted(st):
    source = _source(source="Flatbed")
    try:
        first = next(source.pages())
        os.kill(source.driver.pid, signal.SIGKILL)
        time.sleep(0.2)
        with pytest.raises(ScannerDriverCrashed, match="killed by SIGKILL"):
            source.sensor("bool-soft-select-soft-detect")
        again = next(source.pages())               # configured as before: flatbed, colour pattern
        assert source.driver.starts == 2 and (again.image == first.image).all()
    finally:
        source.close()


def test_sane_faults_still_map_to_the_operators_words_through_the_driver(st):
    source = _source(source="Flatbed", read_return_value="SANE_STATUS_JAMMED")
    try:
        with pytest.raises(ScannerJammed):
            next(source.pages())
        assert source.running and source.driver.starts == 1   # a SANE fault is no reason to restart
    finally:
        source.close()


def test_this_process_never_loads_libsane(st):
    import sys

    result = scan(st, DOSSIER, MATERIAL, "sane:test:0")
    assert result.total_pages == 10
    with open("/proc/self/maps") as maps:
        assert not [line for line in maps if "libsane" in line]
    assert "sane" not in sys.modules and "_sane" not in sys.modules


def test_closing_lets_the_driver_exit(st):
    source = _source()
    pid, proc = source.driver.pid, source.driver._proc
    source.close()
    assert _gone(pid) and not source.running
    assert proc.returncode == 0, "the driver was killed instead of closing its device and exiting"


def test_the_station_holds_no_earlier_page_while_the_driver_sends_the_next(st):
    import weakref

    source = _source()
    kept, asks = [], []
    call = source.driver.call

    def checked_call(op, *args, **kw):
        if op == "page":                        # about to receive a page: nothing earlier may be held
            asks.append([ref for ref in kept if ref() is not None])
        return call(op, *args, **kw)

    source.driver.call = checked_call
    try:
        pages = source.pages()
        while (page := next(pages, None)) is not None:
            kept.append(weakref.ref(page.image))
            del page                            # as scan() does once the page is spooled
        assert len(kept) == 10 and len(asks) == 11 and not any(asks), "an earlier page was still held"
    finally:
        source.close()


FAULTS = """
import sys
from station.capture.sane_source import SaneSource
from station.errors import ScannerError

source = SaneSource("test:0", dpi=25, options={"source": "Flatbed", "read_return_value": sys.argv[1]})
faults = 0
for _ in range(20):
    try:
        next(source.pages())
    except ScannerError:
        faults += 1
source.close()
print(faults)
"""


@pytest.mark.parametrize("status", ["SANE_STATUS_JAMMED", "SANE_STATUS_COVER_OPEN"])
def test_after_a_fault_the_scans_reader_thread_ends_by_itself_and_is_never_cancelled(status):
    # sane_cancel stops a backend's reader thread with an asynchronous pthread_cancel. Under glibc 2.41
    # (Debian 13) a reader the closed pipe has woken can be unwound inside free(); it then waits for ever
    # on its own malloc lock as it exits, and sane_cancel with it (test_scanner_faults_over_and_over_
    # never_hang_capture failed five runs in six there). SANE's own thread log, from the real driver
    # process, says whether a reader had to be cancelled: none may be, on any glibc.
    import subprocess
    import sys

    env = {**os.environ, "SANE_DEBUG_SANEI_THREAD": "2"}
    proc = subprocess.run([sys.executable, "-c", FAULTS, status], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "20", proc.stderr[-2000:]
    assert proc.stderr.count("sanei_thread_waitpid()") == 20      # a reader thread ran for each fault
    assert "thread has been canceled" not in proc.stderr
