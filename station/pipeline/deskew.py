"""Skew estimation by projection profiles, and the rotation that undoes it."""

from dataclasses import dataclass

import cv2
import numpy as np

from .paper import Paper, paper_level

_EDGE_BAND_MM = 3.0      # ink this close to the sheet's edge is the edge's shadow, not content
_MIN_POINTS = 400        # fewer ink pixels than this (at the working resolution): no content to go by
_MIN_PEAK_RATIO = 1.03   # the best angle must stand out of the profile scores by this much
# Half a degree off the best angle, the profile score of a page of text drops by 6 % or more; a
# short line or a scrawl drops by only 1–2 %, and its best angle can be half a degree wrong.
_MIN_SHARPNESS = 0.03


@dataclass(frozen=True)
class Skew:
    """Content rotation found by projection profiles."""

    angle_deg: float        # counter-clockwise positive
    sharp: bool             # True when the profile peak is sharp enough to trust to a tenth of a degree


def estimate_skew(grey: np.ndarray, paper: Paper | None, px_per_mm: float, max_skew_deg: float) -> Skew | None:
    """Rotation of the content, or None when there is too little content to tell.

    ``grey`` is a downscaled page (~150 dpi). Only ink inside the sheet counts, so the sheet's edge
    against a dark background cannot pull the estimate toward the sheet's own tilt.
    """
    xs, ys = _ink_points(grey, paper, px_per_mm)
    if xs.size < _MIN_POINTS:
        return None
    radius = float(np.hypot(*grey.shape)) / 2 + 2
    # Coarse to fine: wide bins make the score smooth enough to sample every 0.25° without
    # stepping over a thin ruled line's peak; narrow bins then place the peak precisely.
    coarse = max(1, xs.size // 40_000)
    angles, scores = _scan(xs[::coarse], ys[::coarse], -max_skew_deg, max_skew_deg, 0.25,
                           1.2 * px_per_mm, radius)
    best = int(np.argmax(scores))
    if scores[best] < _MIN_PEAK_RATIO * float(np.median(scores)):
        return None
    fine = max(1, xs.size // 250_000)
    xs, ys = xs[::fine], ys[::fine]
    centre = angles[best]
    for half, step in ((0.3, 0.05), (0.05, 0.01)):
        angles, scores = _scan(xs, ys, centre - half, centre + half, step, 0.35 * px_per_mm, radius)
        best = int(np.argmax(scores))
        centre = angles[best]
    # A parabola fitted through the peak and two samples either side places it between samples.
    lo, hi = max(0, best - 2), min(len(scores), best + 3)
    if hi - lo == 5:
        a, b, _ = np.polyfit(angles[lo:hi] - centre, scores[lo:hi] / scores[best], 2)
        if a < 0:
            centre += float(np.clip(-b / (2 * a), -0.01, 0.01))
    _, around = _scan(xs, ys, centre - 0.5, centre + 0.5, 0.5, 0.35 * px_per_mm, radius)
    sharpness = 1 - (around[0] + around[2]) / (2 * around[1])
    return Skew(float(np.clip(centre, -max_skew_deg, max_skew_deg)), sharpness >= _MIN_SHARPNESS)


def _ink_points(grey: np.ndarray, paper: Paper | None, px_per_mm: float) -> tuple[np.ndarray, np.ndarray]:
    band = max(1, round(_EDGE_BAND_MM * px_per_mm))
    if paper is not None:
        inside = cv2.erode(paper.mask, np.ones((2 * band + 1, 2 * band + 1), np.uint8))
        level = paper.level
    else:
        inside = np.zeros(grey.shape, np.uint8)
        inside[band:-band, band:-band] = 255
        level = paper_level(grey)
    ink = (grey < 0.6 * level) & (inside > 0)
    ys, xs = np.nonzero(ink)
    h, w = grey.shape
    return xs.astype(np.float32) - (w - 1) / 2, ys.astype(np.float32) - (h - 1) / 2


def _scan(xs, ys, lo, hi, step, bin_px, radius) -> tuple[np.ndarray, np.ndarray]:
    angles = lo + step * np.arange(round((hi - lo) / step) + 1)
    n = int(2 * radius / bin_px) + 2
    scores = np.empty(len(angles))
    for i, angle in enumerate(angles):
        a = np.radians(angle)
        # Position across the text lines if the content were rotated back by ``angle``; pixels
        # are split between the two nearest bins so the score varies smoothly with the angle.
        pos = (xs * np.float32(np.sin(a)) + ys * np.float32(np.cos(a)) + np.float32(radius)) / np.float32(bin_px)
        lower = pos.astype(np.int32)
        frac = pos - lower
        hist = np.bincount(lower, 1 - frac, n) + np.bincount(lower + 1, frac, n)
        scores[i] = hist @ hist
    return angles, scores


def rotation_matrix(shape: tuple[int, ...], rotation_deg: float) -> np.ndarray:
    """The 2×3 affine that turns an image of this shape ``rotation_deg`` counter-clockwise about its centre."""
    h, w = shape[:2]
    return cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rotation_deg, 1.0)


def warp(image: np.ndarray, matrix: np.ndarray, box: list[int]) -> np.ndarray:
    """The ``box`` [x, y, w, h] of the image rotated by ``matrix`` on its own canvas, filled with white."""
    x, y, w, h = box
    shifted = matrix.copy()
    shifted[:, 2] -= (x, y)
    white = (255,) * (1 if image.ndim == 2 else image.shape[2])
    return cv2.warpAffine(image, shifted, (w, h), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=white)
