"""Where the paper lies after deskew, and the crop box that keeps it with a margin."""

import math

import numpy as np


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
