"""Capture from a SANE device through python-sane (ADF, duplex, flatbed)."""

import select
import threading
from typing import Iterator

import numpy as np

from ..errors import (CoverOpen, DeviceBusy, FeederEmpty, ScannerError, ScannerIOError,
                      ScannerJammed, ScannerNotFound)
from .base import RawPage

# python-sane raises _sane.error carrying sane_strstatus() text; these are SANE's own strings.
_STATUS_TEXT = {
    "Document feeder jammed": ScannerJammed,
    "Scanner cover is open": CoverOpen,
    "Document feeder out of documents": FeederEmpty,
    "Device busy": DeviceBusy,
    "Error during device I/O": ScannerIOError,
    "Access to resource has been denied": DeviceBusy,
}
# Preferred feeder sources across backends, best first (duplex captures both sides).
_ADF_SOURCES = ("ADF Duplex", "Duplex", "Automatic Document Feeder", "ADF", "ADF Front", "ADF Back")
_COLOUR_MODES = ("Color", "color", "24bit Color", "Color24")
_UNIT_MM = 3  # SANE_UNIT_MM
# How long a started scan may take to deliver its first data before it is read regardless.
_FIRST_DATA_WAIT_S = 30.0

_init_lock = threading.Lock()
_initialised = False


def _sane():
    global _initialised
    import sane  # imported lazily: only stations with a SANE scanner need libsane loaded

    with _init_lock:
        if not _initialised:
            sane.init()
            _initialised = True
    return sane


def devices() -> list[tuple]:
    """The devices SANE sees, as ``(name, vendor, model, type)``."""
    return _sane().get_devices()


def _auto_device(sane) -> tuple:
    """The first attached scanner a family profile claims (else the first at all), with its profile."""
    from ..profiles import find_device, load

    found = find_device(sane.get_devices(), "auto", load())
    if found is None:
        raise ScannerNotFound("SANE sees no scanner")
    return found[0][0], found[1]


def map_error(exc: BaseException) -> ScannerError:
    """Turn a python-sane error into the operator-facing scanner error it stands for."""
    text = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    cls = _STATUS_TEXT.get(text, ScannerError)
    return cls(text if cls is ScannerError else "")


class SaneSource:
    """Pages from one SANE device until its feeder is empty (one page for a flatbed)."""

    def __init__(self, device: str, dpi: int = 300, options: dict | None = None, profile=None):
        sane = _sane()
        self.profile, self.plan = profile, None  # a station.profiles.Profile chooses the options
        if device == "auto":
            device, self.profile = _auto_device(sane)
        self.name = f"sane:{device}"
        self.dpi = dpi
        try:
            self.dev = sane.open(device)
        except RuntimeError:
            raise ScannerNotFound(f"SANE has no device {device!r}") from None
        except sane._sane.error as exc:
            err = map_error(exc)
            if type(err) is ScannerError:  # e.g. "Invalid argument" for a name SANE does not know
                err = ScannerNotFound(f"SANE cannot open {device!r}: {exc}")
            raise err from None
        try:
            self._configure(options or {})
        except Exception:
            self.dev.close()
            raise

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
        self._restore = {}
        if "select_fd" in opts and "select_fd" not in {k.replace("-", "_") for k in options}:
            # The test backend offers a select fd only when asked; pages() waits on it (see _await_data).
            self._restore["select_fd"] = self.dev.select_fd
            self.dev.select_fd = True
        for name, value in options.items():
            attr = name.replace("-", "_")
            try:
                self._restore[attr] = getattr(self.dev, attr)
                setattr(self.dev, attr, value)
            except AttributeError as exc:
                raise ScannerError(f"cannot set scanner option {name}={value!r}: {exc}") from None

    def _apply_profile(self, user: dict) -> None:
        """Set the profile's setup options, then the feed, mode and features it picks from what the device offers."""
        from ..profiles import plan

        for name, value in self.profile.setup.items():
            if name.replace("-", "_") in self.dev.opt:
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
        except (AttributeError, _sane()._sane.error) as exc:
            where = f" (profile {self.profile.path})" if self.profile is not None else ""
            raise ScannerError(f"cannot set scanner option {name}={value!r}: {exc}{where}") from None

    def sensor(self, name: str):
        """The current value of a sensor option (a button, paper loaded …); None when the device has none."""
        try:
            return getattr(self.dev, name.replace("-", "_"))
        except AttributeError:
            return None
        except _sane()._sane.error as exc:
            raise map_error(exc) from None

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
        sane = _sane()
        area = self._area_mm()  # read while the device is idle; the geometry holds for the whole batch
        while True:
            try:
                self.dev.start()
            except sane._sane.error as exc:
                err = map_error(exc)
                if isinstance(err, FeederEmpty):
                    return  # the normal end of an ADF batch
                raise err from None
            self._await_data()
            try:
                image = self.dev.arr_snap()
            except (sane._sane.error, RuntimeError) as exc:
                self._cancel()
                raise map_error(exc) from None
            _ignore_sigpipe()
            if image.ndim == 3 and image.shape[2] == 1:
                image = image[:, :, 0]
            yield RawPage(np.ascontiguousarray(image), self.dpi, origin=self.name, area_mm=area)
            if not self.feeder:
                return

    def _area_mm(self) -> tuple[float, float] | None:
        """The scan area's width and height in mm from the device's geometry options, when it has them."""
        try:
            opts = self.dev.opt
            if any(opts[k].unit != _UNIT_MM for k in ("tl_x", "tl_y", "br_x", "br_y")):
                return None
            return (float(self.dev.br_x) - float(self.dev.tl_x), float(self.dev.br_y) - float(self.dev.tl_y))
        except (KeyError, AttributeError, TypeError, _sane()._sane.error):
            return None     # a backend without geometry: the archive cannot check effective resolution

    def _await_data(self) -> None:
        """Wait until a started scan has data to read, when the backend offers a select fd to tell.

        SANE's pthread reader (sanei_thread, used by the test backend and many USB backends) is
        stopped by sane_cancel with pthread_cancel under PTHREAD_CANCEL_ASYNCHRONOUS. A reader
        cancelled while still in malloc dies holding a glibc arena lock, and every thread that
        later needs it, the next reader included, blocks forever: capture hangs in sane_read or
        sane_cancel. python-sane cancels at once when the first read fails (a jam, an open cover),
        so the read must not begin before the reader is past its allocations, writing data.
        """
        try:
            fd = self.dev.fileno()
        except (_sane()._sane.error, AttributeError):
            return                  # no select fd: the backend gives no way to tell
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        poller.poll(int(_FIRST_DATA_WAIT_S * 1000))

    def _cancel(self) -> None:
        try:
            self.dev.cancel()
        except Exception:  # cancelling a device that already failed may fail again; nothing to do
            pass

    def close(self) -> None:
        self._cancel()
        # Leave the device as we found it: some backends keep option values across opens.
        for attr, value in self._restore.items():
            try:
                setattr(self.dev, attr, value)
            except AttributeError:
                pass
        self.dev.close()


def _ignore_sigpipe() -> None:
    """Put back Python's SIGPIPE disposition (ignore), which libsane's reader thread resets to the
    default (terminate): otherwise a write to a closed pipe anywhere in the process kills it (exit 141)."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal(signal.SIGPIPE, 1)  # SIG_IGN
