"""Image pipeline settings: the [pipeline] table of station.toml, declared and validated once."""

from typing import Literal

from pydantic import Field

from quire.settings import Settings


class PipelineConfig(Settings):
    """How a station processes each captured page; every field has the profile's default."""

    deadband_deg: float = Field(0.05, ge=0, lt=5)     # |skew| below this: page left untouched (no rotation)
    max_skew_deg: float = Field(15.0, gt=0, le=45)    # skew search range, ± degrees
    margin_mm: float = Field(2.5, ge=0, le=50)        # margin kept beyond the paper edge when cropping
    jpeg_quality: int = Field(85, ge=1, le=95)
    # "colour": always colour; "auto": colour only for colour content
    colour_policy: Literal["colour", "auto"] = "auto"
    allow_bilevel: bool = False     # under "auto", clean black text may become bilevel (G4 TIFF)
    # A page is flagged blank when marks cover less than this percentage of the paper inspected
    # (the paper less an 8 mm edge band): 0.002 % of A4 is about 1 mm², less than one written
    # character or a page number. See blank.py for what counts as a mark.
    blank_threshold: float = Field(0.002, ge=0, lt=100)
    # Below this confidence (0–1) a page is left the way it was fed, and flagged for an inspector.
    # On the real-scan corpus the one page turned wrongly scored 0.667 (handwritten sums fed sideways,
    # spandsp test2); every turn scored 0.7 or more was right. A page left as fed is only flagged.
    min_orientation_confidence: float = Field(0.7, ge=0, le=1)
    # pages processed at once; 0: one per CPU core, less one on 3 or more (station.scan.default_workers)
    # Keep the untouched capture in the bundle beside the processed page, as a lossless TIFF: the
    # preservation master (FADGI's master and derivative), so a later, better pipeline can redo the page.
    keep_master: bool = False
    workers: int = Field(0, ge=0, le=256)
    # captured pages not yet stored before the scanner is held; 0: workers + 2
    spool_pages: int = Field(0, ge=0, le=256)
