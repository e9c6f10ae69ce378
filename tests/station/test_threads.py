"""A started station runs OpenCV with the thread count its entry point set (quire.threads), so each
pipeline worker stays on its own core instead of fanning out over the others': read back from the running
`quire-station daemon`'s own status reply, before and after a scan."""

import signal
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


def _unblocked_threads(pid: int, signals: tuple[int, ...]) -> list[str]:
    """The threads of process `pid` (by name) whose mask lets one of `signals` through, from /proc."""
    open_to = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:
            continue    # the thread ended since the listing: it lets nothing through any more
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        blocked = int(fields["SigBlk"], 16)
        if any(not blocked & (1 << (number - 1)) for number in signals):
            open_to.append(fields["Name"].strip())
    return open_to


def test_every_thread_of_a_scanning_daemon_leaves_sigterm_to_the_main_loop(tmp_path: Path, listener):  # noqa: F811
    # A thread that does not block SIGTERM takes it with the default action: the service is killed mid-page
    # instead of stopping after the sheet in hand. numpy's OpenBLAS threads, started by an import before the
    # stop signals were blocked, did that (every daemon test got -15 from a SIGTERM).
    home = make_home(tmp_path, source="synthetic:sheets=2", dpi=50)
    daemon = Daemon(home, listener)
    try:
        listener.until(lambda m: m.get("READY") == "1")
        run_cli("quire-station", "--home", home, "scan", "--dossier", "D-0042", "--material", "4-1-2",
                "--title", "学历证明")
        threads = list(Path(f"/proc/{daemon.proc.pid}/task").iterdir())
        assert len(threads) > 1, daemon.output()
        assert _unblocked_threads(daemon.proc.pid, (signal.SIGTERM, signal.SIGINT)) == [], daemon.output()
        assert daemon.terminate() == 0, daemon.output()
    finally:
        daemon.close()
