"""A started station runs OpenCV with the thread count its entry point set (quire.threads), so each
pipeline worker stays on its own core instead of fanning out over the others': read back from the running
`quire-station daemon`'s own status reply, before and after a scan."""

import subprocess
import sys
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


def test_numpy_parts_the_page_workers_share_are_loaded_before_any_worker_starts():
    # numpy loads numpy.ma (np.median) and numpy.random on first use; two page workers doing so at once
    # could recurse in numpy's lazy loader (a fresh-clone CI run failed a scan that way). A fresh
    # interpreter that has imported the scan command alone must already hold both.
    shown = subprocess.run([sys.executable, "-c", "import sys, station.scan; "
                            "print(' '.join(m for m in ('numpy.ma', 'numpy.random') if m in sys.modules))"],
                           capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    assert shown.stdout.split() == ["numpy.ma", "numpy.random"]
