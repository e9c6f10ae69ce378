"""Blank-page detection: how much of the paper carries real marks."""

import numpy as np

from .marks import EDGE_BAND_MM, Marks

MIN_MARK_MM2 = 0.25          # smaller specks (under ~0.5 mm across) are dust or noise
# Punch holes show the dark scanner backing through solid round blobs near the binding edge.
HOLE_DIAMETER_MM = (4.0, 9.0)
HOLE_ZONE_MM = 25.0


def blank_score(marks: Marks, px_per_mm: float) -> float:
    """Percentage of the inspected paper area covered by marks (ink, print, stamps); about 0 when blank.

    Dust and punch holes are not marks; a page with no bare paper at all is fully covered.
    """
    if marks.covered:
        return 100.0
    if not marks.area_px:
        return 0.0
    left, top, w, h, pixels = marks.boxes.T
    counted = pixels >= MIN_MARK_MM2 * px_per_mm ** 2
    counted &= ~_punch_holes(left, top, w, h, pixels, marks.region, px_per_mm)
    return 100.0 * float(pixels[counted].sum()) / marks.area_px


def _punch_holes(left, top, w, h, pixels, region, px_per_mm) -> np.ndarray:
    """Which marks are punch holes: solid round blobs of a hole's size near an edge of the paper."""
    lo, hi = (d * px_per_mm for d in HOLE_DIAMETER_MM)
    hole = (lo <= w) & (w <= hi) & (lo <= h) & (h <= hi)
    hole &= (w <= 1.25 * h) & (h <= 1.25 * w) & (pixels >= 0.7 * w * h)
    # Positions from the paper's own edge: the inspected region starts an edge band inside it.
    band = round(EDGE_BAND_MM * px_per_mm)
    paper_w, paper_h = region[2] - region[0] + 2 * band, region[3] - region[1] + 2 * band
    left, top = left + band, top + band
    edge = np.minimum(np.minimum(left, top), np.minimum(paper_w - (left + w), paper_h - (top + h)))
    return hole & (edge < HOLE_ZONE_MM * px_per_mm)
