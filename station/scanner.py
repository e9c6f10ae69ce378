"""The daemon's one hold on the scanner: probed at start, kept open, polled for its Scan button while
idle and lent to each batch, so buttons, batches and the CLI never fight over the device lock.

The device itself lives in a scanner-driver child process (``station.capture.driver``): a driver
that hangs or dies costs the page in hand; the held source starts a fresh one on its next use.
"""

import logging
import time
from typing import Callable

from . import profiles
from .capture import open_source
from .errors import ScannerError, ScannerNotFound

log = logging.getLogger(__name__)
REPROBE_S = 5.0  # how often to look again for a scanner that is switched off or unplugged


class Scanner:
    """The configured capture source; for ``sane:…`` sources, the open device and its profile."""

    def __init__(self, config, profile_list: list, clock: Callable[[], float] = time.monotonic,
                 keepalive: Callable[[], object] | None = None):
        self.config = config
        self.keepalive = keepalive  # called while waiting on the driver (the daemon feeds its watchdog)
        self.spec = config.source
        self.is_device = self.spec.partition(":")[0] == "sane"
        self.profiles = profile_list
        self.clock = clock
        self.source = None          # the open SaneSource while the device is held
        self.device: tuple | None = None  # (name, vendor, model, type) from sane.get_devices()
        self.profile = None
        self.error: ScannerError | None = None  # why no device is held, in words for the technician
        self._button_down: bool | None = None
        self._probed_at: float | None = None
        self.button_reads = 0       # how often the Scan button was read: the poller is alive

    @property
    def held(self) -> bool:
        return self.source is not None

    @property
    def ready(self) -> bool:
        """Whether a batch can start: a held device, or a source that is not a device."""
        return self.held or not self.is_device

    def probe(self) -> None:
        """Find and open the configured SANE device (nothing to do for other sources)."""
        self._probed_at = self.clock()
        if not self.is_device or self.held:
            return
        from .capture.driver import Driver
        from .capture.sane_source import SaneSource

        wanted = self.spec.partition(":")[2]
        driver = Driver(keepalive=self.keepalive)   # lists the devices, then holds the one found
        try:
            driver.start()
            found = profiles.find_device(driver.call("devices", doing="listing scanners"), wanted, self.profiles)
            if found is None and wanted != "auto":
                # Some backends open devices they do not list (e.g. net:HOST:…); try it as named.
                found = ((wanted, "", "", ""), profiles.select("", "", self.profiles))
            if found is None:
                raise ScannerNotFound("SANE sees no scanner")
            device, profile = found
            self.source = SaneSource(device[0], self.config.dpi, self.config.sane_options, profile=profile,
                                     driver=driver, page_timeout_s=self.config.scanner_page_timeout_s)
        except ScannerError as exc:
            driver.close()
            self.error = exc
            return
        self.device, self.profile, self.error = device, profile, None
        self._button_down = None
        log.info("scanner %s (%s %s) held, profile %s", device[0], device[1], device[2], profile.name)

    def probe_if_due(self) -> None:
        """Look again for a missing scanner, at most every few seconds."""
        if self.is_device and not self.held and (self._probed_at is None
                                                 or self.clock() - self._probed_at >= REPROBE_S):
            self.probe()

    def scan_pressed(self) -> bool:
        """True once per press of the Scan button: its sensor going from up to down."""
        button = self.source.plan.scan_button if self.held and self.source.plan else None
        if button is None:
            return False
        self.button_reads += 1
        try:
            down = bool(self.source.sensor(button))
        except ScannerError as exc:
            self.lost(exc)
            return False
        # The first reading only sets the state: a button held at start (or a stand-in left set) is no press.
        pressed = down and self._button_down is False
        self._button_down = down
        return pressed

    def lend(self):
        """The source for one batch: the held device (closing it only cancels), or a fresh source."""
        if self.held:
            return _Lent(self.source)
        if self.is_device:
            self.probe()
            if not self.held:
                raise self.error
            return _Lent(self.source)
        return open_source(self.spec, self.config.dpi, self.config.sane_options, self.config.scanner_page_timeout_s)

    def lost(self, error: ScannerError) -> None:
        """Let go of a device that stopped answering; it is looked for again while idle."""
        log.warning("scanner lost: %s", error)
        self.close()
        self.error = error

    def info(self) -> dict:
        """What the daemon knows about its scanner, for status and doctor (asked from other threads)."""
        source, device, profile = self.source, self.device, self.profile   # one consistent look
        held = source is not None and device is not None and profile is not None
        plan = source.plan if held else None
        return {
            "source": self.spec,
            "device": device[0] if held else None,
            "vendor": device[1] if held else None,
            "model": device[2] if held else None,
            "profile": profile.name if held else None,
            "family": profile.family if held else None,
            "feed": plan.feed if plan else None,
            "scan_button": plan.scan_button if plan else None,
            "button_reads": self.button_reads,
            "problem": str(self.error) if self.error else None,
        }

    def describe(self) -> str:
        if not self.is_device:
            return f"source {self.spec}"
        if not self.held:
            return str(self.error) if self.error else "scanner not probed yet"
        return f"scanner {self.device[0]} ({self.profile.name})"

    def close(self) -> None:
        if self.source is not None:
            try:
                self.source.close()
            finally:
                self.source = None
                self.device = self.profile = None


class _Lent:
    """A held device lent to one batch: the batch's close() cancels the scan, the device stays open."""

    def __init__(self, source):
        self.source = source
        self.name = source.name
        self.duplex = source.duplex

    def pages(self):
        return self.source.pages()

    def close(self) -> None:
        self.source.cancel()  # a no-op when the driver died mid-batch: its next use starts a fresh one
