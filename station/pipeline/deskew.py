"""Skew estimation by projection profiles, and the rotation that undoes it."""

from dataclasses import dataclass

import cv2
import numpy as np

_MIN_INK_MM2 = 10        # less ink than this: no content to go by
# Less ink than this (two or three lines of text) fixes the angle only to about half a degree,
# however sharp its profile looks: a short note, a signature, a page number.
_SURE_INK_MM2 = 200
_MIN_CONTRAST = 1.02     # the best angle must stand out of the profile scores by this much
# Half a degree off the best angle, the profile score of a page of text drops by 2 % or more (a
# clean one by 6 % and more; a yellowed book page with a plate by 2–3 %); a short line or a scrawl
# drops by only 1 % or so, and its best angle can be half a degree wrong.
_MIN_SHARPNESS = 0.02
_COARSE_BIN_MM = 1.0
# A coarse angle this far from the best that scores this share of it or more is a rival: the content
# does not tell which (on text the next best angle degrees away scores 95 % or less of the best).
_RIVAL_DEG = 2.0
_MAX_RIVAL = 0.99
_MAX_COARSE_CELLS = 2_500   # more cells than these add time, not precision
_CHUNK = 1 << 20            # angle × cell products evaluated at once: bounds the scratch memory
_TILE_PX = 256              # side of the square tiles warp_bgrx works in


@dataclass(frozen=True)
class Skew:
    """Content rotation found by projection profiles."""

    angle_deg: float        # counter-clockwise positive
    sharp: bool             # True when the profile peak is sharp enough to trust to a tenth of a degree
    vertical: bool          # True when the lines that fixed it run down the page (a page fed sideways)
    # True when another angle, degrees away, scores about as well as the one found: the content does
    # not tell its skew (a plate with a few lines of caption, a page of texture), and a guess could be
    # 15° off. Such a page is better kept as captured and shown to the inspector.
    ambiguous: bool = False
    # The share the profile score drops half a degree either side of the angle: print 0.1-0.9 (yellowed
    # book pages the least), faint handwriting's few dark strokes under 0.1.
    sharpness: float = 0.0


def estimate_skew(ink: np.ndarray, px_per_mm: float, max_skew_deg: float) -> Skew | None:
    """Rotation of the content, or None when there is too little content to tell.

    ``ink`` is a downscaled page (~150 dpi) with 255 on stroke ink and 0 elsewhere (see ink.py).
    Lines running across and lines running down are both tried, so a page fed sideways is
    straightened as well.
    """
    ink_mm2 = cv2.countNonZero(ink) / px_per_mm ** 2
    if ink_mm2 < _MIN_INK_MM2:
        return None
    # Coarse: ink summed along the lines over about 2.7 mm but never across them (a grid coarse
    # across the lines would itself line up at 0° and pull every estimate toward it), scored in
    # bins of 1 mm in whole-degree steps. Bins of 3 mm (as before) are as wide as the line pitch of
    # small book type (3–3.5 mm): its lines' peaks fell together into the bins at every angle, and the
    # column edges running down the page won; 1 mm bins resolve the lines, and a degree off, a line
    # 100 mm long still spreads over less than two of them.
    half = cv2.resize(ink[:ink.shape[0] // 2 * 2, :ink.shape[1] // 2 * 2],
                      (ink.shape[1] // 2, ink.shape[0] // 2), interpolation=cv2.INTER_AREA)
    along = max(1, round(1.35 * px_per_mm))
    sweep = _steps(-max_skew_deg, max_skew_deg, 1.0)
    coarse = []
    for vertical in (False, True):
        grid = _grid(half, 1, along) if vertical else _grid(half, along, 1)
        cells = _cells(grid, ink.shape, vertical, _MAX_COARSE_CELLS)
        scores = _scan(cells, sweep, _COARSE_BIN_MM * px_per_mm)
        best = float(sweep[np.argmax(scores)])
        rival = scores[np.abs(sweep - best) >= _RIVAL_DEG].max(initial=0) / scores.max()
        coarse.append((float(scores.max() / np.median(scores)), vertical, cells, best, float(rival)))
    # The lines' direction is the one whose profile stands out most; but a page's column edges and
    # margins stand out too, in the other direction. Text lines give a sharp fine peak, column
    # edges a blunt one: when the first choice is blunt, the other is measured and the sharper wins.
    found = None
    for contrast, vertical, cells, centre, rival in sorted(coarse, key=lambda c: -c[0]):
        if contrast < _MIN_CONTRAST:
            break
        angle, sharpness = _fine(ink, cells, centre, vertical, px_per_mm)
        if found is None or sharpness > found[1]:
            found = (angle, sharpness, vertical, rival)
        if sharpness >= _MIN_SHARPNESS:
            break
    if found is None:
        return None
    angle, sharpness, vertical, rival = found
    ambiguous = bool(rival >= _MAX_RIVAL)
    sharp = bool(sharpness >= _MIN_SHARPNESS and ink_mm2 >= _SURE_INK_MM2 and not ambiguous)
    return Skew(float(np.clip(angle, -max_skew_deg, max_skew_deg)), sharp, vertical, ambiguous, sharpness)


def _fine(ink: np.ndarray, cells, centre: float, vertical: bool, px_per_mm: float) -> tuple[float, float]:
    """The angle (degrees counter-clockwise) near the coarse ``centre`` to a few hundredths, and how
    sharply the profile peaks there (the share its score drops half a degree either side)."""
    centre = _peak(cells, _steps(centre - 1, centre + 1, 0.25), 1.4 * px_per_mm)
    # Fine, as Leptonica's search does: the whole page sheared, its row sums in rows of one pixel, and
    # the sum of squared differences between neighbouring rows (a line's top and foot edges). Strips
    # of about 1.35 mm are sheared whole: a hundred times less to move than every pixel column.
    # Scoring sampled cells in bins that were not whole rows favoured the coarse angle itself (the
    # rows fell into the bins in step only there): book pages came out 0.2–0.4° off.
    strip = max(1, round(1.35 * px_per_mm))
    strips = (ink.shape[0] if vertical else ink.shape[1]) // strip
    if strips < 2:
        return (-centre if vertical else centre), 0.0
    if vertical:
        # Lines running down: the strips are bands of rows, averaged first and only then transposed
        # (the same averages; a transposed copy of the whole page cost more than the rest of this stage).
        columns = np.ascontiguousarray(cv2.resize(ink[:strips * strip], (ink.shape[1], strips),
                                                  interpolation=cv2.INTER_AREA).T)
    else:
        columns = cv2.resize(ink[:, :strips * strip], (strips, ink.shape[0]), interpolation=cv2.INTER_AREA)
    # The coarse peak lies within a few tenths of the best angle: three angles 0.2° apart about it, and
    # two more at ±0.4° only when the best of the three is at an end; then three 0.05° apart about the
    # best. The score at the angle found is the best of those three (within 0.05° of it, a few hundredths
    # of a per cent below it): 8 shears on most pages, not 11.
    steps = np.array([-0.2, 0.0, 0.2])
    scores = [_sheared_score(columns, strip, centre + step) for step in steps]
    if np.argmax(scores) != 1:
        steps = np.array([-0.4, -0.2, 0.0, 0.2, 0.4])
        scores = [_sheared_score(columns, strip, centre - 0.4), *scores, _sheared_score(columns, strip, centre + 0.4)]
    angle = _parabola_peak(centre + steps, scores)
    near = [_sheared_score(columns, strip, angle + step) for step in (-0.05, 0.0, 0.05)]
    angle, at = _parabola_peak(angle + np.array([-0.05, 0.0, 0.05]), near), max(near)
    below, above = (_sheared_score(columns, strip, angle + step) for step in (-0.5, 0.5))
    sharpness = float(1 - (below + above) / (2 * at)) if at > 0 else 0.0
    # Lines running down were measured with x and y swapped, a mirror image: the turn is the opposite.
    return (-angle if vertical else angle), sharpness


def _sheared_score(columns: np.ndarray, strip: int, angle_deg: float) -> float:
    """Sum of squared differences between neighbouring row sums of the strips ``columns`` (each ``strip``
    px wide) once the content is turned back by ``angle_deg``: each strip moved down by its
    distance from the middle × tan(angle)."""
    rows, count = columns.shape
    slope = float(np.tan(np.radians(angle_deg)))
    pad = int(abs(slope) * strip * count / 2) + 2
    shear = np.float32([[1, 0, 0], [slope * strip, 1, pad - slope * strip * (count - 1) / 2]])
    sheared = cv2.warpAffine(columns, shear, (count, rows + 2 * pad), flags=cv2.INTER_LINEAR)
    profile = cv2.reduce(sheared, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().astype(np.float64)
    edges = np.diff(profile)
    return float(edges @ edges)


def _steps(lo: float, hi: float, step: float) -> np.ndarray:
    return lo + step * np.arange(round((hi - lo) / step) + 1)


def _peak(cells, angles: np.ndarray, bin_px: float) -> float:
    """The best of ``angles``, placed between samples by a parabola through it and its neighbours."""
    return _parabola_peak(angles, _scan(cells, angles, bin_px))


def _parabola_peak(angles: np.ndarray, scores) -> float:
    """The angle of the highest score, placed between evenly spaced samples by a parabola through it and its
    neighbours (the sample itself at either end, or where the three do not bend down)."""
    best = int(np.argmax(scores))
    if 0 < best < len(angles) - 1:
        left, mid, right = scores[best - 1:best + 2]
        bend = left - 2 * mid + right
        if bend < 0:
            return float(angles[best] + 0.5 * (left - right) / bend * (angles[1] - angles[0]))
    return float(angles[best])


def _grid(ink: np.ndarray, width: int, height: int) -> np.ndarray:
    """Mean ink over cells ``width`` × ``height`` px (the image's right and bottom remainders left out)."""
    h, w = ink.shape
    k, n = w // width, h // height
    return cv2.resize(ink[:n * height, :k * width], (k, n), interpolation=cv2.INTER_AREA)


def _cells(grid: np.ndarray, shape: tuple[int, int], vertical: bool, limit: int):
    """(x along the lines, y across them, ink) of the inked cells of a grid over an image of ``shape``,
    from the image's centre; every k-th cell when there are more than ``limit``."""
    h, w = shape
    n, k = grid.shape
    flat = np.flatnonzero(grid)
    flat = flat[::max(1, flat.size // limit)]
    ys, xs = np.divmod(flat, k)
    cell_w, cell_h = w // k, h // n
    xs = ((xs + 0.5) * cell_w - w / 2).astype(np.float32)
    ys = ((ys + 0.5) * cell_h - h / 2).astype(np.float32)
    weights = grid.ravel()[flat].astype(np.float32)
    return (ys, xs, weights) if vertical else (xs, ys, weights)


def _scan(cells, angles: np.ndarray, bin_px: float) -> np.ndarray:
    """The profile score across the lines, for each angle: the sum of squared bin totals."""
    xs, ys, weights = cells
    radius = float(np.hypot(np.abs(xs).max(initial=0), np.abs(ys).max(initial=0))) + 2 * bin_px
    n = int(2 * radius / bin_px) + 2
    scores = np.empty(len(angles))
    per_chunk = max(1, _CHUNK // max(1, xs.size))
    for start in range(0, len(angles), per_chunk):
        chunk = np.radians(angles[start:start + per_chunk]).astype(np.float32)[:, None]
        # Position across the lines if the content were turned back by the angle; each cell's ink
        # is split between the two nearest bins so the score varies smoothly with the angle.
        pos = (xs * np.sin(chunk) + ys * np.cos(chunk) + np.float32(radius)) / np.float32(bin_px)
        lower = pos.astype(np.int32)
        upper_share = (pos - lower) * weights
        lower += (np.arange(len(chunk), dtype=np.int32) * n)[:, None]
        size = len(chunk) * n + 1
        hist = (np.bincount(lower.ravel(), (weights - upper_share).ravel(), size)
                + np.bincount(lower.ravel() + 1, upper_share.ravel(), size))[:-1].reshape(len(chunk), n)
        scores[start:start + len(chunk)] = np.einsum("ij,ij->i", hist, hist)
    return scores


def rotation_matrix(shape: tuple[int, ...], rotation_deg: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The 2×3 affine that turns an image of this shape ``rotation_deg`` counter-clockwise about its
    centre onto a canvas (w, h) that holds every pixel of it, centred; and that canvas's size.

    A same-size canvas would cut off the corners, and with them whatever is written near them.
    """
    h, w = shape[:2]
    angle = np.radians(rotation_deg)
    cos, sin = abs(np.cos(angle)), abs(np.sin(angle))
    # Rounded first so that an exact quarter turn's float dust does not add a pixel.
    size = (int(np.ceil(round(w * cos + h * sin, 6))), int(np.ceil(round(w * sin + h * cos, 6))))
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rotation_deg, 1.0)
    matrix[:, 2] += ((size[0] - w) / 2, (size[1] - h) / 2)
    return matrix, size


def warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], fill: int = 255) -> np.ndarray:
    """The image mapped through ``matrix`` onto a canvas of ``size`` (w, h), bilinear, filled with ``fill``.

    Bilinear is the area-mapped interpolation Leptonica (and so OCRmyPDF) deskews with; at 300 dpi
    it keeps strokes crisp at a third of bicubic's cost.
    """
    value = (fill,) * (1 if image.ndim == 2 else image.shape[2])
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=value)


def warp_bgrx(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], fill: int = 255) -> np.ndarray:
    """An RGB image mapped as ``warp`` maps it, onto a BGRX canvas (the order OpenCV's encoder takes).

    OpenCV warps four channels faster than three. It warps row after row of the canvas: on a page
    turned more than a degree, one canvas row crosses a new image row every few dozen pixels, and a
    full-size page falls out of the cache before the next canvas row comes back to the same image
    rows. A tile reads a patch that stays in the cache, and only the patch is made BGRX, so no
    full-size BGRX copy is written (a 300-dpi colour page: about 40 % faster than a full-size BGRX
    copy warped whole).
    """
    w, h = size
    out = np.empty((h, w, 4), np.uint8)
    corners, boxes = _source_boxes(cv2.invertAffineTransform(matrix), size, image.shape)
    # Each tile's warp reads its box as an image of its own: the translation moves by the box's corner
    # and back by the tile's.
    matrices = np.repeat(matrix[None], len(boxes), axis=0)
    matrices[:, :, 2] += boxes[:, :2] @ matrix[:, :2].T - corners
    for (x, y), (x0, y0, x1, y1), shifted in zip(corners.tolist(), boxes.tolist(), matrices):
        tile = out[y:y + _TILE_PX, x:x + _TILE_PX]
        if x1 <= x0 or y1 <= y0:
            tile[:] = fill
            continue
        cv2.warpAffine(cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2BGRA), shifted,
                       (tile.shape[1], tile.shape[0]), dst=tile, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * 4)
    return out


def _source_boxes(inverse: np.ndarray, size: tuple[int, int],
                  shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The top-left corners (x, y) of the canvas tiles of ``size`` (w, h), row by row, and the box
    (x0, y0, x1, y1) of image pixels a bilinear warp reads for each; ``inverse`` maps canvas to image."""
    w, h = size
    ys, xs = np.meshgrid(np.arange(0, h, _TILE_PX), np.arange(0, w, _TILE_PX), indexing="ij")
    corners = np.stack([xs.ravel(), ys.ravel()], axis=1)
    last = np.minimum(corners + _TILE_PX, (w, h)) - 1
    # The four corners of every tile, mapped into the image: an affine map's extremes over a box lie on them.
    xy = np.stack([corners, np.stack([last[:, 0], corners[:, 1]], 1),
                   np.stack([corners[:, 0], last[:, 1]], 1), last], axis=1).astype(np.float64)
    mapped = xy @ inverse[:, :2].T + inverse[:, 2]
    # Each position reads the pixel at or below it and the next one up; one more each way for rounding.
    low = np.maximum(np.floor(mapped.min(axis=1)).astype(np.int64) - 1, 0)
    high = np.minimum(np.floor(mapped.max(axis=1)).astype(np.int64) + 3, (shape[1], shape[0]))
    return corners, np.concatenate([low, high], axis=1)
