"""The marks on a page — ink, print, stamps, holes: found once, then judged for blank and for orientation."""

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .imageio import component_boxes
from .paper import paper_level

# The band along the paper's edges is left out: edge shadows, torn or curled corners and the
# paper edge itself are not content.
EDGE_BAND_MM = 8.0
# A mark must be at least this much darker than the paper, as a share of the paper's level.
# Bleed-through from the other side and pencil ghosts stay below it; print and ink do not.
MARK_CONTRAST = 0.3
MIN_PAPER_LEVEL = 96         # darker than this is not bare paper, whatever covers it


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
    marks = cv2.morphologyEx(marks, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    return Marks(component_boxes(marks), region, False)
