"""Replication throughput: the primary pushing to its off-site copy beside a station syncing the same pages.

Each run: a station syncs --mb of pages into a primary archive (`quire-central serve`, a subprocess) —
the peer — then the primary pushes everything to an off-site copy (another `serve`, its own home)
with `replicate.push`, from this process as the station's sync ran from it. Both on loopback, over
pinned TLS, the same page files; the copy checks the snapshot (signatures, hashes, standards, the
audit log) inside the timed push. Prints MB/s of each, the ratio replication ÷ station sync (bar:
≥ 0.80) and the medians of --runs. Usage:

    .venv/bin/python -m bench.replication --mb 300 --runs 3
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.sync import CHUNK, _pages, _serve, sealed_station
from quire.memory import tune_allocator



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300, help="megabytes of pages")
    parser.add_argument("--runs", type=int, default=3, help="runs (medians reported)")
    args = parser.parse_args()
    tune_allocator()
    with tempfile.TemporaryDirectory(prefix="quire-bench-replication-") as tmp:
        root = Path(tmp)
        os.environ["SANE_CONFIG_DIR"] = str(root)
        pages = _pages(args.mb)
        total = sum(len(p) for p in pages)
        print(f"{len(pages)} pages, {total / 1e6:.0f} MB (300 dpi A4 JPEG sizes), loopback, pinned TLS, "
              f"{os.cpu_count()} cores, {CHUNK >> 10} KiB chunks", flush=True)
        rows = []
        for run in range(args.runs):
            sync_s, push_s = _run(pages, root / f"run{run}")
            rows.append((total / sync_s / 1e6, total / push_s / 1e6))
            print(f"run {run + 1}: station sync {rows[-1][0]:7.1f} MB/s   replication {rows[-1][1]:7.1f} MB/s   "
                  f"ratio {rows[-1][1] / rows[-1][0]:.2f}", flush=True)
    sync_mb, push_mb = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
    ratios = statistics.median(r[1] / r[0] for r in rows)
    print(f"median: station sync {sync_mb:.1f} MB/s, replication {push_mb:.1f} MB/s, "
          f"ratio {ratios:.2f} (bar ≥ 0.80: {'met' if ratios >= 0.8 else 'NOT met'})")
    return 0


def _run(pages: list[bytes], root: Path) -> tuple[float, float]:
    from central import config, replica, replicate
    from central.archive import open_archive
    from quire import keys
    from station import outbox
    from station.sync import sync

    primary_home, copy_home = root / "primary", root / "copy"
    primary, address = _serve(primary_home, "127.0.0.1", [])
    copy = None
    try:
        st = sealed_station(pages, root / "station", primary_home, address)
        t0 = time.perf_counter()
        report = sync(st)
        sync_s = time.perf_counter() - t0
        assert len(report.committed) == len(outbox.bundles(st.store)), report
        st.close()
        shutil.rmtree(root / "station")   # its page cache and disk space are not the copy's to share

        archive = open_archive(config.load(primary_home), create=False)
        try:
            replica.init(config.load(copy_home), address, keys.fingerprint(archive.public_key))
            copy, copy_address = _serve(copy_home, "127.0.0.1", [])
            copy_fp = keys.fingerprint(open_archive_key(copy_home))
            replicate.add_copy(archive, copy_address, copy_fp)
            os.sync()
            t0 = time.perf_counter()
            pushed = replicate.push(archive)
            push_s = time.perf_counter() - t0
            assert pushed.ack["bundles"] == len(report.committed), pushed
        finally:
            archive.close()
    finally:
        for proc in (primary, copy):
            if proc:
                proc.terminate()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)
    return sync_s, push_s


def open_archive_key(home: Path) -> bytes:
    from quire import keys

    return keys.signer(keys.load_key_file(home / "keys" / "central.key")).public_key


if __name__ == "__main__":
    sys.exit(main())
