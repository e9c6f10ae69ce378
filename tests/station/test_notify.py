"""The sd_notify protocol as systemd receives it: datagrams on a real NOTIFY_SOCKET the test owns."""

import os
import queue
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from station.notify import Notifier, Watchdog, watchdog_interval_s


class NotifyListener:
    """A NOTIFY_SOCKET as systemd creates it: an AF_UNIX datagram socket, drained continuously (as
    systemd does: a unix datagram sender blocks once a few messages wait unread)."""

    def __init__(self):
        # sun_path holds 108 bytes: a short directory, not pytest's long tmp_path.
        self.dir = Path(tempfile.mkdtemp(prefix="qn"))
        self.path = str(self.dir / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self._inbox: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._drain, name="notify-listener", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            self._inbox.put(dict(line.split("=", 1) for line in data.split("\n") if line))

    def next(self, timeout_s: float = 60) -> dict | None:
        """The next message, or None when none arrives within ``timeout_s``."""
        try:
            return self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def until(self, predicate, timeout_s: float = 60) -> list[dict]:
        """Messages up to and including the first one ``predicate`` accepts; fail when it never comes."""
        got = []
        deadline = time.monotonic() + timeout_s
        while True:
            message = self.next(max(0.0, deadline - time.monotonic()))
            assert message is not None, f"no matching notification; last ones: {got[-5:]}"
            got.append(message)
            if predicate(message):
                return got

    def close(self) -> None:
        self._closed.set()
        self._reader.join()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def listener():
    lst = NotifyListener()
    yield lst
    lst.close()


def status_has(text: str):
    return lambda m: text in m.get("STATUS", "")


def test_messages_arrive_as_systemd_reads_them(listener):
    notifier = Notifier.from_env({"NOTIFY_SOCKET": listener.path})
    assert notifier.ready("idle · outbox 0 bundles · central online")
    assert listener.next(5) == {"READY": "1", "STATUS": "idle · outbox 0 bundles · central online"}
    notifier.status("jammed\nat page 3")   # a newline would start a new assignment
    assert listener.next(5) == {"STATUS": "jammed at page 3"}
    notifier.stopping("stopping: finishing the sheet in hand")
    assert listener.next(5) == {"STOPPING": "1", "STATUS": "stopping: finishing the sheet in hand"}
    notifier.watchdog()
    assert listener.next(5) == {"WATCHDOG": "1"}


def test_abstract_socket_addresses_work():
    name = f"quire-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    notifier = Notifier("@" + name)
    try:
        notifier.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent():
    notifier = Notifier.from_env({})
    assert not notifier.enabled and notifier.ready("up") is False and notifier.watchdog() is False


def test_a_vanished_manager_does_not_break_the_daemon(tmp_path):
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.status("still scanning") is False


def test_watchdog_timeout_comes_from_systemd_and_only_for_this_process():
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None


def test_watchdog_pings_at_half_the_configured_timeout(listener):
    now = [100.0]
    notifier = Notifier(listener.path)
    dog = Watchdog(notifier, 10.0, clock=lambda: now[0])
    sent = []
    for t in (100.0, 101.0, 104.9, 105.0, 106.0, 109.9, 110.0, 130.0):
        now[0] = t
        if dog.ping_if_due():
            sent.append(t)
    assert sent == [100.0, 105.0, 110.0, 130.0]
    assert [listener.next(5) for _ in sent] == [{"WATCHDOG": "1"}] * len(sent)
    assert listener.next(0.05) is None


def test_no_watchdog_configured_means_no_pings(listener):
    notifier = Notifier(listener.path)
    dog = Watchdog(notifier, None)
    assert not any(dog.ping_if_due() for _ in range(3))
    assert listener.next(0.05) is None

