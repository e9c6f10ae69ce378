"""The image-pipeline benchmark: Quire and its peers on the same labelled pages, in one run, as ratios.

    python -m bench.pipeline                 # 200 pages, every peer, and the 300-page station batch
    python -m bench.pipeline --pages 20      # a quick look
    python -m bench.pipeline --pages 20 --peers '' --records before.json   # then change the pipeline, and
    python -m bench.pipeline --pages 20 --peers '' --compare before.json   # list every decision it changed

Each page is rendered and handed to Quire, a bare JPEG encode and Leptonica in one worker process
pinned to one core, with no other work running (Quire's full pipeline and the bare encode are each
timed in CPU time, the fastest of --repeat runs); then the slow peers (seconds a page) get the same
pages, one worker per core. Leptonica comes from the Debian library
(liblept5), unpaper from its Debian package, jdeskew and deskew from PyPI (`make bench` installs them).
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from . import measure, pages, peers, realscans, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200, help="labelled pages to measure (default 200)")
    parser.add_argument("--peers", default=",".join(measure.PEERS),
                        help=f"comma-separated peers to run (default all: {','.join(measure.PEERS)}; '' for none)")
    parser.add_argument("--batch-pages", type=int, default=300,
                        help="pages in the continuous station batch whose peak memory is measured (0: skip)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="worker processes, each pinned to its own core (default one per core)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the labelled page set")
    parser.add_argument("--real", type=int, default=-1,
                        help="real-scan cases to measure (default every one; 0: none); see bench/realscans.py")
    parser.add_argument("--repeat", type=int, default=measure.REPEAT,
                        help=f"runs of the full pipeline and of the bare encode on each page, the fastest "
                             f"(CPU time) kept (default {measure.REPEAT})")
    parser.add_argument("--records", type=Path, metavar="FILE",
                        help="write each page's record (its decisions and output size, not its time) to FILE as JSON")
    parser.add_argument("--compare", type=Path, metavar="FILE",
                        help="compare each page's record with those --records wrote to FILE: list every page "
                             "whose skew, orientation, crop, blank or colour decision or output size changed; "
                             "exit 1 if any did")
    args = parser.parse_args(argv)
    wanted = tuple(p for p in args.peers.split(",") if p)
    unknown = set(wanted) - set(measure.PEERS)
    if unknown or args.pages < 1 or args.repeat < 1:
        parser.error(f"unknown peer(s) {', '.join(sorted(unknown))}" if unknown else
                     "--pages must be 1 or more" if args.pages < 1 else "--repeat must be 1 or more")

    started = time.monotonic()
    specs = pages.specs(args.pages, args.seed)
    results = _measure_all(specs, wanted, args.jobs, args.repeat)
    batch = _station_batch(args.batch_pages, args.seed) if args.batch_pages else None
    print(report.render(results, batch, _versions(wanted)))
    real = []
    if args.real:
        text, real = _real(wanted, args.jobs, args.real, args.repeat)
        print("\n" + text)
    print(f"\n({time.monotonic() - started:.0f} s; python -m bench.pipeline {' '.join(argv or sys.argv[1:])})")
    records = _records(results, real)
    if args.records:
        args.records.write_text(json.dumps(records, indent=1, sort_keys=True))
    if args.compare:
        changed = _changed(json.loads(args.compare.read_text()), records)
        print("\n".join(changed) if changed else f"\nNo decision changed against {args.compare} "
              f"({len(records)} pages compared).")
        return 1 if changed else 0
    return 0


# The record's fields that are not decisions: how long the page took.
_TIMING = ("seconds",)


def _records(synthetic: list[dict], real: list[dict]) -> dict[str, dict]:
    """Each page's record, less its timing, by page: "synthetic <index>" and "real <case>"."""
    pages_ = {f"synthetic {r['index']}": r["record"] for r in synthetic}
    pages_.update({f"real {r['name']}": r["record"] for r in real})
    return {name: {k: v for k, v in record.items() if k not in _TIMING} for name, record in pages_.items()}


def _changed(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """One line for each page whose record differs, naming each field with its value before and after."""
    lines = []
    for name in sorted(before.keys() | after.keys()):
        if name not in before or name not in after:
            lines.append(f"{name}: measured only {'after' if name not in before else 'before'}")
            continue
        was, now = before[name], after[name]
        fields = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
        if fields:
            lines.append(f"{name}: " + "; ".join(f"{k} {was.get(k)!r} -> {now.get(k)!r}" for k in fields))
    if lines:
        lines.insert(0, f"\n{len(lines)} of {len(before.keys() | after.keys())} pages changed:")
    return lines


def _measure_all(specs: list[pages.PageSpec], wanted: tuple[str, ...], jobs: int, repeat: int) -> list[dict]:
    """Time Quire, the bare encode and Leptonica on one core with the machine otherwise idle; then
    run the slow peers, one worker per core, for their answers (and their own times)."""
    cores = sorted(os.sched_getaffinity(0))
    results = _run(specs, partial(measure.measure, wanted=wanted, repeat=repeat), 1, cores, "timed")
    slow = tuple(p for p in wanted if p != "leptonica")
    if slow:
        extra = _run(specs, partial(measure.measure_slow_peers, wanted=slow), jobs, cores, "slow peers on")
        for result, more in zip(results, extra):
            result.update(more)
    return results


def _real(wanted: tuple[str, ...], jobs: int, count: int, repeat: int) -> tuple[str, list[dict]]:
    """The real-scan section, and its per-case results: Quire, the bare encode and Leptonica timed on
    one core, then jdeskew and Tesseract one worker per core."""
    root = realscans.corpus_dir()
    if root is None:
        return ("Real scans: not found — put the corpus in tests/data/realscans, ../shared/realscans or "
                "$QUIRE_REALSCANS (tests/data/realscans/SOURCES.md lists the files)"), []
    cases = realscans.cases()[:count if count > 0 else None]
    cores = sorted(os.sched_getaffinity(0))
    results = _run(cases, partial(measure.measure_real, root=root, wanted=wanted, repeat=repeat), 1, cores,
                   "real timed")
    slow = tuple(p for p in wanted if p in ("jdeskew", "tesseract"))
    if slow:
        extra = _run(cases, partial(measure.measure_real_slow, root=root, wanted=slow), jobs, cores, "real slow peers")
        for result, more in zip(results, extra):
            result.update(more)
    return report.render_real(results, str(root)), results


def _run(specs, work, jobs: int, cores: list[int], what: str) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    slot = context.Value("i", 0)
    results = []
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=measure.pin_to_core,
                             initargs=(cores, slot)) as pool:
        for done, result in enumerate(pool.map(work, specs), 1):
            results.append(result)
            if done % 10 == 0 or done == len(specs):
                print(f"{what} {done}/{len(specs)} pages", file=sys.stderr, flush=True)
    return results


def _station_batch(count: int, seed: int) -> dict:
    """Render a few distinct pages, then run the batch in a process of its own and read its figures."""
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as work:
        for spec in pages.specs(20, seed + 1):
            np.save(Path(work) / f"{spec.index:03d}.npy", pages.render(spec, measure.DPI).image)
        print(f"running the {count}-page station batch", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, "-m", "bench.batch", work, "--pages", str(count)],
                              capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def _versions(wanted: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import version

    found = {}
    if "leptonica" in wanted:
        found["Leptonica"] = peers.Leptonica().version
    for name in ("jdeskew", "deskew"):
        if name in wanted:
            found[name] = version(name)
    if "unpaper" in wanted:
        found["unpaper"] = peers.unpaper_version()
    if "tesseract" in wanted:
        found["Tesseract"] = peers.tesseract_version()
    return found


if __name__ == "__main__":
    sys.exit(main())
