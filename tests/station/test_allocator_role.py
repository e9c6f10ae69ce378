"""The station service keeps the allocator limits its entry point set, scan after scan: read back from
the running `quire-station daemon` itself (glibc's ``mp_`` through gdb and Debian's libc6-dbg symbols,
since mallopt has no getter)."""

import re
import subprocess
from pathlib import Path

from quire.memory import MMAP_THRESHOLD, TRIM_THRESHOLD
from tests.conftest import run_cli
from tests.station.test_daemon import Daemon, listener, make_home  # noqa: F401 (listener is a fixture)
from tests.systemd.tools import missing, need_tool


def _limits(pid: int) -> dict[str, int]:
    """glibc's allocator parameters in process ``pid``, as gdb reads them from its memory."""
    proc = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "print mp_.mmap_threshold",
                           "-ex", "print mp_.trim_threshold", "-ex", "print mp_.no_dyn_threshold"],
                          capture_output=True, text=True, timeout=120)
    values = re.findall(r"^\$\d+ = (\d+)$", proc.stdout, re.M)
    if len(values) != 3:
        missing(f"gdb cannot read glibc's mp_ (libc6-dbg installed? ptrace allowed?): {proc.stderr[-300:]}")
    return dict(zip(("mmap_threshold", "trim_threshold", "fixed"), map(int, values)))


def test_the_daemon_keeps_the_station_setting_after_a_scan(tmp_path: Path, listener):  # noqa: F811
    need_tool("gdb")
    home = make_home(tmp_path, source="synthetic:sheets=2", dpi=50)
    daemon = Daemon(home, listener)
    try:
        listener.until(lambda m: m.get("READY") == "1")
        wanted = {"mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD, "fixed": 1}
        assert _limits(daemon.proc.pid) == wanted
        proc = run_cli("quire-station", "--home", home, "scan", "--dossier", "D-0042", "--material", "4-1-2",
                       "--title", "学历证明")
        assert "D-0042 4-1-2: 4 pages, sealed as bundle" in proc.stderr
        # What the service syncs with after the scan: the limits bench.sync measured, not a scan's own.
        assert _limits(daemon.proc.pid) == wanted
    finally:
        daemon.close()
