"""The station's scan path inside a Raspberry Pi's budget: pages per minute beside the scanners it must keep up with.

    (as root) .venv/bin/python -m bench.station --budget pi5-sd [--sheets 20]   (pi4-sd, pi4-ssd, pi5-sd, pi5-ssd, none)

A child process runs ``station.scan.scan`` — spool, pipeline workers, page store, seal — on duplex A4
colour sheets at 300 dpi that the synthetic source rendered beforehand (a real scanner's pixels cost
the station nothing to make, so neither do these), fed as fast as the station takes them. The station's
home is an ext4 file system on a loop device; the budget limits:

- CPU: a cgroup v1 ``cpu`` quota of (Pi cores × per-core speed ratio) of this machine's cores. The ratio
  of a Pi 4 (Cortex-A72, 1.5 GHz) core to a 2018 x86 desktop core is 0.27: the only published figure
  found for both on the same program is a serial 4096² float64 matrix product, 66.12 s on a Pi 4B and
  17.76 s on a Mac mini 2018 i5 (zhonguncle.github.io, "Performance Record of Raspberry Pi 4B", 2023).
  No published libjpeg-turbo (tjbench) or OpenCV figure for a Pi and an x86 core on the same image was
  found; NEON versus AVX2 SIMD in libjpeg-turbo and OpenCV may move the ratio either way — measure
  ``process_page`` on a real Pi and correct RATIO below. Pi 5 (Cortex-A76, 2.4 GHz): 2.5 × Pi 4, the
  middle of the "2–3× CPU performance" Raspberry Pi Ltd announced for it (raspberrypi.com, 2023).
  This machine's cores (AMD EPYC) are taken as equal to that desktop core; the quota is capped at the
  cores this machine has, and other work on it shares them.
- Storage: ``blkio.throttle.write_bps_device`` and ``write_iops_device`` on the loop device (set on the
  root cgroup, so the kernel's writeback threads are held to it too). SD card on a Pi 4: 30 MB/s
  sequential write (Jeff Geerling's pidramble.com microSD benchmarks on a Pi 4: dd writes of 21–40 MB/s
  for good cards) and 1,200 write IOPS; on a Pi 5: 45 MB/s and 2,000 IOPS (Raspberry Pi's A2 card's
  stated 4K random writes: 1,200 IOPS on a Pi 4 at DDR50, 2,000 on a Pi 5 at SDR104). A USB 3 SSD:
  300 MB/s and 10,000 IOPS on either (a typical SATA SSD behind a UAS bridge; not from a cited figure).

Printed per budget: images and duplex sheets (ppm) per minute beside the scanners (60 ppm / 120 ipm
and 30 ppm duplex at 300 dpi colour), bytes written to the device and flushes per image, the CPU
time an image took, and the station process's peak resident memory; then what the budget's cores
and device would allow at those costs were this machine idle (its cores are shared with other work,
so the speed reached in the run is a lower bound).

What this cannot show: a Pi's memory bandwidth and caches (an x86 core with a quota is a fast core
part of the time, not a slow core all of it); SD card latency spikes, wear levelling pauses and
writes slowing as a card fills; the kernel's page cache and dirty limits of a Pi with 4–8 GB (this
machine has more, so writeback starts later); USB and SANE driver cost of a real scanner; thermal
throttling; and the arm64 builds of the libraries themselves.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from quire.memory import tune_allocator
from quire.threads import limit_opencv_threads
from station import config, home
from station.capture.synthetic import SyntheticSource
from station.scan import default_workers, scan

from .batch import DPI, ReplayScanner, peak_rss_kib

RATIO_PI4 = 0.27            # one Pi 4 core ÷ one x86 desktop core (see above)
RATIO_PI5 = RATIO_PI4 * 2.5
PI_CORES = 4


@dataclass(frozen=True)
class Budget:
    """What a station box may use: CPU in this machine's cores, and the write speed of its storage."""

    cores: float | None          # None: unlimited
    write_bps: int | None
    write_iops: int | None
    label: str


BUDGETS = {
    "pi4-sd": Budget(4 * RATIO_PI4, 30_000_000, 1_200, "Pi 4, SD card"),
    "pi4-ssd": Budget(4 * RATIO_PI4, 300_000_000, 10_000, "Pi 4, USB 3 SSD"),
    "pi5-sd": Budget(4 * RATIO_PI5, 45_000_000, 2_000, "Pi 5, SD card"),
    "pi5-ssd": Budget(4 * RATIO_PI5, 300_000_000, 10_000, "Pi 5, USB 3 SSD"),
    "none": Budget(None, None, None, "this machine"),
}
SCANNERS = [("60 ppm duplex (120 ipm)", 120), ("30 ppm duplex (60 ipm)", 60)]
_BLKIO = Path("/sys/fs/cgroup/blkio")
_CPU = Path("/sys/fs/cgroup/cpu")


class DuplexReplay(ReplayScanner):
    """Pre-rendered images fed as the fronts and backs of duplex sheets."""

    duplex = True

    def pages(self):
        for i, raw in enumerate(super().pages()):
            yield replace(raw, side=("front", "back")[i % 2], area_mm=(210.0, 297.0))


def render(directory: Path, sheets: int) -> None:
    """Render ``sheets`` duplex sheets (colour and grey-content pages mixed) at 300 dpi as .npy files."""
    for i, raw in enumerate(SyntheticSource(seed=11, sheets=sheets, dpi=DPI).pages()):
        np.save(directory / f"{i:03d}.npy", raw.image)


class LoopDisk:
    """An ext4 file system on a loop device, its writes throttled to ``budget`` for every writer."""

    def __init__(self, root: Path, budget: Budget, size_gb: int = 4):
        self.image, self.mount = root / "disk.img", root / "mnt"
        self.mount.mkdir()
        with open(self.image, "wb") as fh:
            fh.truncate(size_gb << 30)
        self.device = _run("losetup", "--find", "--show", str(self.image)).strip()
        # Inode tables and journal zeroed now, not by ext4's lazy-init thread during the run (counted as writes).
        _run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", self.device)
        _run("mount", self.device, str(self.mount))
        self.name = Path(self.device).name
        self.majmin = Path(f"/sys/block/{self.name}/dev").read_text().strip()
        self.rules = []
        if budget.write_bps:
            self.rules = [("blkio.throttle.write_bps_device", budget.write_bps),
                          ("blkio.throttle.write_iops_device", budget.write_iops)]
        for rule, value in self.rules:
            (_BLKIO / rule).write_text(f"{self.majmin} {value}")

    def counters(self) -> tuple[int, int]:
        """Bytes written to the device, write requests and flush requests it completed (after syncing what is dirty)."""
        os.sync()
        fields = Path(f"/sys/block/{self.name}/stat").read_text().split()
        return int(fields[6]) * 512, int(fields[4]), int(fields[15]) if len(fields) > 15 else 0

    def close(self) -> None:
        for rule, _ in self.rules:
            (_BLKIO / rule).write_text(f"{self.majmin} 0")
        _run("umount", str(self.mount))
        _run("losetup", "-d", self.device)
        self.image.unlink()


class CpuQuota:
    """A cgroup v1 cpu group allowed ``cores`` of this machine's CPUs (capped at those it has)."""

    def __init__(self, cores: float | None):
        self.path = _CPU / f"quire-bench-{os.getpid()}"
        self.path.mkdir()
        self.cores = min(cores, os.cpu_count() or 1) if cores else None
        period = 100_000
        (self.path / "cpu.cfs_period_us").write_text(str(period))
        (self.path / "cpu.cfs_quota_us").write_text(str(int(self.cores * period)) if self.cores else "-1")

    def close(self) -> None:
        self.path.rmdir()


def run_budget(name: str, pages_dir: Path, images: int, workers: int) -> dict:
    """Run the scan child inside budget ``name``; its figures and the device's."""
    budget = BUDGETS[name]
    with tempfile.TemporaryDirectory(prefix="bench-pi-", dir="/var/tmp") as root:
        disk = LoopDisk(Path(root), budget)
        quota = CpuQuota(budget.cores)
        try:
            before = disk.counters()
            proc = subprocess.run([sys.executable, "-m", "bench.station", "--child", str(disk.mount / "st"),
                                   "--pages-dir", str(pages_dir), "--images", str(images), "--workers", str(workers),
                                   "--cgroup", str(quota.path)], capture_output=True, text=True, check=False)
            if proc.returncode:
                raise SystemExit(f"the scan under {name} failed:\n{proc.stderr[-3000:]}")
            figures = json.loads(proc.stdout.splitlines()[-1])
            after = disk.counters()
            throttled = int((quota.path / "cpu.stat").read_text().split()[3])
        finally:
            quota.close()
            disk.close()
    pages = figures["pages"]
    written, writes, flushes = ((a - b) / pages for a, b in zip(after, before))
    # What the budget allows were this machine idle: its cores at the CPU time an image took, and its
    # device at the bytes and write requests an image took.
    cpu_ipm = 60 * (quota.cores or os.cpu_count() or 1) / (figures["cpu_s"] / pages)
    disk_ipm = 60 * min(budget.write_bps / written if written else float("inf"),
                        budget.write_iops / writes if writes else float("inf")) if budget.write_bps else float("inf")
    figures.update(budget=name, label=budget.label, cores=quota.cores, throttled_periods=throttled,
                   mb_per_image=written / 1e6, flushes_per_image=flushes, cpu_ipm=cpu_ipm, disk_ipm=disk_ipm)
    return figures


def child(home_dir: Path, pages_dir: Path, images: int, workers: int, cgroup: Path) -> dict:
    """The station side: join the budget's cgroup, then scan ``images`` replayed images as duplex sheets."""
    (cgroup / "cgroup.procs").write_text(str(os.getpid()))
    tune_allocator()
    limit_opencv_threads()   # as the station's CLI does
    home_dir.mkdir(parents=True)
    (home_dir / "station.toml").write_text(f"dpi = {DPI}\n[pipeline]\nworkers = {workers}\n")
    station = home.init(config.load(home_dir), "st-bench")
    try:
        started = time.perf_counter()
        result = scan(station, {"archive_no": "BENCH-0001"}, {"item": "1-1", "title": "bench"},
                      DuplexReplay(sorted(pages_dir.glob("*.npy")), images, DPI))
        seconds = time.perf_counter() - started
    finally:
        station.close()
    used = os.times()
    return {"pages": result.total_pages, "seconds": seconds, "peak_rss_mb": peak_rss_kib() / 1024,
            "cpu_s": used.user + used.system,
            "held_s": result.held_s, "process_s": result.process_s, "store_s": result.store_s}


def table(rows: list[dict]) -> str:
    """The figures side by side, each budget's speed beside the scanners'."""
    head = (f"{'budget':<9} {'box':<16} {'cores':>5} {'img/min':>8} {'ppm dup':>8} "
            + " ".join(f"{label:>24}" for label, _ in SCANNERS)
            + f" {'MB/img':>7} {'flush/img':>9} {'CPU s/img':>9} {'throttled':>9} {'peak MB':>8}"
            + f" {'CPU cap ipm':>11} {'disk cap ipm':>12}")
    lines = [head]
    for r in rows:
        ipm = 60 * r["pages"] / r["seconds"]
        keeps = " ".join(f"{('keeps up' if ipm >= need else 'falls behind') + f' {ipm / need:.2f}×':>24}"
                         for _, need in SCANNERS)
        cores = f"{r['cores']:.2f}" if r["cores"] else "all"
        lines.append(f"{r['budget']:<9} {r['label']:<16} {cores:>5} {ipm:>8.1f} {ipm / 2:>8.1f} {keeps} "
                     f"{r['mb_per_image']:>7.2f} {r['flushes_per_image']:>9.1f} {r['cpu_s'] / r['pages']:>9.2f} "
                     f"{r['throttled_periods']:>9} {r['peak_rss_mb']:>8.0f} {r['cpu_ipm']:>11.0f} "
                     f"{r['disk_ipm']:>12.0f}")
    return "\n".join(lines)


def _run(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The station's scan path inside a Raspberry Pi's CPU and storage.")
    parser.add_argument("--budget", action="append", choices=[*BUDGETS, "all"],
                        help="budget to run (repeat, or 'all'; default all)")
    parser.add_argument("--sheets", type=int, default=20, help="duplex sheets fed per budget (default 20)")
    parser.add_argument("--distinct", type=int, default=4, help="distinct sheets rendered and fed in turn (default 4)")
    # What the station itself runs on a Pi's four cores (station.scan.default_workers): three pipeline
    # workers, the fourth core for capture, spool, store and sync. One worker per core (the default until
    # 2026-12) held four pages in processing at once and peaked at 450-470 MB.
    parser.add_argument("--workers", type=int, default=default_workers(PI_CORES),
                        help=f"pipeline workers (default {default_workers(PI_CORES)}, the station's own on a "
                             f"{PI_CORES}-core Pi)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pages-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cgroup", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.pages_dir, args.images, args.workers, args.cgroup)))
        return 0
    if os.geteuid() != 0 or not (_BLKIO / "blkio.throttle.write_bps_device").exists() or not _CPU.is_dir():
        raise SystemExit("bench.station needs root and cgroup v1 cpu and blkio controllers (loop device, quotas)")
    names = list(BUDGETS) if not args.budget or "all" in args.budget else args.budget
    with tempfile.TemporaryDirectory(prefix="bench-pi-pages-") as pages:
        render(Path(pages), args.distinct)
        rows = []
        for name in names:
            rows.append(run_budget(name, Path(pages), 2 * args.sheets, args.workers))
            print(f"{name}: done", file=sys.stderr)
    print(f"{2 * args.sheets} images ({args.sheets} duplex A4 colour sheets, 300 dpi) per budget, "
          f"{args.workers} pipeline workers")
    print(table(rows))
    print("img/min: reached in this run, on a machine whose cores other work shares; 'throttled': quota periods "
          "that held the station back; CPU cap and disk cap: images per minute the budget's cores and device "
          "allow at the CPU time, bytes and write requests an image took here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
