"""Fixity scrub and export speed against their plain peers, in one run.

Builds a real archive (a station seals a dossier of 300-dpi A4 JPEG-sized pages in materials of 20
and syncs it to 'quire-central serve' on loopback), then alternates, --runs times each:

- the scrub (central.scrub, the whole cycle: SHA-256 and SM3 of every blob) against ``sha256sum``
  over the same blob files, both with the files in the page cache (warm) and evicted from it first
  with posix_fadvise (cold, as a nightly scrub finds them); the bar is scrub ≥ 80 % of sha256sum's MB/s;
- ``export`` of the dossier as a BagIt bag against ``cp -r`` of its page files plus ``sha256sum`` of
  the copies; the bar is export ≤ 2× the peer's time.

Prints medians and ratios. Usage:

    .venv/bin/python -m bench.fixity --pages 500 --runs 3
"""

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from quire.memory import tune_allocator

from bench.sync import CHUNK, _page, _serve


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=500, help="pages in the dossier (default 500)")
    parser.add_argument("--runs", type=int, default=3, help="runs per method (median reported)")
    args = parser.parse_args()
    tune_allocator()
    with tempfile.TemporaryDirectory(prefix="quire-bench-fixity-") as tmp:
        root = Path(tmp)
        os.environ["SANE_CONFIG_DIR"] = str(root)  # no scanner needed
        pages = _dossier_pages(args.pages)
        total = sum(len(p) for p in pages)
        print(f"dossier of {len(pages)} pages, {total / 1e6:.0f} MB, 300 dpi A4 JPEG sizes, {os.cpu_count()} cores",
              flush=True)
        home = _build(root, pages)
        results = _measure(home, root, args.runs)
    _report(results, total)
    return 0


def _dossier_pages(count: int) -> list[bytes]:
    """``count`` distinct JPEG files of the size a 300-dpi A4 colour page compresses to (about 1.5 MB)."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (3508 // 16, 2480 // 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(base).resize((2480, 3508)).save(buf, "JPEG", quality=85, dpi=(300, 300))
    return [buf.getvalue() + rng.bytes(4096) for _ in range(count)]   # distinct digests: nothing dedups


def _build(root: Path, pages: list[bytes]) -> Path:
    """A real archive holding the pages as dossier B-1, synced by a station; returns the archive's home."""
    from station import config, home, outbox
    from station.enrol import enroll
    from station.sync import sync

    central_home = root / "central"
    server, address = _serve(central_home, "127.0.0.1", [])
    try:
        st = home.init(config.load(root / "station", central=address, chunk_bytes=CHUNK), "st-bench")
        subprocess.run([str(Path(sys.executable).parent / "quire-central"), "--home", str(central_home),
                        "stations", "add", "st-bench", "--key", st.public_key.hex(), "--unit", "bench"],
                       check=True, stdout=subprocess.DEVNULL)
        enroll(st, address)
        for m in range(0, len(pages), 20):
            batch = st.store.open_batch({"archive_no": "B-1"}, {"item": f"1-{m // 20 + 1}", "title": "b"},
                                        "bench", "bench")
            for n, data in enumerate(pages[m:m + 20], 1):
                st.store.add_page(batch.id, n, _page(data))
            outbox.seal_batch(st.store, batch.id, st.station_id, st.key)
        report = sync(st)
        assert len(report.committed) == -(-len(pages) // 20), report
        st.close()
    finally:
        server.terminate()
        server.wait()
    shutil.rmtree(root / "station")
    return central_home


def _measure(home: Path, root: Path, runs: int) -> dict[str, list[float]]:
    from central import config, export, scrub
    from central.archive import open_archive
    from central.permissions import local_operator

    archive = open_archive(config.load(home), create=False)
    files = sorted(str(p) for p in archive.config.blobs_dir.glob("??/*"))   # the blob files sha256sum reads
    pages_dir = root / "pages"   # the dossier's page files, as the peer's cp -r finds them
    pages_dir.mkdir()
    for n, row in enumerate(archive.catalogue.query("SELECT p.sha256 FROM pages p JOIN materials m ON m.id ="
                                                     " p.material_id ORDER BY m.id, p.n"), 1):
        os.link(archive.config.blobs_dir / row["sha256"][:2] / row["sha256"], pages_dir / f"{n:04d}.jpg")
    assert len(files) == n, "every page its own blob"
    who = local_operator("bench")
    results: dict[str, list[float]] = {k: [] for k in (
        "scrub warm", "sha256sum warm", "scrub cold", "sha256sum cold", "export", "cp -r + sha256sum")}

    def scrub_all() -> None:
        report = scrub.scrub(archive, 1, everything=True)
        assert report.ok and report.cycle_done and report.blobs == len(files), report.status_line()

    def sha256sum() -> None:
        subprocess.run(["sha256sum", *files], check=True, stdout=subprocess.DEVNULL)

    def export_bag() -> None:
        out = root / "bag"
        export.export(archive, who, "B-1", None, out, reason="bench")
        shutil.rmtree(out)

    def copy_and_hash() -> None:
        out = root / "copy"
        subprocess.run(["cp", "-r", str(pages_dir), str(out)], check=True)
        subprocess.run(["sha256sum", *sorted(str(p) for p in out.iterdir())], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(out)

    try:
        sha256sum()   # the files into the page cache once
        for _ in range(runs):
            for name, fn, cold in (("scrub", scrub_all, False), ("sha256sum", sha256sum, False),
                                   ("sha256sum", sha256sum, True), ("scrub", scrub_all, True)):
                if cold:
                    _evict(files)
                results[f"{name} {'cold' if cold else 'warm'}"].append(_timed(fn))
            for name, fn in (("cp -r + sha256sum", copy_and_hash), ("export", export_bag)):
                results[name].append(_timed(fn))
    finally:
        archive.close()
    return results


def _timed(fn) -> float:
    os.sync()   # what an earlier step wrote is not flushed inside the next one's timing
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _evict(files: list[str]) -> None:
    """Drop the files' pages from the page cache (they are clean: nothing is lost), without root."""
    for name in files:
        fd = os.open(name, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _report(results: dict[str, list[float]], total: int) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    runs = len(next(iter(results.values())))
    print(f"\nmedians of {runs} run(s), alternating")
    for case in ("warm", "cold"):
        ours, peer = total / med[f"scrub {case}"] / 1e6, total / med[f"sha256sum {case}"] / 1e6
        print(f"  scrub ({case} cache)   {ours:7.1f} MB/s   sha256sum {peer:7.1f} MB/s   "
              f"ratio {ours / peer:5.0%}  (bar ≥ 80 %)")
    ratio = med["export"] / med["cp -r + sha256sum"]
    print(f"  export (BagIt bag)    {med['export']:7.2f} s      cp -r + sha256sum {med['cp -r + sha256sum']:6.2f} s   "
          f"ratio {ratio:4.2f}×  (bar ≤ 2×)")
    for name, values in results.items():
        print(f"    {name:<20} " + "  ".join(f"{v:.2f}" for v in values) + " s")


if __name__ == "__main__":
    raise SystemExit(main())
