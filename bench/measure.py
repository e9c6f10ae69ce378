"""One labelled page through Quire's pipeline and each peer, timed on one core."""

import io
import os
import time

import cv2
from PIL import Image

from station.pipeline import PipelineConfig, process_page
from station.pipeline.process import estimate_page_skew

from . import pages, peers, realscans

DPI = 300
PEERS = ("leptonica", "jdeskew", "deskew", "unpaper", "tesseract")
# The full pipeline and the bare encode it is compared with are each timed this many times, in CPU
# time, and the fastest run kept: on a machine shared with other work, wall time and a single run
# measure the neighbours as much as the code.
REPEAT = 3
_leptonica = None


def pin_to_core(cores: list[int], slot) -> None:
    """Run this worker process, and what it starts, on one core of its own, with OpenCV single-threaded."""
    with slot.get_lock():
        core = cores[slot.value % len(cores)]
        slot.value += 1
    os.sched_setaffinity(0, {core})
    cv2.setNumThreads(1)


def measure(spec: pages.PageSpec, wanted: tuple[str, ...] = PEERS, repeat: int = REPEAT) -> dict:
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

    processed, out["quire_full_s"] = fastest(lambda: process_page(image, DPI, config), repeat)
    out["record"] = processed.record
    out["encode_s"] = fastest_encode(image, DPI, repeat)
    out["timing"] = timing(repeat)

    if "leptonica" in wanted:
        global _leptonica
        _leptonica = _leptonica or peers.Leptonica()
        out["leptonica15"] = _leptonica.find_skew(grey, peers.MAX_SKEW_DEG)
        out["leptonica7"] = _leptonica.find_skew(grey)
        out["floor"] = floor(image, grey, processed, out["leptonica15"][1], repeat)
    return out


def fastest(work, repeat: int = REPEAT):
    """``work()``'s result and the least CPU seconds it took over ``repeat`` runs."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        started = time.process_time()
        result = work()
        best = min(best, time.process_time() - started)
    return result, best


def timing(repeat: int) -> str:
    """How the full pipeline and the bare encode were timed, in words for the report."""
    return f"CPU time, fastest of {max(1, repeat)} run{'s' if repeat > 1 else ''}"


def fastest_encode(image, dpi: int, repeat: int = REPEAT) -> float:
    """CPU seconds of the faster bare JPEG encode of these pixels from a ready image: OpenCV at quality
    80 or Pillow at 85 (the pipeline's default), each given the image in the form it takes, each the
    fastest of ``repeat`` runs."""
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ready = Image.fromarray(image)
    opencv = fastest(lambda: cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80]), repeat)[1]
    pillow = fastest(lambda: ready.save(io.BytesIO(), format="JPEG", quality=85, dpi=(dpi, dpi)), repeat)[1]
    return min(opencv, pillow)


def floor(image, grey, processed, skew_s: float, repeat: int = REPEAT) -> dict:
    """Seconds of the least any pipeline must spend on this page to straighten it as well as Leptonica, with
    the bare encode the floor under the speed bar (no orientation, crop, blank or colour decision is in it):

    - Leptonica's ±15° skew search: ``skew_s`` (its first run) or a faster of ``repeat`` runs; wall time on
      the worker's own core, as Leptonica's times elsewhere in the report;
    - one bilinear rotation (OpenCV's warpAffine, one thread: the fastest found) of the page, in the
      output's colours, by the rotation Quire applied, onto the size of Quire's output; CPU time, fastest
      of ``repeat``; none when Quire rotated nothing.
    """
    skew_s = min([skew_s] + [_leptonica.find_skew(grey, peers.MAX_SKEW_DEG)[1] for _ in range(max(0, repeat - 1))])
    rotation = processed.record["rotation_deg"]
    if not rotation:
        return {"skew_s": skew_s, "rotate_s": 0.0}
    source = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if processed.colour == "colour" and image.ndim == 3 else grey
    h, w = source.shape[:2]
    size = (processed.width_px, processed.height_px)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), rotation, 1.0)
    matrix[:, 2] += ((size[0] - w) / 2, (size[1] - h) / 2)
    rotate_s = fastest(lambda: cv2.warpAffine(source, matrix, size, flags=cv2.INTER_LINEAR, borderValue=255), repeat)[1]
    return {"skew_s": skew_s, "rotate_s": rotate_s}


def measure_real(case: realscans.Case, root, wanted: tuple[str, ...] = PEERS, repeat: int = REPEAT) -> dict:
    """One real-scan case: truth, Quire's record, what it cut, times, and Leptonica's answers."""
    rendered = realscans.render(case, root)
    image, dpi = rendered.image, rendered.dpi
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    config = PipelineConfig()
    out = {"name": case.name, "variant": case.variant, "split": case.split, "truth": rendered.truth,
           "tags": realscans.labels()[case.file]["tags"], "dpi": dpi}
    started = time.perf_counter()
    skew = estimate_page_skew(grey, dpi, config.max_skew_deg)
    out["quire_estimate"] = (skew, time.perf_counter() - started)
    processed, out["quire_full_s"] = fastest(lambda: process_page(image, dpi, config, dpi_source="operator"), repeat)
    out["record"] = processed.record
    out["encode_s"] = fastest_encode(image, dpi, repeat)
    out["timing"] = timing(repeat)
    original, _ = realscans.read(case.file, root)
    cells, cell_mm2 = realscans.ink_cells(original, dpi)
    out["lost_mm2"] = realscans.lost_mm2(cells, cell_mm2, rendered.to_case, image.shape, processed.record,
                                         (processed.width_px, processed.height_px))
    if "leptonica" in wanted:
        global _leptonica
        _leptonica = _leptonica or peers.Leptonica()
        out["leptonica15"] = _leptonica.find_skew(grey, peers.MAX_SKEW_DEG)
        out["leptonica7"] = _leptonica.find_skew(grey)
        out["floor"] = floor(image, grey, processed, out["leptonica15"][1], repeat)
    return out


def measure_real_slow(case: realscans.Case, root, wanted: tuple[str, ...] = PEERS) -> dict:
    """jdeskew's skew and Tesseract's orientation (pages as captured and turned only: seconds a page)."""
    rendered = realscans.render(case, root)
    grey = rendered.image if rendered.image.ndim == 2 else cv2.cvtColor(rendered.image, cv2.COLOR_RGB2GRAY)
    out = {"name": case.name}
    if "jdeskew" in wanted:
        out["jdeskew"] = peers.jdeskew_skew(grey)
    if "tesseract" in wanted and case.variant in ("captured", "turned"):
        out["tesseract"] = peers.tesseract_orientation(grey, rendered.dpi)
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
