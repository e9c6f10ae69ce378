"""Finding the sheet of paper against the scanner's dark background."""

from dataclasses import dataclass

import cv2
import numpy as np

from .imageio import median

_MIN_PAPER_FRACTION = 0.1    # a bright region smaller than this share of the image is not a sheet
_SIDES_AGREE_DEG = 0.3       # two sides of a sheet within this of each other are one straight, square cut
# Sizes in mm, so that the sheet is found alike at any analysis resolution (3, 3 and 50 pixels at 150 dpi).
_SPECK_MM = 0.5              # bright specks narrower than this on the backing are not the sheet
_SIDE_BAND_MM = 0.508        # contour points this close to a side's extreme (besides 2 % of its length) are on it
_MIN_SIDE_MM = 8.4667        # a side seen over less than this is not fitted


@dataclass(frozen=True)
class Paper:
    """The sheet as found on a (downscaled) image."""

    outline: np.ndarray     # (N, 2) float32 x, y of the sheet's outer contour, in the image's pixels
    polygon: np.ndarray     # the outline simplified to within a pixel, int32 (M, 1, 2) as OpenCV draws it
    mask: np.ndarray        # uint8 255 inside the sheet (holes and ink included), same size as the image
    level: float            # grey level of bare paper
    edge_deg: float | None  # skew of the sheet's edges, degrees counter-clockwise, within ±45; None
                            # when no edge is seen (the paper runs off the image on every side)
    # Each visible side's own skew (degrees, as edge_deg) and the contour points it was fitted to: a
    # sheet not cut square, or a side that is the border of an earlier scan, shows as sides that differ.
    sides: tuple[tuple[float, int], ...] = ()


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


def find_paper(grey: np.ndarray, px_per_mm: float) -> Paper | None:
    """The sheet as the largest bright region (``grey`` at ``px_per_mm``), or None when nothing paper-like is there."""
    level = percentile_u8(np.ascontiguousarray(grey[::4, ::4]), 95)
    if level < 100:
        return None
    _, bright = cv2.threshold(grey, 0.6 * level, 255, cv2.THRESH_BINARY)
    speck = max(1, round(_SPECK_MM * px_per_mm))
    cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((speck, speck), np.uint8), dst=bright)
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    if cv2.contourArea(contour) < _MIN_PAPER_FRACTION * grey.size:
        return None
    polygon = cv2.approxPolyDP(contour, 1.0, True)
    mask = np.zeros_like(bright)
    cv2.fillPoly(mask, [polygon], 255)
    points = contour.reshape(-1, 2).astype(np.float32)
    level = paper_level(np.ascontiguousarray(grey[::4, ::4]), np.ascontiguousarray(mask[::4, ::4]))
    return Paper(points, polygon, mask, level, *_edges(contour, points[::2], grey.shape, px_per_mm))


def square_edge_deg(paper: Paper | None, near_deg: float) -> float | None:
    """The skew of the sheet's side nearest ``near_deg``, averaged with the sides that agree with it; None
    unless at least two sides do (one side alone may be a tear, a fold or the border of an earlier scan)."""
    if paper is None or not paper.sides:
        return None
    nearest = min(paper.sides, key=lambda side: _apart(side[0], near_deg))
    agreeing = [(angle, n) for angle, n in paper.sides if _apart(angle, nearest[0]) <= _SIDES_AGREE_DEG]
    if len(agreeing) < 2:
        return None
    residual = np.average([(angle - nearest[0] + 45.0) % 90.0 - 45.0 for angle, _ in agreeing],
                          weights=[n for _, n in agreeing])
    return (nearest[0] + float(residual) + 45.0) % 90.0 - 45.0


def _apart(a_deg: float, b_deg: float) -> float:
    """How far apart two skews are, in degrees, a quarter turn counting as none."""
    return abs((a_deg - b_deg + 45.0) % 90.0 - 45.0)


def _edges(contour: np.ndarray, points: np.ndarray, shape: tuple[int, int],
           px_per_mm: float) -> tuple[float | None, tuple[tuple[float, int], ...]]:
    """The sheet's skew from straight lines fitted to the middle of each visible side, and each side's own."""
    corners = cv2.boxPoints(cv2.minAreaRect(contour))
    dx, dy = corners[1] - corners[0]
    # y grows downward, so an edge rising to the right is a counter-clockwise (positive) skew.
    rough = (float(np.degrees(np.arctan2(-dy, dx))) + 45.0) % 90.0 - 45.0
    h, w = shape
    # Where the sheet runs off the image, the contour follows the image's border, not the sheet.
    seen = (points[:, 0] > 0) & (points[:, 1] > 0) & (points[:, 0] < w - 1) & (points[:, 1] < h - 1)
    a = np.radians(rough)
    # Axis-aligned coordinates of the sheet: u along its top edge, v down its side.
    u = points[:, 0] * np.cos(a) - points[:, 1] * np.sin(a)
    v = points[:, 0] * np.sin(a) + points[:, 1] * np.cos(a)
    fits = []
    for along, across, sign in ((u, v, 1), (v, u, -1)):
        span_lo, span_hi = along.min(), along.max()
        # Leave out a tenth of each side at the corners: dog-ears, tears and rounded corners.
        middle = (along > span_lo + 0.1 * (span_hi - span_lo)) & (along < span_hi - 0.1 * (span_hi - span_lo))
        for end in (across.min(), across.max()):
            side = seen & middle & (np.abs(across - end) < 0.02 * (span_hi - span_lo) + _SIDE_BAND_MM * px_per_mm)
            slope = _robust_slope(along[side], across[side], _MIN_SIDE_MM * px_per_mm)
            if slope is not None:
                fits.append((side.sum(), sign * slope))
    if not fits:
        return None, ()
    weights = np.array([f[0] for f in fits], np.float64)
    # The fitted slopes are of the sheet as already turned back by ``rough``.
    residual = float(np.degrees(np.arctan(np.average([f[1] for f in fits], weights=weights))))
    sides = tuple(((rough - float(np.degrees(np.arctan(slope))) + 45.0) % 90.0 - 45.0, int(n)) for n, slope in fits)
    return (rough - residual + 45.0) % 90.0 - 45.0, sides


def _robust_slope(x: np.ndarray, y: np.ndarray, min_span_px: float) -> float | None:
    """Least-squares slope of y over x (spanning ``min_span_px`` or more), refitted without the points far off the first line."""
    if x.size < 25 or np.ptp(x) < min_span_px:
        return None
    keep = np.ones(x.size, bool)
    for _ in range(3):
        xs, ys = x[keep], y[keep]
        dx = xs - xs.mean()
        slope = float(dx @ (ys - ys.mean()) / (dx @ dx))
        off = np.abs(y - ys.mean() - slope * (x - xs.mean()))
        keep = off < max(1.0, 2.5 * median(off))
        if keep.sum() < 25:
            return None
    return slope
