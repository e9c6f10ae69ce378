"""Quire scanning station: capture, image pipeline, page store, bundle sealing and sync."""

# numpy loads numpy.ma and numpy.random on first use. Two threads using one first at the same moment can
# make numpy's lazy loader call itself until RecursionError (CPython's import publishes the submodule
# before it sets it on numpy: python/cpython#149728); the station's page workers hit it in np.median.
# Loading them here, before any worker starts, closes that window.
import numpy.ma  # noqa: F401
import numpy.random  # noqa: F401
