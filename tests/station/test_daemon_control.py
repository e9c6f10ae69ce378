"""Who may drive the station service: root, its own user and its control group; others are told
how a technician lets them in, by the kernel (socket mode) and by the daemon (peer credentials)."""

import grp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from station.control import Peer, connect, peer_allowed, request
from station.daemon import Daemon
from tests.conftest import make_station
from tests.station.test_notify import NotifyListener
from tests.systemd.tools import need_root

NOBODY = 65534


def test_peer_rules():
    me = os.geteuid()
    assert peer_allowed(Peer(1, 0, 0), own_uid=me, group_gid=4242)                 # root
    assert peer_allowed(Peer(1, me, 4242), own_uid=me, group_gid=4242)             # the service's own user
    assert peer_allowed(Peer(1, 12345, 4242), own_uid=me, group_gid=4242)          # primary group
    assert not peer_allowed(Peer(1, 12345, 12345), own_uid=me, group_gid=4242)     # unknown user, other group
    assert not peer_allowed(Peer(1, NOBODY, NOBODY), own_uid=me, group_gid=0)      # nobody is not in root's group


@pytest.fixture
def shared_home():
    """A station home others can reach (pytest's tmp dirs are private to root)."""
    top = Path(tempfile.mkdtemp(prefix="qc"))
    top.chmod(0o755)
    yield top / "st"
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def start(shared_home):
    """Start a daemon (on a thread of this process) for a station in ``shared_home``; READY on return."""
    started = []

    def _start(**settings) -> Daemon:
        station = make_station(shared_home, dpi=50, source="synthetic:sheets=1", **settings)
        (shared_home / "station.toml").write_text(
            'source = "synthetic:sheets=1"\ndpi = 50\n' + "".join(f'{k} = "{v}"\n' for k, v in settings.items()))
        shared_home.chmod(0o755)
        config = station.config
        station.close()
        listener = NotifyListener()
        daemon = Daemon(config, env={"NOTIFY_SOCKET": listener.path})
        thread = threading.Thread(target=daemon.run, name="daemon-under-test")
        thread.start()
        started.append((daemon, thread, listener))
        listener.until(lambda m: m.get("READY") == "1")
        return daemon

    yield _start
    for daemon, thread, listener in started:
        daemon.stop()
        thread.join(60)
        listener.close()


@pytest.fixture
def running(start):
    return start()


# The CLI as user nobody: loaded as root (the interpreter may live where nobody cannot read),
# then it drops to nobody before it reads the config or touches the socket.
_NOBODY_CLI = f"""
import os, sys
import station.capture, station.cli, station.config, station.control, station.errors
station.cli.build_parser().parse_args(sys.argv[1:])  # argparse loads what it needs now
os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
sys.exit(station.cli.main(sys.argv[1:]))
"""


def _as_nobody(home: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _NOBODY_CLI, "--home", str(home), *args],
                          capture_output=True, text=True, timeout=120)


def test_the_socket_admits_the_service_group_only(running, shared_home):
    need_root()
    sock = running.config.control_socket_path
    assert sock.stat().st_mode & 0o777 == 0o660 and sock.stat().st_gid == os.getegid()
    assert request(connect(sock), {"op": "queue_ls"})["jobs"] == []   # root may

    proc = _as_nobody(shared_home, "queue", "ls")   # the kernel refuses: mode 0660
    assert proc.returncode == 77, proc.stderr
    assert "permission denied" in proc.stderr and "sudo usermod -aG root nobody" in proc.stderr

    sock.chmod(0o666)                               # a mistake on the socket: the daemon still refuses
    proc = _as_nobody(shared_home, "queue", "add", "--dossier", "D-1", "--material", "1-1", "--title", "x")
    assert proc.returncode == 77, proc.stderr
    assert "user nobody may not control the station service" in proc.stderr
    assert "sudo usermod -aG root nobody" in proc.stderr
    assert running.jobs.jobs() == []


def test_a_second_daemon_will_not_take_the_scanner(running):
    second = Daemon(running.config, env={})
    with pytest.raises(Exception, match="already running"):
        second.run()


def test_a_member_of_the_control_group_may_queue_and_is_recorded_as_the_operator(start, shared_home):
    need_root()
    daemon = start(control_group="nogroup")           # nobody's own group stands in for quire-operators
    sock = daemon.config.control_socket_path
    assert grp.getgrgid(sock.stat().st_gid).gr_name == "nogroup" and sock.stat().st_mode & 0o777 == 0o660
    proc = _as_nobody(shared_home, "queue", "add", "--dossier", "D-1", "--material", "1-1", "--title", "履历表")
    assert proc.returncode == 0, proc.stderr
    assert "queued D-1 1-1 «履历表» at position 1" in proc.stdout
    (job,) = daemon.jobs.jobs()
    assert job["operator"] == "nobody"
