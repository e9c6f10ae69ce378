"""The scale-out bench syncs stations at once into each kind of archive storage and prints every figure it
promises, with no error: SQLite + disk, PostgreSQL + S3 with one process and with three."""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_two_stations_sync_into_every_setup_without_an_error_and_the_ratios_are_printed():
    # The stations' homes live in the cache, and a station's control socket path must fit a Unix socket's
    # 108 bytes: pytest's own folders under an xdist worker are too deep.
    with tempfile.TemporaryDirectory(prefix="qsb-") as short:
        _run_tiny_bench(Path(short))


def _run_tiny_bench(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "bench.scaleout", "--stations", "2", "--bundles", "2", "--pages", "2",
                          "--page-kb", "100", "--runs", "1", "--clients", "2", "--cache", str(tmp_path / "cache")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"bench.scaleout exited {run.returncode}\n{run.stdout}\n{run.stderr[-4000:]}"
    out = run.stdout
    assert re.search(r"^2 stations × 2 bundles × 2 pages of \d+ kB", out, re.M), out
    for setup, ratio in (("sqlite+disk", r"100%"), ("pg+s3 x1", r"\d+%"), ("pg+s3 x3", r"\d+%")):
        figures = r" +([\d.]+)" * 2 + r" +(\d+)" * 5   # commits/s, MB/s, p95 ms, errors, deferred, retries, waits
        row = re.search(rf"^{re.escape(setup)}{figures} +[\d.]+ +{ratio}$", out, re.M)
        assert row, out
        assert float(row.group(1)) > 0 and float(row.group(2)) > 0, row.group(0)
        assert row.group(4) == "0", f"{setup}: errors\n{out}"   # every bundle of every station committed
    goal = r"^goal: pg\+s3 x1 ≥ 50 % of sqlite\+disk throughput \(\d+%: (met|NOT met)\), 0 errors \(0: met\)"
    assert re.search(goal, out, re.M), out
