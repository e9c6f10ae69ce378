"""The marks on a page — ink, print, stamps, holes: found once, then judged for blank and for orientation."""

import math
from fractions import Fraction
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .imageio import component_boxes, planes
from .paper import paper_level

# The band along the paper's edges is left out: edge shadows, torn or curled corners and the
# paper edge itself are not content.
EDGE_BAND_MM = 8.0
# A mark must be at least this much darker than the paper, as a share of the paper's level.
# Bleed-through from the other side and pencil ghosts stay below it; print and ink do not.
MARK_CONTRAST = 0.3
MIN_PAPER_LEVEL = 96         # darker than this is not bare paper, whatever covers it
# Marks narrower than this (two pixels at 150 dpi) are the paper's grain and scanner noise.
SPECK_MM = 0.34
# Faint print (a worn ribbon, a faded copy, a dot-matrix or thermal slip) stays below MARK_CONTRAST,
# and on the analysis copy its thin strokes fade further into the paper. Bleed-through from the other
# side is faint too, but it is seen through the sheet, which blurs it. A page about to be called blank
# is looked at again at full resolution: a faint mark is darker than the paper around it (the brightest
# within PAPER_MM) by FAINT_CONTRAST of the paper's level, and sharp: an edge within STEEP_MM of it is
# steep enough to rise through that contrast in RISE_MM. Measured (issue 13), the contrast of faint
# pixels rises in 0.10–0.18 mm (10th–90th percentile) on the faded dot-matrix invoice of the real-scan
# corpus and in 0.14–0.21 mm on a faded page of Quire's own generator, against 0.34–0.48 mm on its
# bleed-through (blurred 0.25 mm, as the generator draws it); bench/realscans.py's backs, blurred
# less, stay below FAINT_CONTRAST (their print shows through at a tenth of its contrast).
FAINT_CONTRAST = 0.12
PAPER_MM = 1.0
RISE_MM = 0.25
STEEP_MM = 0.15
# The second look goes STRIP_ROWS full-size rows at a time, and measures edges only in a strip holding
# something FAINT_CONTRAST darker than its paper: on the bench's 41 blank backs (29 real-scan, 12
# synthetic) it costs a third of looking at the page whole (27 against 82 ms CPU, median), same marks.
STRIP_ROWS = 256


@dataclass(frozen=True)
class Marks:
    """Connected marks inside the inspected part of the paper."""

    boxes: np.ndarray       # (N, 5) int: x, y, w, h and pixel count of each mark, from the inspected region's corner
    region: tuple[int, int, int, int]   # x0, y0, x1, y1 of the inspected region (the paper less its edge band)
    covered: bool           # True when no bare paper shows at all (a photo, a colour chart, a dark sheet)

    @property
    def area_px(self) -> int:
        """Pixels inspected."""
        x0, y0, x1, y1 = self.region
        return max(0, x1 - x0) * max(0, y1 - y0)


def find_marks(darkest: np.ndarray, box: tuple[int, int, int, int], px_per_mm: float) -> Marks:
    """The marks on a downscaled deskewed page inside ``box`` (x0, y0, x1, y1, the paper), less its edge band.

    ``darkest`` holds each pixel's darkest channel, so coloured ink counts as fully as black.
    """
    band = round(EDGE_BAND_MM * px_per_mm)
    region = (box[0] + band, box[1] + band, box[2] - band, box[3] - band)
    x0, y0, x1, y1 = region
    if x1 - x0 < 2 or y1 - y0 < 2:
        return Marks(np.zeros((0, 5), np.int64), region, False)
    value = darkest[y0:y1, x0:x1]
    level = paper_level(np.ascontiguousarray(value[::4, ::4]))
    if level < MIN_PAPER_LEVEL:
        return Marks(np.zeros((0, 5), np.int64), region, True)
    # A mark: darker than the paper by more than MARK_CONTRAST of its level, i.e. below this grey.
    _, marks = cv2.threshold(value, math.ceil((1 - MARK_CONTRAST) * level) - 1, 1, cv2.THRESH_BINARY_INV)
    speck = max(1, round(SPECK_MM * px_per_mm))
    cv2.morphologyEx(marks, cv2.MORPH_OPEN, np.ones((speck, speck), np.uint8), dst=marks)
    return Marks(component_boxes(marks), region, False)


def find_faint_marks(image: np.ndarray, scale: float, view: np.ndarray, box: tuple[int, int, int, int],
                     px_per_mm: float, to_view: Callable[[np.ndarray], np.ndarray]) -> Marks:
    """The faint but sharp marks of the full-size ``image``, as ``find_marks`` gives marks on the
    analysis ``view`` (``scale`` times the image's size, the paper in ``box``).

    ``to_view`` turns and cuts a grey copy at the analysis scale (the image's own pixels, not the
    view's) as the view was; the marks come out on it, so blank_score judges them like any others.
    """
    band = round(EDGE_BAND_MM * px_per_mm)
    region = (box[0] + band, box[1] + band, box[2] - band, box[3] - band)
    x0, y0, x1, y1 = region
    if x1 - x0 < 2 or y1 - y0 < 2:
        return Marks(np.zeros((0, 5), np.int64), region, False)
    level = paper_level(np.ascontiguousarray(view[y0:y1:4, x0:x1:4]))
    # The analysis copy is ``kept`` / ``factor`` of the image's size (imageio.analysis_scale): whole
    # blocks of ``factor`` full-size rows and columns make ``kept`` of its rows and columns.
    fraction = Fraction(scale).limit_denominator(8)
    factor, kept = fraction.denominator, fraction.numerator
    mm = px_per_mm * factor / kept
    h, w = image.shape[:2]
    rows, cols = max(1, h // factor) * kept, max(1, w // factor) * kept
    full_rows, full_cols = rows // kept * factor, cols // kept * factor
    paper_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (_odd(PAPER_MM * mm),) * 2)
    near = 2 * max(1, round(STEEP_MM * mm)) + 1
    faint_from = math.ceil(FAINT_CONTRAST * level)
    # Looked at strip by strip, each with the rows every step below reaches past its own (the paper's
    # kernel, Sobel's and the steep edge's reach): a strip's marks are the same as in the page looked at
    # whole. Most of a blank back holds nothing FAINT_CONTRAST darker than the paper around it, and
    # there the edges are not measured at all.
    halo = max(paper_kernel.shape[0] // 2, near // 2 + 1)
    step = factor * max(1, STRIP_ROWS // factor)
    covered = np.zeros((rows, cols), np.uint8)
    found = False
    for top in range(0, full_rows, step):
        bottom = min(full_rows, top + step)
        lo, hi = max(0, top - halo), min(full_rows, bottom + halo)
        faint = _faint_strip(image[lo:hi, :full_cols], level, faint_from, paper_kernel, near, mm)
        if faint is None:
            continue
        faint, found = faint[top - lo:bottom - lo], True
        covered[top // factor * kept:bottom // factor * kept] = (
            cv2.resize(faint, (cols, (bottom - top) // factor * kept), interpolation=cv2.INTER_AREA)
            if factor > 1 else faint)
    if not found:
        # Nothing faint and sharp on the whole sheet (most blank backs): no mark, and nothing to turn.
        return Marks(np.zeros((0, 5), np.int64), region, False)
    # On the analysis scale a mark covers at least a quarter of each of its pixels, and marks a pixel
    # apart are one (the dots of a dot-matrix stroke): a dust speck of a few full-size pixels stays
    # smaller than a mark of MIN_MARK_MM2 (blank.py).
    covered = cv2.morphologyEx(cv2.compare(covered, 64, cv2.CMP_GE), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    turned = to_view(cv2.bitwise_not(covered))
    marks = cv2.compare(turned[y0:y1, x0:x1], 128, cv2.CMP_LT)
    return Marks(component_boxes(marks), region, False)


def _faint_strip(strip: np.ndarray, level: float, faint_from: int, paper_kernel: np.ndarray, near: int,
                 mm: float) -> np.ndarray | None:
    """The faint sharp pixels of a strip of the full-size page (255 where faint), or None when none is."""
    if strip.ndim == 3:
        red, green, blue = planes(strip)
        strip = cv2.min(cv2.min(red, green), blue)
    contrast = cv2.subtract(cv2.dilate(strip, paper_kernel), strip)
    if cv2.minMaxLoc(contrast)[1] < faint_from:
        return None
    # Dark marks were judged already (find_marks found them too small: dust, a punch hole); the faint
    # rim around them is no more a mark than they are.
    dark = cv2.compare(strip, math.ceil((1 - MARK_CONTRAST) * level), cv2.CMP_LT)
    faint = cv2.bitwise_and(cv2.compare(contrast, faint_from, cv2.CMP_GE),
                            cv2.bitwise_not(cv2.dilate(dark, np.ones((near, near), np.uint8))))
    if not cv2.countNonZero(faint):
        return None
    # The steepest edge near each pixel, as the contrast it rises through in RISE_MM: Sobel's 3×3
    # kernels weigh a one-pixel step eight times over.
    rise = RISE_MM * mm / 8
    steep = cv2.add(cv2.convertScaleAbs(cv2.Sobel(strip, cv2.CV_16S, 1, 0), alpha=rise),
                    cv2.convertScaleAbs(cv2.Sobel(strip, cv2.CV_16S, 0, 1), alpha=rise))
    steep = cv2.dilate(steep, cv2.getStructuringElement(cv2.MORPH_RECT, (near, near)))
    sharp = cv2.bitwise_and(faint, cv2.compare(steep, contrast, cv2.CMP_GE))
    return sharp if cv2.countNonZero(sharp) else None


def _odd(size: float) -> int:
    """A kernel's side: the nearest odd whole number of pixels to ``size``, at least 3."""
    return max(3, round(size) | 1)
