"""Finding the sheet of paper against the scanner's dark background."""

from dataclasses import dataclass

import cv2
import numpy as np

_MIN_PAPER_FRACTION = 0.1    # a bright region smaller than this share of the image is not a sheet


@dataclass(frozen=True)
class Paper:
    """The sheet as found on a (downscaled) image."""

    outline: np.ndarray     # (N, 2) float32 x, y of the sheet's outer contour, in the image's pixels
    mask: np.ndarray        # uint8 255 inside the sheet (holes and ink included), same size as the image
    level: float            # grey level of bare paper
    edge_deg: float         # skew of the sheet's edges, degrees counter-clockwise, within ±45


def paper_level(grey: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Grey level of bare paper: a high percentile, so ink, holes and background do not pull it down."""
    return percentile_u8(grey, 80, mask)


def percentile_u8(values: np.ndarray, percent: float, mask: np.ndarray | None = None) -> float:
    """The ``percent`` percentile of a uint8 array (where ``mask`` is set), from its histogram; 255 if empty."""
    hist = cv2.calcHist([np.ascontiguousarray(values)], [0], mask, [256], [0, 256]).ravel()
    total = hist.sum()
    if total == 0:
        return 255.0
    return float(np.searchsorted(np.cumsum(hist), percent / 100 * total))


def find_paper(grey: np.ndarray) -> Paper | None:
    """The sheet as the largest bright region, or None when nothing paper-like is there."""
    level = percentile_u8(grey, 95)
    if level < 100:
        return None
    bright = (grey > 0.6 * level).astype(np.uint8)
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    if cv2.contourArea(contour) < _MIN_PAPER_FRACTION * grey.size:
        return None
    mask = np.zeros_like(bright)
    cv2.drawContours(mask, [contour], -1, 255, thickness=cv2.FILLED)
    return Paper(contour.reshape(-1, 2).astype(np.float32), mask, paper_level(grey, mask), _edge_angle(contour))


def _edge_angle(contour: np.ndarray) -> float:
    corners = cv2.boxPoints(cv2.minAreaRect(contour))
    dx, dy = corners[1] - corners[0]
    # y grows downward, so an edge rising to the right is a counter-clockwise (positive) skew.
    angle = float(np.degrees(np.arctan2(-dy, dx)))
    return (angle + 45.0) % 90.0 - 45.0
