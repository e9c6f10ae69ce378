"""What a scanner can produce: the resolutions a station accepts and the largest sheet it feeds.

A page file from outside the scanner (a folder import, ``process``) is held to the same bounds
before a pixel of it is decoded, which also bounds the pipeline's memory for one page.
"""

import math

# The resolutions a station scans at (station.toml's dpi); a file claiming one outside them is damaged
# or wrongly tagged. DA/T 31 asks at least 200 dpi, 600 for facsimile; 2400 is above any sheet-fed
# document scanner's optical resolution.
MIN_DPI = 50
MAX_DPI = 2400
# The largest sheet the supported scanner families feed: A3 (fi-7700, DR-G1130 …); personnel dossier
# materials are A4 with A3 fold-outs. Scanners capture a few millimetres beyond each edge (overscan).
LARGEST_PAPER_MM = (297.0, 420.0)
OVERSCAN_MM = 10.0
MIN_SIDE_PX = 16        # the pipeline needs this much of an image to find anything on it


def largest_page_px(dpi: int) -> tuple[int, int]:
    """The short and long side, in pixels, of the largest sheet (with overscan) scanned at ``dpi``."""
    return tuple(math.ceil((mm + OVERSCAN_MM) / 25.4 * dpi) for mm in LARGEST_PAPER_MM)


def too_large(width_px: int, height_px: int, dpi: int) -> bool:
    """Whether an image is larger than any sheet a scanner feeds, at ``dpi``."""
    short, long = largest_page_px(dpi)
    return min(width_px, height_px) > short or max(width_px, height_px) > long


# The most pixels any page may have: the largest sheet at the highest resolution.
MAX_PAGE_PIXELS = math.prod(largest_page_px(MAX_DPI))
