"""Image pipeline: deskew, crop, blank flag, colour guard and encoding of each captured page."""

# numpy loads numpy.ma and numpy.random on first use. Two threads using one first at the same moment can
# make numpy's lazy loader call itself until RecursionError (CPython's import publishes the submodule
# before it sets it on numpy: python/cpython#149728); the station's page workers hit it in np.median.
# Loading them with the pipeline, before any worker starts, closes that window. Not in station/__init__:
# `python -m station.service` imports that package before it blocks the stop signals, and numpy's
# OpenBLAS threads started then would take SIGTERM with its default action (the service killed mid-page).
import numpy.ma  # noqa: F401
import numpy.random  # noqa: F401

from .config import PipelineConfig
from .imageio import read_image
from .process import ProcessedPage, process_page

__all__ = ["PipelineConfig", "ProcessedPage", "process_page", "read_image"]
