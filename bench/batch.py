"""A continuous station batch: scan() on N pages fed as fast as it takes them; its peak memory and speed.

    python -m bench.batch DIR [--pages 300]

DIR holds pre-rendered raw pages (``*.npy``, RGB at 300 dpi) that a replaying scanner feeds in turn;
the batch runs in its own process so its peak RSS is the station's, not the page generator's.
Prints one JSON line.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from quire.memory import tune_allocator
from quire.threads import limit_opencv_threads
from station import config, home
from station.capture import RawPage
from station.scan import scan

DPI = 300


class ReplayScanner:
    """A scanner that never waits: pre-rendered pages, one after another, ``count`` in all."""

    name = "replay"

    def __init__(self, files: list[Path], count: int, dpi: int = DPI):
        self.files, self.count, self.dpi = files, count, dpi

    def pages(self):
        for i in range(self.count):
            path = self.files[i % len(self.files)]
            yield RawPage(np.load(path), self.dpi, origin=f"replay:{path.name}")

    def close(self) -> None:
        pass


def run(pages_dir: Path, count: int, dpi: int = DPI) -> dict:
    """Scan ``count`` replayed pages (scanned at ``dpi``) into a fresh station; the figures of the run."""
    files = sorted(pages_dir.glob("*.npy"))
    if not files:
        raise SystemExit(f"no pages (*.npy) in {pages_dir}")
    with tempfile.TemporaryDirectory(prefix="bench-station-") as root:
        station = home.init(config.load(Path(root), dpi=dpi), "st-bench")
        try:
            started = time.perf_counter()
            result = scan(station, {"archive_no": "BENCH-0001"}, {"item": "1-1", "title": "bench"},
                          ReplayScanner(files, count, dpi))
            seconds = time.perf_counter() - started
        finally:
            station.close()
    peak_kib = peak_rss_kib()
    return {"pages": result.total_pages, "seconds": round(seconds, 1),
            "pages_per_min": round(60 * result.total_pages / seconds, 1), "peak_rss_mb": round(peak_kib / 1024, 1),
            "held_s": round(result.held_s, 1), "process_s": round(result.process_s, 1),
            "capture_s": round(result.capture_s, 1), "store_s": round(result.store_s, 1),
            "workers": station.config.pipeline.workers or len(os.sched_getaffinity(0))}


def peak_rss_kib() -> int:
    """This process's peak resident memory. VmHWM, not ru_maxrss: on Linux ru_maxrss after exec still
    counts the parent's memory that the child was forked with."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Peak memory and speed of a continuous station batch.")
    parser.add_argument("pages_dir", type=Path, help="directory of pre-rendered raw pages (*.npy)")
    parser.add_argument("--pages", type=int, default=300, help="pages in the batch (default 300)")
    args = parser.parse_args(argv)
    tune_allocator()    # as the station's CLI does: the batch runs with the service's allocator limits
    limit_opencv_threads()
    print(json.dumps(run(args.pages_dir, args.pages)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
