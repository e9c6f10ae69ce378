"""Blank-page detection: how much of the paper carries real marks."""

import cv2
import numpy as np

from .paper import paper_level

# The band along the paper's edges is left out: edge shadows, torn or curled corners and the
# paper edge itself are not content.
EDGE_BAND_MM = 8.0
# A mark must be at least this much darker than the paper, as a share of the paper's level.
# Bleed-through from the other side and pencil ghosts stay below it; print and ink do not.
MARK_CONTRAST = 0.3
MIN_PAPER_LEVEL = 96         # darker than this is not bare paper, whatever covers it
MIN_MARK_MM2 = 0.25          # smaller specks (under ~0.5 mm across) are dust or noise
# Punch holes show the dark scanner backing through solid round blobs near the binding edge.
HOLE_DIAMETER_MM = (4.0, 9.0)
HOLE_ZONE_MM = 25.0


def blank_score(image: np.ndarray, box: tuple[int, int, int, int], px_per_mm: float) -> float:
    """Percentage of the inspected paper area covered by marks (ink, print, stamps); about 0 when blank.

    ``image`` is a downscaled deskewed page (RGB or grey) and ``box`` (x0, y0, x1, y1) the paper on it.
    """
    band = round(EDGE_BAND_MM * px_per_mm)
    x0, y0, x1, y1 = box[0] + band, box[1] + band, box[2] - band, box[3] - band
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    region = image[y0:y1, x0:x1]
    # Coloured ink counts as fully as black: take the darkest channel.
    value = region if region.ndim == 2 else np.minimum(np.minimum(region[..., 0], region[..., 1]), region[..., 2])
    level = paper_level(value[::4, ::4])
    if level < MIN_PAPER_LEVEL:
        # No bare light paper anywhere (a photo, a colour chart, a dark sheet): fully covered.
        return 100.0
    marks = ((level - value.astype(np.float32)) > MARK_CONTRAST * level).astype(np.uint8)
    marks = cv2.morphologyEx(marks, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(marks, connectivity=8)
    min_area = MIN_MARK_MM2 * px_per_mm ** 2
    area = 0
    for left, top, w, h, pixels in stats[1:]:
        if pixels < min_area or _is_punch_hole(left + band, top + band, w, h, pixels, box, px_per_mm):
            continue
        area += int(pixels)
    return 100.0 * area / value.size


def _is_punch_hole(left, top, w, h, pixels, box, px_per_mm) -> bool:
    lo, hi = (d * px_per_mm for d in HOLE_DIAMETER_MM)
    if not (lo <= w <= hi and lo <= h <= hi and 0.8 <= w / h <= 1.25 and pixels >= 0.7 * w * h):
        return False
    zone = HOLE_ZONE_MM * px_per_mm
    paper_w, paper_h = box[2] - box[0], box[3] - box[1]
    return min(left, top, paper_w - (left + w), paper_h - (top + h)) < zone
