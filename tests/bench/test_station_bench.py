"""The Pi budget bench runs the station's scan path on a loop device and prints every figure it promises."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.systemd.tools import missing

ROOT = Path(__file__).resolve().parents[2]


def test_the_station_bench_prints_speed_beside_the_scanners_bytes_flushes_and_memory():
    if os.geteuid() != 0 or not Path("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device").exists():
        missing("needs root and cgroup v1 cpu and blkio controllers")
    out = subprocess.run([sys.executable, "-m", "bench.station", "--budget", "pi4-sd", "--sheets", "2",
                          "--distinct", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
    assert "4 images (2 duplex A4 colour sheets, 300 dpi) per budget" in out, out
    assert "60 ppm duplex (120 ipm)" in out and "30 ppm duplex (60 ipm)" in out, out
    row = re.search(r"^pi4-sd +Pi 4, SD card +1\.08 +([\d.]+) +([\d.]+) +(keeps up|falls behind) [\d.]+× +"
                    r"(keeps up|falls behind) [\d.]+× +([\d.]+) +([\d.]+) +([\d.]+) +(\d+) +(\d+) +(\d+) +(\d+)$",
                    out, re.M)
    assert row, out
    ipm, ppm = float(row.group(1)), float(row.group(2))
    assert ipm > 0 and ppm == pytest.approx(ipm / 2, abs=0.06)
    assert float(row.group(5)) > 0 and int(row.group(9)) > 50      # bytes written per image; peak MB
    # no throttle rule is left on a loop device (major 7) once the bench is done
    rules = Path("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device").read_text().splitlines()
    assert not [rule for rule in rules if rule.startswith("7:")], rules
