"""Pressing Scan: the daemon polls the scanner's button sensor while idle and runs the next queued
batch. SANE's `test` device stands in for the scanner; its settable test option is the button."""

import signal
import threading
import time

import pytest

from station.control import connect, request
from station.daemon import Daemon
from tests.conftest import make_station
from tests.station.test_notify import NotifyListener, status_has

BUTTON = "bool_soft_select_soft_detect"   # the sane-test profile's stand-in Scan sensor


def _set_button_while_closed(value: bool) -> None:
    """The test backend keeps option values per device across opens in one process: start released."""
    from station.capture.sane_source import _sane

    dev = _sane().open("test:0")
    try:
        dev.enable_test_options = True
        setattr(dev, BUTTON, value)
    finally:
        dev.close()


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


@pytest.fixture
def running(tmp_path, listener):
    """A daemon on this thread's SANE test device, running on its own thread, READY."""
    _set_button_while_closed(False)
    station = make_station(tmp_path / "st", dpi=50, source="sane:test:0", button_poll_s=0.01)
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
        _set_button_while_closed(False)
        # SANE's reader threads reset SIGPIPE to its default in this process; pytest expects it ignored.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    assert listener.until(lambda m: m.get("STOPPING") == "1")


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
