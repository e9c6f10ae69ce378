"""How a process asks glibc's allocator to treat the megabyte buffers sync and capture churn through.

Each upload chunk is a fresh protobuf message of about a megabyte. With glibc's defaults such blocks
are mapped and unmapped (or trimmed off the heap top) on every message, and every page of them is
faulted in and zeroed again: measured, a 1 MiB WriteRequest costs 1.1 ms to build and serialise
that way and 0.2 ms with the limits below (python -m bench.sync shows the effect on a whole sync).
A page image (8.7 MB grey, 26 MB colour at 300 dpi) is above the mapping limit, so its memory goes
back to the system as soon as the page is done, whichever worker thread's heap it came from.

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
