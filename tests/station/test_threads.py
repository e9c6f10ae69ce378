"""A started station runs OpenCV with the thread count its entry point set (quire.threads), so each
pipeline worker stays on its own core instead of fanning out over the others': read back from the running
`quire-station daemon`'s own status reply, before and after a scan."""

from pathlib import Path

from quire.threads import OPENCV_THREADS
from station import config as config_mod
from station.control import connect, request
from tests.conftest import run_cli
from tests.station.test_daemon import Daemon, listener, make_home  # noqa: F401 (listener is a fixture)


def _status(home: Path) -> dict:
    return request(connect(config_mod.load(home).control_socket_path), {"op": "status"})


def test_the_daemon_runs_opencv_with_the_station_thread_count(tmp_path: Path, listener):  # noqa: F811
    home = make_home(tmp_path, source="synthetic:sheets=2", dpi=50)
    daemon = Daemon(home, listener)
    try:
        listener.until(lambda m: m.get("READY") == "1")
        assert _status(home)["opencv_threads"] == OPENCV_THREADS, daemon.output()
        proc = run_cli("quire-station", "--home", home, "scan", "--dossier", "D-0042", "--material", "4-1-2",
                       "--title", "学历证明")
        assert "D-0042 4-1-2: 4 pages, sealed as bundle" in proc.stderr
        assert _status(home)["opencv_threads"] == OPENCV_THREADS, daemon.output()
    finally:
        daemon.close()
