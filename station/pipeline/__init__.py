"""Image pipeline: deskew, crop, blank flag, colour guard and encoding of each captured page."""

from .config import PipelineConfig
from .imageio import read_image
from .process import ProcessedPage, process_page

__all__ = ["PipelineConfig", "ProcessedPage", "process_page", "read_image"]
