"""Which way up a deskewed page is: 0, 90, 180 or 270 degrees, with a confidence."""

from dataclasses import dataclass

import cv2
import numpy as np

from .imageio import median

_GLYPH_MM = (0.3, 12.0)  # parts of characters: bigger is a rule, a photo or a seal's ring
_SOLID_FILL = 0.3        # share of its box a photograph's mark covers, at least
_GAP_SHARE = 0.06        # a row or column with less ink than this share of a busy one is a gap
# Evidence, in votes, at which the confidence is one half: one heading, or a few commas, is not enough.
_HALF_CONFIDENCE_VOTES = 4.0
# Latin script: ascenders outnumber descenders on an upright line. A surplus of this many standard
# deviations either way is evidence; less is chance.
_SURE_SCRIPT_SIGMA = 3.0
# Line direction: across and down must differ in their share of gaps by this much to be told apart.
_CLEAR_LINES = 0.15
_UNSURE = 0.5           # the confidence reported when the cues are weak or disagree: below any sane bar
# Stops placed as no line of text read either way places them, beyond those placed as one does: this
# many, and this share of the layout's votes, say the page's lines are not lines of text across
# (vertical writing laid on its side). A few closing quotes on a Latin page (high, after their word)
# are far fewer than its full stops.
_ODD_STOPS = 4
_ODD_SHARE = 0.5
# The layout alone turns a page only where this many more lines of text put their stops one way than
# the other: one row of dots or dashes (a broken rule, a music page's foot) is not a page of lines.
_AGREEING_LINES = 3
# A gap between lines this many times the usual one ends a paragraph (a blank line between them).
_PARAGRAPH_GAP = 1.8
# A paragraph's first and last lines differ in length by this share of its width to say which ends it.
_SHORT_LINE = 0.12
# A line's middle band (x-height) thinner than this is too small to tell its ascenders (2 pixels at 150 dpi).
_MIN_BAND_MM = 0.4


@dataclass(frozen=True)
class Orientation:
    """How far to turn a page counter-clockwise to bring it upright, and how sure that is."""

    turn_deg: int           # 0, 90, 180 or 270
    confidence: float       # 0 (no evidence either way) … 1


def detect_orientation(marks: np.ndarray, shape: tuple[int, int], px_per_mm: float) -> Orientation:
    """Which way up the deskewed page is, judged from its text lines.

    ``marks`` holds (x, y, w, h, …) of the connected marks on the deskewed page, within an area of
    ``shape`` (h, w). Lines of text run across an upright page; full-width punctuation (，。、) sits
    at the foot of its line, and a heading, larger than the body text, stands above it. Sideways,
    the lines run down the page.
    """
    boxes = _glyph_boxes(marks, px_per_mm)
    if len(boxes) < 8:
        return Orientation(0, 0.0)
    every = marks[:, :4].astype(np.int64)
    across, down = _gappiness(boxes, shape, 1), _gappiness(boxes, shape, 0)
    sideways = down > across
    if sideways:
        votes, script, ends, odd, agreeing = _upright_votes(_turned(boxes, shape), _turned(every, shape), px_per_mm)
    else:
        votes, script, ends, odd, agreeing = _upright_votes(boxes, every, px_per_mm)
    # Two independent cues: the layout (stops at the foot of the line, a heading on top) and the
    # script's own shape (ascenders above the line). A page is turned only on a clear line direction
    # and a cue that is strong while the other does not say otherwise; else it stays as captured.
    clarity = min(1.0, abs(across - down) / _CLEAR_LINES)
    layout = abs(votes) / (abs(votes) + _HALF_CONFIDENCE_VOTES)
    shape_cue = abs(script) / (abs(script) + _SURE_SCRIPT_SIGMA)
    # The script's shape alone misleads on handwriting and on scripts other than Latin (Hebrew
    # hangs below its line): it counts only where the layout agrees. The layout alone counts only
    # where it is very strong, comes from several lines, and the script says nothing (Chinese: no
    # ascenders to go by). Its votes are counted by the mark, so one row of specks can outvote a page.
    strong_script = abs(script) >= _SURE_SCRIPT_SIGMA and votes * script > 0 and abs(votes) >= 1
    strong_layout = (layout >= 0.6 and votes * script > 0 and abs(script) >= _SURE_SCRIPT_SIGMA) or (
        layout >= 0.75 and abs(script) < 1.0 and agreeing * np.sign(votes) >= _AGREEING_LINES)
    upright = (script if strong_script else votes) >= 0
    # Every script ends a paragraph on its short line. Marks and letter shapes read upright in one
    # script read upside down in another (Hebrew: hanging letters, its maqaf and gershayim at the
    # top of the line, as a turned Latin page has its stops), so where the paragraphs say the
    # other way, nothing is sure.
    if ends and (ends > 0) != upright:
        strong_script = strong_layout = False
    # Stops placed as no line read either way places them: columns of vertical writing, laid across
    # by a quarter turn, are not lines of text fed sideways. Their way up is not told here.
    if odd >= max(_ODD_STOPS, _ODD_SHARE * abs(votes)):
        strong_script = strong_layout = False
    turn = (90 if upright else 270) if sideways else (0 if upright else 180)
    confidence = clarity * max(shape_cue if strong_script else 0.0, layout if strong_layout else 0.0)
    if not (strong_script or strong_layout):
        turn, confidence = 0, min(_UNSURE, clarity * max(layout, shape_cue))
    return Orientation(turn, round(float(confidence), 3))


def _turned(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The boxes as they would lie on the page turned 90° counter-clockwise: x' = y, y' = w - x - width."""
    return np.stack([boxes[:, 1], shape[1] - boxes[:, 0] - boxes[:, 2], boxes[:, 3], boxes[:, 2]], axis=1)


def _glyph_boxes(marks: np.ndarray, px_per_mm: float) -> np.ndarray:
    """(x, y, w, h) of the marks the size of characters or their parts, outside photographs."""
    lo, hi = (mm * px_per_mm for mm in _GLYPH_MM)
    x, y, w, h, pixels = marks[:, :5].T
    keep = (np.maximum(w, h) >= lo) & (w <= hi) & (h <= hi)
    # A large mark that fills much of its box is a photograph or a solid block; the specks of its
    # lighter parts are not characters. (A table's rules, or a seal's ring, fill little of theirs.)
    centre_x, centre_y = x + w / 2, y + h / 2
    for bx, by, bw, bh, _ in marks[((w > hi) | (h > hi)) & (pixels > _SOLID_FILL * w * h)]:
        keep &= ~((centre_x >= bx) & (centre_x < bx + bw) & (centre_y >= by) & (centre_y < by + bh))
    return marks[keep, :4].astype(np.int64)


def _gappiness(boxes: np.ndarray, shape: tuple[int, int], axis: int) -> float:
    """Share of the text's extent, along rows (axis 1) or columns (axis 0), that falls in gaps.

    Lines of text leave wide gaps between them; characters along a line leave only narrow ones.
    """
    start, size = (boxes[:, 1], boxes[:, 3]) if axis == 1 else (boxes[:, 0], boxes[:, 2])
    profile = _coverage(start, size, shape[0] if axis == 1 else shape[1])
    busy = np.nonzero(profile)[0]
    if busy.size == 0:
        return 0.0
    span = profile[busy[0]:busy[-1] + 1]
    return float(np.mean(span < _GAP_SHARE * np.percentile(span, 90)))


def _coverage(start: np.ndarray, size: np.ndarray, length: int) -> np.ndarray:
    """How many boxes cover each position along one axis."""
    steps = np.zeros(length + 1, np.int64)
    np.add.at(steps, start, 1)
    np.add.at(steps, np.minimum(start + size, length), -1)
    return np.cumsum(steps[:-1])


def _upright_votes(boxes: np.ndarray, every: np.ndarray, px_per_mm: float) -> tuple[float, float, int, int, int]:
    """Evidence that lines running across are the right way up (positive) or upside down (negative):
    votes from the layout, standard deviations of a Latin script's ascender surplus, paragraphs
    ending on their short line less those starting on it (any script), stops that sit as no line
    of text read either way puts them less those that sit as one does (see _punctuation_votes), and
    lines whose stops vote upright less those whose stops vote upside down.

    ``boxes`` are the character-sized marks, ``every`` all marks (x, y, w, h), rules included.
    """
    x, y, w, h = boxes.T
    length = int((y + h).max()) + 1
    profile = _coverage(y, h, length)
    lines = _runs(profile > _GAP_SHARE * np.percentile(profile[profile > 0], 90))
    if not lines:
        return 0.0, 0.0, 0, 0, 0
    heights = np.array([b - a for a, b in lines])
    typical = median(heights)
    centre = y + h / 2
    # Each line's marks are found by a binary search of the marks sorted by their centre, and of all
    # marks sorted by their top (a band as high as the tallest mark holds any that reach the line),
    # not by a pass over every mark of the page for each line.
    by_centre = np.argsort(centre, kind="stable")
    centres = centre[by_centre]
    every = every[np.argsort(every[:, 1], kind="stable")]
    tops, tallest = every[:, 1], int(every[:, 3].max())
    votes, odd, rises, drops, agreeing = 0.0, 0, 0, 0, 0
    for top, bottom in lines:
        height = bottom - top
        if not 0.6 * typical <= height <= 1.6 * typical:
            continue
        inside = by_centre[np.searchsorted(centres, top, "left"):np.searchsorted(centres, bottom, "left")]
        if inside.size < 4:
            continue
        near = every[np.searchsorted(tops, top - height // 2 - tallest, "right"):
                     np.searchsorted(tops, bottom + height // 2, "left")]
        near = near[near[:, 1] + near[:, 3] > top - height // 2]
        line_votes, line_odd = _punctuation_votes(x[inside], y[inside], w[inside], h[inside], top, height, near)
        votes, odd, agreeing = votes + line_votes, odd + line_odd, agreeing + int(np.sign(line_votes))
        rise, drop = _ascenders(y[inside], h[inside], _MIN_BAND_MM * px_per_mm)
        rises, drops = rises + rise, drops + drop
    script = (rises - drops) / np.sqrt(rises + drops + 1.0)
    ends = _paragraph_ends(lines, heights, typical, x, w, centre)
    return votes + _heading_votes(lines, heights, typical), float(script), ends, odd, agreeing


def _paragraph_ends(lines: list[tuple[int, int]], heights: np.ndarray, typical: float, x: np.ndarray,
                    w: np.ndarray, centre: np.ndarray) -> int:
    """Paragraphs (runs of body lines set apart by a wider gap) whose last line is markedly shorter
    than their first, less those whose first line is: positive on a page the right way up, in any
    script and either direction of writing."""
    body = [(a, b) for (a, b), h in zip(lines, heights) if 0.6 * typical <= h <= 1.6 * typical]
    if len(body) < 6:
        return 0
    gaps = np.array([b[0] - a[1] for a, b in zip(body, body[1:])])
    usual = max(1.0, median(gaps))
    spans = []
    for top, bottom in body:
        inside = (centre >= top) & (centre < bottom)
        spans.append((int(x[inside].min()), int((x + w)[inside].max())) if inside.any() else None)
    ends, start = 0, 0
    for i in range(len(body)):
        if i + 1 < len(body) and gaps[i] <= _PARAGRAPH_GAP * usual:
            continue
        paragraph = [s for s in spans[start:i + 1] if s is not None]
        start = i + 1
        if len(paragraph) < 3:
            continue
        width = max(b for _, b in paragraph) - min(a for a, _ in paragraph)
        first, last = (paragraph[0][1] - paragraph[0][0]), (paragraph[-1][1] - paragraph[-1][0])
        if abs(first - last) >= _SHORT_LINE * width:
            ends += 1 if last < first else -1
    return ends


def _ascenders(y: np.ndarray, h: np.ndarray, min_band_px: float) -> tuple[int, int]:
    """Marks of a line reaching well above its middle band (b, d, h, capitals) and well below it (g, p, y).

    Latin lowercase shares one band between x-height and baseline; Chinese characters fill their
    whole cell, so they add little to either count.
    """
    top, bottom = median(y), median(y + h)
    band = bottom - top
    if band <= min_band_px:
        return 0, 0
    return int(np.count_nonzero(y < top - 0.35 * band)), int(np.count_nonzero(y + h > bottom + 0.35 * band))


def _punctuation_votes(x, y, w, h, top: int, height: int, near: np.ndarray) -> tuple[float, int]:
    """Full-width commas and stops stand alone in their character cell at the foot of the line.

    Votes: stops at the foot less stops at the top. Also the stops that sit as no line read either
    way puts them less those that sit as one does: a stop follows its character, so on a line the
    right way up it is low and close to the mark on its left, on one upside down high and close to
    the mark on its right. High and close on the left is how the stops of vertical writing (竖排,
    縦書き: the top right of their cell) look once its columns are laid across — not a line upside
    down. ``near`` holds every mark within half a line above or below the line.
    """
    small = np.nonzero((h <= 0.4 * height) & (w <= 0.4 * height))[0]
    if not small.size:
        return 0.0, 0
    line_x, line_w = x, w
    x, y, w, h = x[small, None], y[small], w[small, None], h[small]
    # Alone: no other mark close above or below shares much of its width. A dot or tick that
    # belongs to a character (文, 六, 心) has the rest of it there; a broken piece of a ruled
    # line has the rest of the line. One row per small mark, one column per mark near the line,
    # so many rows at a time that a speckled page's scratch stays near 8 MB.
    alone = np.empty(small.size, bool)
    rows = max(1, (1 << 20) // max(1, len(near)))
    for i in range(0, small.size, rows):
        xs, ws = x[i:i + rows], w[i:i + rows]
        shared = np.minimum(near[:, 0] + near[:, 2], xs + ws) - np.maximum(near[:, 0], xs)
        alone[i:i + rows] = np.count_nonzero(shared > 0.3 * ws, axis=1) <= 1
    where = (y[alone] + h[alone] / 2 - top) / height
    low, high = where > 0.62, where < 0.38
    side = _closer_side(line_x, line_w, x[alone, 0], w[alone, 0])
    odd = np.count_nonzero(high & (side < 0)) + np.count_nonzero(low & (side > 0))
    usual = np.count_nonzero(low & (side < 0)) + np.count_nonzero(high & (side > 0))
    return float(np.count_nonzero(low) - np.count_nonzero(high)), int(odd - usual)


def _closer_side(line_x: np.ndarray, line_w: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """For each mark (x, w) on a line of marks (line_x, line_w): -1 where the gap to its neighbour on
    the left is under half the gap on its right, +1 the other way round, 0 where neither is, or
    where it has no neighbour on a side."""
    # The nearest end at or left of each mark's middle, and the nearest start at or right of it, found
    # by a binary search of the line's sorted ends and starts: the line's marks are read twice, not once a mark.
    if not line_x.size:
        return np.zeros(x.size, np.int8)
    ends, starts = np.sort(line_x + line_w), np.sort(line_x)
    middle = x + w / 2
    left = np.searchsorted(ends, middle, side="right") - 1
    right = np.searchsorted(starts, middle, side="left")
    both = (left >= 0) & (right < starts.size)
    gap_left = np.maximum(0, x - ends[np.maximum(left, 0)])
    gap_right = np.maximum(0, starts[np.minimum(right, starts.size - 1)] - (x + w))
    side = np.where(gap_left < 0.5 * gap_right, -1, np.where(gap_right < 0.5 * gap_left, 1, 0))
    return np.where(both, side, 0).astype(np.int8)


def _heading_votes(lines: list[tuple[int, int]], heights: np.ndarray, typical: float) -> float:
    """A heading, markedly taller than the body text, is among the first lines, not the last."""
    if len(lines) < 3:
        return 0.0
    tallest = int(np.argmax(heights))
    if heights[tallest] < 1.35 * typical:
        return 0.0
    top, bottom = lines[0][0], lines[-1][1]
    where = ((lines[tallest][0] + lines[tallest][1]) / 2 - top) / max(1, bottom - top)
    return 3.0 if where < 0.3 else -3.0 if where > 0.7 else 0.0


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()))


def turn(image: np.ndarray, turn_deg: int) -> np.ndarray:
    """The image turned ``turn_deg`` (a multiple of 90) counter-clockwise."""
    codes = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    return cv2.rotate(image, codes[turn_deg]) if turn_deg % 360 else image


def turn_matrix(size: tuple[int, int], turn_deg: int) -> np.ndarray:
    """The 3×3 affine taking pixels of an image of ``size`` (w, h) to the image turned ``turn_deg`` counter-clockwise."""
    w, h = size
    return {0: np.eye(3),
            90: np.array([[0.0, 1, 0], [-1, 0, w - 1], [0, 0, 1]]),
            180: np.array([[-1.0, 0, w - 1], [0, -1, h - 1], [0, 0, 1]]),
            270: np.array([[0.0, -1, h - 1], [1, 0, 0], [0, 0, 1]])}[turn_deg % 360]
