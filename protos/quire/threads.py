"""How many threads OpenCV may start inside each of the station's pipeline workers.

The station already runs pages in parallel on its own worker threads (station.scan: cores − 1), so
OpenCV's parallel_for inside each worker — one thread per core by default, 4 on a Pi — only stacks more
runnable threads on the same cores. Measured on 2026-12-03 with python -m bench.station --budget pi5-sd
--budget pi4-sd --sheets 40 (80 colour images at 300 dpi, 3 workers, A/B runs alternated on a shared,
loaded 2-core machine; OpenCV's default here is 2 threads), medians of 6 runs each, one thread
against the default: Pi 4 budget 113 -> 168 images/min (paired median x1.26) and 0.225 -> 0.195 CPU s
an image; Pi 5 budget 141 -> 154 images/min (paired x1.02) and 0.200 -> 0.195 CPU s an image.
A single page on one worker is not slower either (station.pipeline.process_page on bench.pages' 20
labelled pages, 1 and 2 threads alternated page by page, two runs): wall x0.90 and x0.81, CPU x0.93
and x0.91.

Like the allocator limits (quire.memory), the setting is process-wide: only the station's entry point
sets it, once at start, and no library code changes it afterwards.
"""

OPENCV_THREADS = 1


def limit_opencv_threads(count: int = OPENCV_THREADS) -> int:
    """Let OpenCV use ``count`` threads per call (process-wide); the count OpenCV then reports."""
    import cv2  # loaded by the station's pipeline already; central never calls this

    cv2.setNumThreads(count)
    return cv2.getNumThreads()


def opencv_threads() -> int:
    """The threads OpenCV may use per call in this process (what a running station reports in its status)."""
    import cv2

    return cv2.getNumThreads()
