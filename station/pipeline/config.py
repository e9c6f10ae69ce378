"""Image pipeline settings, validated once when built."""

from dataclasses import dataclass

COLOUR_POLICIES = ("colour", "auto")


@dataclass(frozen=True)
class PipelineConfig:
    """How a station processes each captured page; every field has the profile's default."""

    deadband_deg: float = 0.05      # |skew| below this: page left untouched (no rotation)
    max_skew_deg: float = 15.0      # skew search range, ± degrees
    margin_mm: float = 2.5          # margin kept beyond the paper edge when cropping
    jpeg_quality: int = 85
    colour_policy: str = "auto"     # "colour": always colour; "auto": colour only for colour content
    allow_bilevel: bool = False     # under "auto", clean black text may become bilevel (G4 TIFF)
    # A page is flagged blank when marks cover less than this percentage of the paper inspected
    # (the paper less an 8 mm edge band): 0.002 % of A4 is about 1 mm², less than one written
    # character or a page number. See blank.py for what counts as a mark.
    blank_threshold: float = 0.002
    # Below this confidence (0–1) a page is left the way it was fed, and flagged for an inspector.
    min_orientation_confidence: float = 0.6
    workers: int = 0                # pages processed at once; 0: one per CPU core
    spool_pages: int = 0            # captured pages not yet stored before the scanner is held; 0: workers + 2

    def __post_init__(self):
        problems = []
        if self.colour_policy not in COLOUR_POLICIES:
            problems.append(f"colour_policy {self.colour_policy!r} must be one of {', '.join(COLOUR_POLICIES)}")
        if not 0 <= self.deadband_deg < 5:
            problems.append(f"deadband_deg {self.deadband_deg!r} must be between 0 and 5")
        if not 0 < self.max_skew_deg <= 45:
            problems.append(f"max_skew_deg {self.max_skew_deg!r} must be above 0 and at most 45")
        if not 0 <= self.margin_mm <= 50:
            problems.append(f"margin_mm {self.margin_mm!r} must be between 0 and 50")
        if not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 95:
            problems.append(f"jpeg_quality {self.jpeg_quality!r} must be a whole number from 1 to 95")
        if not 0 <= self.blank_threshold < 100:
            problems.append(f"blank_threshold {self.blank_threshold!r} must be a percentage from 0 to 100")
        if not 0 <= self.min_orientation_confidence <= 1:
            problems.append(f"min_orientation_confidence {self.min_orientation_confidence!r} must be from 0 to 1")
        for name in ("workers", "spool_pages"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 256:
                problems.append(f"{name} {value!r} must be a whole number from 0 (automatic) to 256")
        if problems:
            raise ValueError("pipeline settings: " + "; ".join(problems))
