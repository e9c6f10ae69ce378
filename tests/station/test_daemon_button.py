"""Pressing Scan: the daemon polls the scanner's button sensor while idle and runs the next queued
batch. SANE's `test` device stands in for the scanner; its settable test option is the button."""

import os
import signal
import threading
import time

import pytest

from station.control import connect, request
from station.daemon import Daemon
from tests.conftest import make_station
from tests.station.test_notify import NotifyListener, status_has

BUTTON = "bool_soft_select_soft_detect"   # the sane-test profile's stand-in Scan sensor


def _wait_for_reads(daemon: Daemon, more: int) -> None:
    """Until the daemon has read the button ``more`` more times (it polls every 10 ms)."""
    target = daemon.scanner.button_reads + more
    deadline = time.monotonic() + 60
    while daemon.scanner.button_reads < target:
        assert time.monotonic() < deadline, "the daemon stopped polling the button"
        time.sleep(0.005)


@pytest.fixture
def listener():
    lst = NotifyListener()
    yield lst
    lst.close()


def _run_daemon(tmp_path, listener, **settings):
    """A daemon on the SANE test device (in its own driver process, so the button starts released),
    running on its own thread, READY."""
    station = make_station(tmp_path / "st", dpi=50, source="sane:test:0", button_poll_s=0.01, **settings)
    config = station.config
    station.close()
    daemon = Daemon(config, env={"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "5000000"})
    thread = threading.Thread(target=daemon.run, name="daemon-under-test")
    thread.start()
    try:
        ready = listener.until(lambda m: m.get("READY") == "1" or daemon.stopping)[-1]
        assert ready.get("READY") == "1"
        yield daemon
    finally:
        daemon.stop()
        thread.join(60)
    assert listener.until(lambda m: m.get("STOPPING") == "1")


@pytest.fixture
def running(tmp_path, listener):
    yield from _run_daemon(tmp_path, listener)


HANG_TIMEOUT_S = 6.0   # longer than two watchdog periods (2.5 s each): the wait must feed the watchdog


@pytest.fixture
def running_with_short_deadlines(tmp_path, listener):
    yield from _run_daemon(tmp_path, listener, scanner_page_timeout_s=HANG_TIMEOUT_S)


def _queue(daemon, archive_no, item, title):
    sock = connect(daemon.config.control_socket_path)
    return request(sock, {"op": "queue_add", "dossier": {"archive_no": archive_no},
                          "material": {"item": item, "title": title}, "operator": "李四"})


def test_ready_only_once_the_scanner_is_probed_and_held(running):
    assert running.scanner.held and running.scanner.profile.name == "sane-test"
    status = request(connect(running.config.control_socket_path), {"op": "status"})
    assert status["scanner"]["device"] == "test:0" and status["scanner"]["scan_button"] == BUTTON.replace("_", "-")


def test_scan_button_runs_the_next_queued_batch_once_per_press(running, listener):
    daemon = running
    _queue(daemon, "D-0042", "4-1-2", "学历证明")
    _queue(daemon, "D-0043", "1-1", "干部履历表")
    listener.until(status_has("ready, next D-0042 4-1-2 (+1 queued)"))
    button = daemon.scanner.source.dev

    setattr(button, BUTTON, True)    # press
    listener.until(status_has("scanning D-0042 4-1-2 page 10"))
    listener.until(status_has("ready, next D-0043 1-1; sealed D-0042 4-1-2 (10 pages)"))
    (sealed,) = [b for b in daemon.station.store.batches() if b["state"] == "sealed"]
    assert (sealed["archive_no"], sealed["pages"], sealed["operator"]) == ("D-0042", 10, "李四")

    _wait_for_reads(daemon, 5)       # still held down: one press, one batch
    assert [j["dossier"]["archive_no"] for j in daemon.jobs.jobs()] == ["D-0043"]

    setattr(button, BUTTON, False)   # release …
    _wait_for_reads(daemon, 2)
    setattr(button, BUTTON, True)    # … and press again
    listener.until(status_has("idle, queue empty; sealed D-0043 1-1 (10 pages)"))
    assert daemon.jobs.jobs() == []

    setattr(button, BUTTON, False)
    _wait_for_reads(daemon, 2)
    setattr(button, BUTTON, True)    # nothing queued: the operator is told what to do
    listener.until(status_has("Scan pressed but no batch is queued: 'quire-station queue add …'"))


def test_doctor_asks_the_service_about_the_scanner_it_holds(running):
    from station import doctor

    service = doctor.service_status(running.config)
    assert doctor.check_service(service).level == "OK"
    check = doctor.check_scanner(running.config, service)
    assert check.level == "OK", check.line()
    assert "test:0 (Noname frontend-tester): profile sane-test" in check.message
    assert "Scan button 'bool-soft-select-soft-detect'" in check.message


# The test backend's reader waits 80 ms before each of a page's ~14 buffers: about a second a page.
SLOW = {"read_delay": True, "read_delay_duration": 80_000}


def test_a_hung_driver_is_killed_and_the_daemon_runs_on(running_with_short_deadlines, listener):
    daemon = running_with_short_deadlines
    _queue(daemon, "D-0042", "4-1-2", "学历证明")
    listener.until(status_has("ready, next D-0042 4-1-2"))
    source = daemon.scanner.source
    for name, value in SLOW.items():
        setattr(source.dev, name, value)
    hung = source.driver.pid

    setattr(source.dev, BUTTON, True)       # press
    listener.until(status_has("scanning D-0042 4-1-2 page 2"))
    os.kill(hung, signal.SIGSTOP)           # the driver freezes in the middle of a later page
    during = listener.until(status_has("last stop: the scanner driver stopped responding"))
    # Fed while the daemon waited on the frozen driver: only the wait can ping twice in that time.
    assert sum(m.get("WATCHDOG") == "1" for m in during) >= 2
    line = during[-1]["STATUS"]
    assert f"no answer within {HANG_TIMEOUT_S:g} s while scanning a page" in line and "check the feeder" in line

    (batch,) = daemon.station.store.batches()
    kept = batch["pages"]
    assert batch["state"] == "interrupted" and kept >= 2
    assert [p["n"] for p in daemon.station.store.pages(batch["id"])] == list(range(1, kept + 1))

    # The daemon runs on: the watchdog is fed, and a fresh driver reads the button again.
    listener.until(lambda m: m.get("WATCHDOG") == "1")
    _wait_for_reads(daemon, 3)
    assert daemon.scanner.held and source.driver.starts == 2 and source.driver.pid != hung
    try:
        os.kill(hung, 0)
        raise AssertionError(f"the hung driver {hung} is still there")
    except ProcessLookupError:
        pass

    setattr(source.dev, BUTTON, True)       # the fresh driver's button starts released: press again
    listener.until(status_has(f"idle, queue empty; sealed D-0042 4-1-2 ({kept + 10} pages)"))
    assert [p["n"] for p in daemon.station.store.pages(batch["id"])] == list(range(1, kept + 11))
