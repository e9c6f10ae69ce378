"""One labelled page through Quire's pipeline and each peer, timed on one core."""

import io
import os
import time

import cv2
from PIL import Image

from station.pipeline import PipelineConfig, process_page
from station.pipeline.process import estimate_page_skew

from . import pages, peers

DPI = 300
PEERS = ("leptonica", "jdeskew", "deskew", "unpaper")
_leptonica = None


def pin_to_core(cores: list[int], slot) -> None:
    """Run this worker process, and what it starts, on one core of its own, with OpenCV single-threaded."""
    with slot.get_lock():
        core = cores[slot.value % len(cores)]
        slot.value += 1
    os.sched_setaffinity(0, {core})
    cv2.setNumThreads(1)


def measure(spec: pages.PageSpec, wanted: tuple[str, ...] = PEERS) -> dict:
    """Truth, Quire's record and times, Leptonica's answers and times, and the bare encode time, for one page.

    Run alone on a quiet core: these are the timings the report compares.
    """
    page = pages.render(spec, DPI)
    image, truth = page.image, page.truth
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    config = PipelineConfig()
    out = {"index": spec.index, "kind": spec.kind, "text": spec.text, "truth": truth,
           "background": spec.background, "pixels": image.shape[0] * image.shape[1]}

    started = time.perf_counter()
    skew = estimate_page_skew(grey, DPI, config.max_skew_deg)
    out["quire_estimate"] = (skew, time.perf_counter() - started)

    started = time.perf_counter()
    processed = process_page(image, DPI, config)
    out["quire_full_s"] = time.perf_counter() - started
    out["record"] = processed.record

    started = time.perf_counter()
    Image.fromarray(image).save(io.BytesIO(), format="JPEG", quality=config.jpeg_quality, dpi=(DPI, DPI))
    out["encode_s"] = time.perf_counter() - started

    if "leptonica" in wanted:
        global _leptonica
        _leptonica = _leptonica or peers.Leptonica()
        out["leptonica15"] = _leptonica.find_skew(grey, peers.MAX_SKEW_DEG)
        out["leptonica7"] = _leptonica.find_skew(grey)
    return out


def measure_slow_peers(spec: pages.PageSpec, wanted: tuple[str, ...] = PEERS) -> dict:
    """The answers and times of the peers that take seconds a page: jdeskew, deskew and unpaper."""
    grey = cv2.cvtColor(pages.render(spec, DPI).image, cv2.COLOR_RGB2GRAY)
    out = {"index": spec.index}
    if "jdeskew" in wanted:
        out["jdeskew"] = peers.jdeskew_skew(grey)
    if "deskew" in wanted:
        out["deskew"] = peers.deskew_skew(grey)
    if "unpaper" in wanted:
        out["unpaper"] = peers.unpaper_skew(grey, DPI)
    return out
