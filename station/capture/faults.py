"""Crash fakes beside the real sources: a scanner that faults on page N.

Selected like any source, ``fault:KIND@N:INNER`` (e.g. ``fault:jam@7:sane:test:0``). With a SANE
``test`` device the fault is produced by the backend itself (its read-return-value option), so
the real python-sane error path runs; with other sources the mapped error is raised directly.
"""

from typing import Iterator

from ..errors import CoverOpen, DeviceBusy, DoubleFeed, ScannerIOError, ScannerJammed, UsageError
from .base import RawPage

KINDS = {
    "jam": ("SANE_STATUS_JAMMED", ScannerJammed),
    "cover": ("SANE_STATUS_COVER_OPEN", CoverOpen),
    "io": ("SANE_STATUS_IO_ERROR", ScannerIOError),
    "busy": ("SANE_STATUS_DEVICE_BUSY", DeviceBusy),
    # A double feed is JAMMED with the double-feed sensor set, as real backends report it.
    "double": ("SANE_STATUS_JAMMED", DoubleFeed),
}
# The test device's settable stand-in for a double-feed sensor (hardware/profiles/sane-test.toml).
TEST_DOUBLE_FEED_SENSOR = "bool_soft_select_soft_detect_emulated"


class FaultSource:
    """Delivers the inner source's pages 1…N-1, then the fault on page N."""

    def __init__(self, kind: str, at_page: int, inner):
        if kind not in KINDS:
            raise UsageError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
        if at_page < 1:
            raise UsageError("fault page must be 1 or more")
        self.kind, self.at_page, self.inner = kind, at_page, inner
        self.name = f"fault:{kind}@{at_page}:{inner.name}"
        self.first_page = 1

    def resume_at(self, page: int) -> None:
        """The batch goes on at ``page``; resumed at or past the fault's page, the fault has struck (a cleared
        jam), and the rest feeds without it."""
        self.first_page = page
        if hasattr(self.inner, "resume_at"):
            self.inner.resume_at(page)

    @property
    def duplex(self) -> bool:
        return bool(getattr(self.inner, "duplex", False))

    def pages(self) -> Iterator[RawPage]:
        status, error = KINDS[self.kind]
        pages = self.inner.pages()
        if self.first_page >= self.at_page:
            yield from pages
            return
        for _ in range(self.at_page - self.first_page):
            page = next(pages, None)
            if page is None:
                return
            yield page
        dev = getattr(self.inner, "dev", None)
        if dev is not None and "read_return_value" in dev.opt:
            dev.read_return_value = status
            if self.kind == "double":
                if "enable_test_options" in dev.opt:
                    dev.enable_test_options = True
                setattr(dev, TEST_DOUBLE_FEED_SENSOR, True)
            yield from pages  # the backend now fails the next read, through the real path
            return
        raise error()

    def close(self) -> None:
        self.inner.close()  # a fault set on the test device ends with the driver process that holds it
