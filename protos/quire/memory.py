"""How a process asks glibc's allocator to treat the megabyte buffers sync and capture churn through.

Each upload chunk is a fresh protobuf message of about a megabyte. With glibc's defaults such blocks
are mapped and unmapped (or trimmed off the heap top) on every message, and every page of them is
faulted in and zeroed again: measured, a 1 MiB WriteRequest costs 1.1 ms to build and serialise
that way and 0.2 ms with the limits below (python -m bench.sync shows the effect on a whole sync).
A page image (8.7 MB grey, 26 MB colour at 300 dpi) is above the mapping limit, so its memory goes
back to the system as soon as the page is done, whichever worker thread's heap it came from.

The heap limit keeps freed blocks for reuse in each thread's own heap (glibc gives every thread an
arena), up to the trim limit each: a pipeline worker's analysis copies (2–6 MB at 150 dpi) stayed
there while it made the full-size output, about 30 MB a worker, 100 MB of a Pi's 400 with three
workers (bench.station sampled glibc's mallinfo2 at the peak). Code that knows it has just let go of
such a working set hands it back with ``release_free_heap`` — a release, not a setting.

The setting is process-wide: only a process's entry point (a CLI's ``main``, a bench's ``main``)
sets it, once at start, and no library code changes it afterwards.
"""

import ctypes

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 << 20    # blocks up to 4 MiB come from the heap; whole page images are still mapped
TRIM_THRESHOLD = 32 << 20   # up to 32 MiB of free heap is kept for the next chunks instead of returned


def tune_allocator() -> bool:
    """Set the two limits (process-wide, idempotent); False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded (no ldconfig lookup at start)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_free_heap() -> None:
    """Give the free memory every thread's heap holds back to the system (glibc's malloc_trim; no-op elsewhere).

    The next allocations fault their pages in again (a few milliseconds for tens of megabytes): for code that
    has just freed a large working set, not for a loop of small messages.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _malloc_trim():
    global _TRIM
    if _TRIM is False:
        try:
            _TRIM = ctypes.CDLL(None).malloc_trim
            _TRIM.argtypes, _TRIM.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _TRIM = None
    return _TRIM


_TRIM = False   # not looked up yet
