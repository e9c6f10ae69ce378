"""Which pixels of a downscaled page are the ink that text lines and rules are made of."""

import cv2
import numpy as np

from .paper import Paper, paper_level

EDGE_BAND_MM = 3.0       # ink this close to the sheet's edge is the edge's shadow, not content
_INK_LEVEL = 0.6         # darker than this share of the paper's level is ink
# Where ink covers most of a block about this wide, it is a photo, a solid area or a punch hole,
# not strokes: such areas have no lines to align and would only blur the profiles.
_SOLID_BLOCK_MM = 2.0
_SOLID_SHARE = 0.6
# Paper is not one shade: a book page photographed or scanned open darkens toward the gutter and a
# corner, and a global threshold takes the darker paper for ink (then clears it as a solid area, text
# and all). Ink is judged against the brightest paper within about 8 mm, sampled every 2 mm; where even
# that is darker than 70 % of the sheet's level it is backing or a plate, not paper (a plate's
# texture judged against its own shade took over the skew of leptonica-wet-day.jpg).
_LOCAL_MM = 8.0
_LOCAL_STEP_MM = 2.0
_MIN_LOCAL = 0.7
# Anything darker than this share of the paper around it is a mark of some kind: faint pencil, pale
# brown ink, a stroke's grey rim. Printed text is dark: its ink mask holds most of its marks (on the
# real corpus they cover 0.17-1.85 times its ink); faded handwriting's holds a third of them or less.
_MARK_LEVEL = 0.85


def ink_mask(grey: np.ndarray, paper: Paper | None, px_per_mm: float, share: float = _INK_LEVEL) -> np.ndarray:
    """uint8 255 where the grey page has stroke ink inside the sheet (darker than ``share`` of the paper
    around it); edge band, photos and solid areas left out."""
    level = paper.level if paper is not None else paper_level(grey[::4, ::4])
    ink = _below_local_paper(grey, level, px_per_mm, share)
    band = max(1, round(EDGE_BAND_MM * px_per_mm))
    if paper is not None:
        inside = paper.mask.copy()
        cv2.polylines(inside, [paper.polygon], True, 0, thickness=2 * band + 1)
        cv2.bitwise_and(ink, inside, dst=ink)
    else:
        ink[:band], ink[-band:], ink[:, :band], ink[:, -band:] = 0, 0, 0, 0
    _clear_solids(ink, max(2, round(_SOLID_BLOCK_MM * px_per_mm)))
    return ink


def marks_per_ink(grey: np.ndarray, paper: Paper | None, px_per_mm: float, ink: np.ndarray) -> float:
    """How many times the pixels of ``ink`` (ink_mask's) the page's marks, faint ones included, cover:
    near 1 where the content is dark print, several times where most of the writing is too faint for
    the ink mask and the skew was measured on the few dark strokes left."""
    return cv2.countNonZero(ink_mask(grey, paper, px_per_mm, _MARK_LEVEL)) / max(1, cv2.countNonZero(ink))


def _clear_solids(ink: np.ndarray, block: int) -> None:
    """Blank out blocks that are mostly ink, and the blocks around them (the solid area's rim)."""
    h, w = ink.shape
    rows, cols = h // block, w // block
    if not rows or not cols:
        return
    share = cv2.resize(ink[:rows * block, :cols * block], (cols, rows), interpolation=cv2.INTER_AREA)
    solid = (share > _SOLID_SHARE * 255).astype(np.uint8)
    if not solid.any():
        return
    block_rows, block_cols = np.nonzero(cv2.dilate(solid, np.ones((3, 3), np.uint8)))
    # A view of the image as rows × block × cols × block: whole blocks are cleared in one step.
    ink[:rows * block, :cols * block].reshape(rows, block, cols, block)[block_rows, :, block_cols, :] = 0


def _below_local_paper(grey: np.ndarray, level: float, px_per_mm: float, share: float) -> np.ndarray:
    """uint8 255 where the grey page is darker than ``share`` of the paper around it (the brightest
    over about _LOCAL_MM); 0 where the surround is too dark to be paper (backing, a photo)."""
    step = max(1, round(_LOCAL_STEP_MM * px_per_mm))
    h, w = grey.shape
    # A sample every step is enough to find the paper's shade: most of a page is paper.
    samples = np.ascontiguousarray(grey[step // 2::step, step // 2::step])
    side = max(3, round(_LOCAL_MM / _LOCAL_STEP_MM) | 1)
    local = cv2.blur(cv2.dilate(samples, cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))), (3, 3))
    # Whole grey levels: g < share × v exactly when g < ceil(share × v); 0 where v is no paper.
    shades = np.arange(256)
    table = np.where(shades >= _MIN_LOCAL * level, np.ceil(share * shades - 1e-9), 0).astype(np.uint8)
    threshold = cv2.resize(cv2.LUT(local, table), (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.compare(grey, threshold, cv2.CMP_LT)
