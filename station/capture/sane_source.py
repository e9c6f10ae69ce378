"""Capture from a SANE device (ADF, duplex, flatbed), through the scanner-driver process.

libsane runs only in that child (``station.capture.sane_driver``; see ``station.capture.driver``
for why); this module never imports ``sane``. A source restarts its driver on the next use after
a hang or a crash, and opens and configures the device again the same way.
"""

import logging
import threading
from dataclasses import dataclass
from typing import Iterator

from ..errors import (DoubleFeed, ScannerDriverCrashed, ScannerDriverFailed, ScannerDriverHung, ScannerError,
                      ScannerJammed, ScannerNotFound)
from . import driver as _driver
from .base import RawPage
from .driver import Driver

log = logging.getLogger(__name__)

# Preferred feeder sources across backends, best first (duplex captures both sides).
_ADF_SOURCES = ("ADF Duplex", "Duplex", "Automatic Document Feeder", "ADF", "ADF Front", "ADF Back")
_COLOUR_MODES = ("Color", "color", "24bit Color", "Color24")
_UNIT_MM = 3  # SANE_UNIT_MM


def devices() -> list[tuple]:
    """The devices SANE sees, as ``(name, vendor, model, type)``, asked of a short-lived driver."""
    drv = Driver()
    try:
        drv.start()
        return drv.call("devices", doing="listing scanners")
    finally:
        drv.close()


def _auto_device(drv: Driver) -> tuple:
    """The first attached scanner a family profile claims (else the first at all), with its profile."""
    from ..profiles import find_device, load

    found = find_device(drv.call("devices", doing="listing scanners"), "auto", load())
    if found is None:
        raise ScannerNotFound("SANE sees no scanner")
    return found[0][0], found[1]


@dataclass(frozen=True)
class Option:
    """One SANE option as the driver described it (python-sane's Option, without its device)."""

    name: str
    py_name: str
    type: int
    unit: int
    constraint: object
    active: bool
    settable: bool

    def is_active(self) -> bool:
        return self.active

    def is_settable(self) -> bool:
        return self.settable


class Device:
    """The device the driver holds, read and set like python-sane's SaneDev (``dev.mode = "Color"``)."""

    def __init__(self, source: "SaneSource"):
        object.__setattr__(self, "_source", source)

    @property
    def opt(self) -> dict[str, Option]:
        """The device's options now (setting one can make the backend reload them)."""
        described = self._source._call("options", doing="reading the scanner's options")
        return {key: Option(**value) for key, value in described.items()}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._source._call("get", name, doing=f"reading the scanner option {name}")

    def __setattr__(self, name: str, value) -> None:
        self._source._call("set", name, value, doing=f"setting the scanner option {name}")

    def cancel(self) -> None:
        self._source.cancel()


class SaneSource:
    """Pages from one SANE device until its feeder is empty (one page for a flatbed)."""

    def __init__(self, device: str, dpi: int = 300, options: dict | None = None, profile=None, *,
                 driver: Driver | None = None, page_timeout_s: float | None = None):
        self.driver = driver if driver is not None else Driver()
        self.page_timeout_s = _driver.PAGE_TIMEOUT_S if page_timeout_s is None else page_timeout_s
        self.profile, self.plan = profile, None  # a station.profiles.Profile chooses the options
        self.dpi = dpi
        self.options = dict(options or {})
        self.dev = Device(self)
        self._lock = threading.RLock()  # the daemon polls buttons and scans on one thread; tests poke from another
        self._restarting = False
        try:
            self.driver.start()
            if device == "auto":
                device, self.profile = _auto_device(self.driver)
            self.device = device
            self.name = f"sane:{device}"
            self._open()
        except BaseException:
            self.driver.close()
            raise

    @property
    def running(self) -> bool:
        """Whether the driver process is up (after a hang or crash it is not, until the next use)."""
        return self.driver.running

    def _open(self) -> None:
        self.driver.call("open", self.device, doing=f"opening {self.device}")
        self._configure(self.options)

    def _call(self, op: str, *args, timeout_s: float | None = None, doing: str | None = None):
        """One call into the driver, starting a fresh one (device opened and configured) if the last died."""
        with self._lock:
            if not self.driver.running:
                if self._restarting:
                    raise ScannerDriverCrashed(f"it stopped again while it was being restarted ({doing or op})")
                self._restart()
            return self.driver.call(op, *args, timeout_s=timeout_s, doing=doing)

    def _restart(self) -> None:
        self._restarting = True
        try:
            self.driver.start()
            self._open()
        except BaseException:
            self.driver.close()
            raise
        finally:
            self._restarting = False
        log.warning("scanner driver restarted (pid %s); %s opened again", self.driver.pid, self.device)

    def _configure(self, options: dict) -> None:
        opts = self.dev.opt
        if self.profile is not None:
            self._apply_profile(options)
            opts = self.dev.opt  # choosing a source can make the backend reload its options
        if self.profile is None and "source" in opts and "source" not in options:
            offered = opts["source"].constraint or []
            feeder = next((s for s in _ADF_SOURCES if s in offered), None)
            if feeder:
                self.dev.source = feeder
        if self.profile is None and "mode" in opts and "mode" not in options:
            mode = next((m for m in _COLOUR_MODES if m in (opts["mode"].constraint or [])), None)
            if mode:
                self.dev.mode = mode
        if "resolution" in opts:
            self.dev.resolution = self.dpi
        # Scan the largest area the device offers; the pipeline crops to the paper.
        for corner in ("br_x", "br_y"):
            if corner in opts and isinstance(opts[corner].constraint, tuple):
                setattr(self.dev, corner, opts[corner].constraint[1])
        if "select_fd" in opts and "select_fd" not in {k.replace("-", "_") for k in options}:
            # The test backend offers a select fd only when asked; the driver waits on it before reading.
            self.dev.select_fd = True
        for name, value in options.items():
            try:
                setattr(self.dev, name.replace("-", "_"), value)
            except AttributeError as exc:
                raise ScannerError(f"cannot set scanner option {name}={value!r}: {exc}") from None

    def _apply_profile(self, user: dict) -> None:
        """Set the profile's setup options, then the feed, mode and features it picks from what the device offers."""
        from ..profiles import plan

        for name, value in self.profile.setup.items():
            if name.replace("-", "_") in self.dev.opt:   # asked each time: one setting can reveal others
                self._set(name, value)
        active = [o for o in self.dev.opt.values() if o.name and o.is_active()]
        offered = {o.name: (list(o.constraint) if isinstance(o.constraint, list) else None)
                   for o in active if o.is_settable()}
        self.plan = plan(self.profile, offered, frozenset(o.name for o in active))
        chosen = {k.replace("_", "-") for k in user}
        for name, value in self.plan.options.items():
            if name not in chosen:
                self._set(name, value)

    def _set(self, name: str, value) -> None:
        try:
            setattr(self.dev, name.replace("-", "_"), value)
        except ScannerDriverFailed:
            raise
        except (AttributeError, ScannerError) as exc:
            where = f" (profile {self.profile.path})" if self.profile is not None else ""
            raise ScannerError(f"cannot set scanner option {name}={value!r}: {exc}{where}") from None

    def sensor(self, name: str):
        """The current value of a sensor option (a button, paper loaded …); None when the device has none."""
        try:
            return self._call("get", name.replace("-", "_"), doing=f"reading the sensor {name}")
        except AttributeError:
            return None

    @property
    def duplex(self) -> bool:
        """Whether each sheet yields two pages (front, then back)."""
        if self.plan is not None:
            return self.plan.feed == "duplex"
        try:
            return "duplex" in str(self.dev.source).lower()
        except AttributeError:
            return False

    @property
    def feeder(self) -> bool:
        try:
            return "flatbed" not in str(self.dev.source).lower()
        except AttributeError:
            return False

    def pages(self) -> Iterator[RawPage]:
        area = self._area_mm()  # read while the device is idle; the geometry holds for the whole batch
        feeder = self.feeder
        while True:
            try:
                image = self._call("page", timeout_s=self.page_timeout_s, doing="scanning a page")
            except ScannerDriverHung as exc:
                raise ScannerDriverHung(f"{exc.detail}; if this scanner is just that slow, raise "
                                        "scanner_page_timeout_s in station.toml") from None
            except ScannerJammed as exc:
                # SANE has no status of its own for a double feed: the fujitsu, canon_dr and kvs backends
                # report it as JAMMED; the family's double-feed sensor says which it was.
                fed_two = self._double_fed()
                if fed_two:
                    raise DoubleFeed(exc.detail) from None
                if fed_two is None and self.plan is not None and "double_feed" in self.plan.features:
                    raise ScannerJammed("; ".join(filter(None, (exc.detail, (
                        "this scanner stops the same way on a double feed: if two sheets came out together, "
                        "separate them and feed both again"))))) from None
                raise
            if image is None:
                return              # the feeder is empty: the normal end of an ADF batch
            yield RawPage(image, self.dpi, origin=self.name, area_mm=area)
            image = None            # the caller has spooled it: hold nothing while the next one comes
            if not feeder:
                return

    def _double_fed(self) -> bool | None:
        """Whether the device's double-feed sensor (its profile's, else any family's) is set now; None
        when the device has no such sensor (a double feed then looks like any jam)."""
        from ..profiles import load

        if self.profile is not None:
            names = list(self.profile.sensors.get("double_feed", ()))
        else:
            names = list(dict.fromkeys(n for p in load() for n in p.sensors.get("double_feed", ())))
        try:
            offered = self.dev.opt
        except ScannerError:
            return None
        for name in names:
            if name.replace("-", "_") in offered:
                try:
                    return bool(self.sensor(name))
                except ScannerError:
                    return None
        return None

    def _area_mm(self) -> tuple[float, float] | None:
        """The scan area's width and height in mm from the device's geometry options, when it has them."""
        try:
            opts = self.dev.opt
            if any(opts[k].unit != _UNIT_MM for k in ("tl_x", "tl_y", "br_x", "br_y")):
                return None
            return (float(self.dev.br_x) - float(self.dev.tl_x), float(self.dev.br_y) - float(self.dev.tl_y))
        except ScannerDriverFailed:
            raise
        except (KeyError, AttributeError, TypeError, ScannerError):
            return None     # a backend without geometry: the archive cannot check effective resolution

    def cancel(self) -> None:
        """Stop a scan in progress, if the driver is up (a dead one has nothing to cancel)."""
        with self._lock:
            if not self.driver.running:
                return
            try:
                self.driver.call("cancel", doing="cancelling a scan")
            except ScannerError:  # cancelling after a fault may fail again; the next use starts afresh
                pass

    def close(self) -> None:
        """Close the device and let the driver process exit."""
        with self._lock:
            self.driver.close()
