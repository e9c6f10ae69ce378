"""Where the paper lies after deskew, and the crop box that keeps it with a margin."""

import math

import cv2
import numpy as np

from .imageio import component_boxes
from .paper import Paper

# Strokes: darker than what lies within this distance around them, by this share of the paper's
# level. A stroke on a shadow or a darkened edge of the sheet stands out of its surroundings as
# much as on white; the even scanner backing does not.
_STROKE_MM = 3.0
_STROKE_CONTRAST = 0.2
_MIN_MARK_MM2 = 0.114      # smaller strokes are noise (4 pixels at 150 dpi)


def paper_box(outline: np.ndarray, matrix: np.ndarray, slack_px: float) -> tuple[float, float, float, float]:
    """Bounds (x0, y0, x1, y1) of the sheet outline after ``matrix``, widened by ``slack_px`` each way.

    ``outline`` holds full-resolution pixel centres; the slack covers the outline's own pixel size,
    so the box never cuts into the paper.
    """
    moved = outline @ matrix[:, :2].T + matrix[:, 2]
    (x0, y0), (x1, y1) = moved.min(axis=0), moved.max(axis=0)
    return x0 - slack_px, y0 - slack_px, x1 + slack_px, y1 + slack_px


def crop_box(bounds: tuple[float, float, float, float], margin_px: float,
             shape: tuple[int, ...]) -> list[int] | None:
    """[x, y, w, h] of the paper plus the margin, clamped to the image; None when that is the whole image."""
    h, w = shape[:2]
    x0, y0, x1, y1 = bounds
    left, top = max(0, math.floor(x0 + 0.5 - margin_px)), max(0, math.floor(y0 + 0.5 - margin_px))
    right, bottom = min(w, math.ceil(x1 + 0.5 + margin_px)), min(h, math.ceil(y1 + 0.5 + margin_px))
    if (left, top, right, bottom) == (0, 0, w, h):
        return None
    return [left, top, right - left, bottom - top]


def content_points(grey: np.ndarray, paper: Paper, px_per_mm: float) -> np.ndarray:
    """Corners (x, y) of the strokes on the downscaled grey page that lie beyond the sheet found,
    without touching the image's border: print the sheet's outline left out (a shadowed or darkened
    margin), which the crop must keep all the same."""
    side = max(3, round(_STROKE_MM * px_per_mm)) | 1
    h, w = grey.shape
    # Only what lies off the sheet counts: the strokes are sought in the box around it, widened by
    # the reach of the black-hat's closing (twice the kernel's half side), which sees every pixel
    # there as the whole page's would. A sheet that fills the image leaves nothing to seek.
    outside = cv2.bitwise_not(paper.mask)
    left, top, width, height = cv2.boundingRect(outside)
    if not width:
        return np.zeros((0, 2), np.float64)
    reach = 2 * (side // 2)
    x0, y0 = max(0, left - reach), max(0, top - reach)
    x1, y1 = min(w, left + width + reach), min(h, top + height + reach)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
    marks = np.zeros_like(grey)
    strokes = cv2.morphologyEx(grey[y0:y1, x0:x1], cv2.MORPH_BLACKHAT, kernel)
    cv2.threshold(strokes, _STROKE_CONTRAST * paper.level, 255, cv2.THRESH_BINARY, dst=marks[y0:y1, x0:x1])
    cv2.bitwise_and(marks, outside, dst=marks)
    # Label only the box that holds every mark (most often none, or a frame around the sheet): the
    # same components, in fewer pixels.
    left, top, width, height = cv2.boundingRect(marks)
    if not width:
        return np.zeros((0, 2), np.float64)
    x, y, bw, bh, area = component_boxes(marks[top:top + height, left:left + width]).T
    x, y = x + left, y + top
    keep = (area >= _MIN_MARK_MM2 * px_per_mm ** 2) & (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)
    x, y, bw, bh = x[keep], y[keep], bw[keep], bh[keep]
    return np.concatenate([np.stack([x, y], 1), np.stack([x + bw - 1, y + bh - 1], 1),
                           np.stack([x, y + bh - 1], 1), np.stack([x + bw - 1, y], 1)]).astype(np.float64)


def with_content(bounds: tuple[float, float, float, float], points: np.ndarray, matrix: np.ndarray,
                 scale: float) -> tuple[float, float, float, float]:
    """``bounds`` widened to hold ``points`` (pixels of a copy downscaled by ``scale``) after ``matrix``."""
    if not len(points):
        return bounds
    full = (points + 0.5) / scale - 0.5
    moved = full @ matrix[:, :2].T + matrix[:, 2]
    slack = 1 / scale
    (x0, y0), (x1, y1) = moved.min(axis=0) - slack, moved.max(axis=0) + slack
    return min(bounds[0], x0), min(bounds[1], y0), max(bounds[2], x1), max(bounds[3], y1)
