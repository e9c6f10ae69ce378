"""The scanner-driver process: owns libsane and one SANE device, and answers the station over a socket.

Started by ``station.capture.driver`` as ``python -m station.capture.sane_driver FD PARENT_PID``.
Each request is ``(op, *args)``; each answer ``("ok", value)`` (a page's pixels follow as the
payload), ``("attribute", text)`` for an option the device lacks, ``("scanner", ErrorClass,
detail)`` for a SANE status mapped to the operator's words, or ``("error", type, text)``. It
exits when the station closes the pipe, and dies with it (PR_SET_PDEATHSIG).
"""

import ctypes
import os
import select
import signal
import socket
import sys
import time

import numpy as np

from ..errors import (CoverOpen, DeviceBusy, FeederEmpty, ScannerError, ScannerIOError, ScannerJammed,
                      ScannerNotFound)
from . import _wire

# python-sane raises _sane.error carrying sane_strstatus() text; these are SANE's own strings.
_STATUS_TEXT = {
    "Document feeder jammed": ScannerJammed,
    "Scanner cover is open": CoverOpen,
    "Document feeder out of documents": FeederEmpty,
    "Device busy": DeviceBusy,
    "Error during device I/O": ScannerIOError,
    "Access to resource has been denied": DeviceBusy,
}
# How long a started scan may take to deliver its first data before it is read regardless.
_FIRST_DATA_WAIT_S = 30.0
# How long a failed scan's reader thread may take to end by itself before sane_cancel stops it.
_READER_END_WAIT_S = 5.0
_PR_SET_PDEATHSIG = 1


def map_error(exc: BaseException) -> ScannerError:
    """Turn a python-sane error into the operator-facing scanner error it stands for."""
    text = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    cls = _STATUS_TEXT.get(text, ScannerError)
    return cls(text if cls is ScannerError else "")


class _Device:
    """The requests the station makes, on one python-sane device."""

    def __init__(self, sane):
        self.sane = sane
        self.dev = None

    def handle(self, message: tuple) -> tuple[tuple, np.ndarray | None]:
        op, *args = message
        method = getattr(self, f"op_{op}", None)
        if method is None:
            return ("error", "UnknownRequest", repr(op)), None
        try:
            value = method(*args)
        except AttributeError as exc:
            return ("attribute", str(exc)), None
        except ScannerError as exc:
            return ("scanner", type(exc).__name__, exc.detail), None
        except (self.sane._sane.error, RuntimeError) as exc:
            err = map_error(exc)
            return ("scanner", type(err).__name__, err.detail), None
        except Exception as exc:  # noqa: BLE001 - told to the station, which reports it as a scanner error
            return ("error", type(exc).__name__, str(exc)), None
        if isinstance(value, np.ndarray):
            return ("ok", {"shape": value.shape, "dtype": value.dtype.str}), value
        return ("ok", value), None

    def op_hello(self) -> int:
        return os.getpid()

    def op_devices(self) -> list[tuple]:
        return [tuple(d) for d in self.sane.get_devices()]

    def op_open(self, device: str) -> None:
        if self.dev is not None:
            self.dev.close()
            self.dev = None
        try:
            self.dev = self.sane.open(device)
        except RuntimeError:
            raise ScannerNotFound(f"SANE has no device {device!r}") from None
        except self.sane._sane.error as exc:
            err = map_error(exc)
            if type(err) is ScannerError:  # e.g. "Invalid argument" for a name SANE does not know
                err = ScannerNotFound(f"SANE cannot open {device!r}: {exc}")
            raise err from None

    def op_options(self) -> dict:
        """Every option as plain values: name, type, unit, constraint, whether active and settable."""
        return {key: {"name": o.name, "py_name": o.py_name, "type": o.type, "unit": o.unit,
                      "constraint": o.constraint, "active": bool(o.is_active()), "settable": bool(o.is_settable())}
                for key, o in self._open().opt.items()}

    def op_get(self, name: str):
        return getattr(self._open(), name)

    def op_set(self, name: str, value) -> None:
        setattr(self._open(), name, value)

    def op_page(self) -> np.ndarray | None:
        """One page: start, wait for data, read it all; None when the feeder is empty (the batch's end)."""
        dev = self._open()
        threads = _threads()
        try:
            dev.start()
        except self.sane._sane.error as exc:
            err = map_error(exc)
            if isinstance(err, FeederEmpty):
                return None
            raise err from None
        self._await_data()
        try:
            # python-sane's arr_snap without its sane_cancel on a failed read: the reader must end first.
            data, width, height, samples, sample_size = dev.dev.snap(True, True, None)
        except (self.sane._sane.error, RuntimeError):
            self._let_reader_end(threads)
            self.op_cancel()
            raise
        finally:
            _ignore_sigpipe()
        self.op_cancel()
        if not data:
            raise ScannerError("the scanner returned no image data")
        image = np.frombuffer(data, np.uint16 if sample_size == 2 else np.uint8).reshape(height, width, samples)
        if samples == 1:
            image = image.reshape(image.shape[:2])
        return np.ascontiguousarray(image)

    def op_cancel(self) -> None:
        if self.dev is not None:
            try:
                self.dev.cancel()
            except Exception:  # noqa: BLE001 - cancelling a device that already failed may fail again
                pass

    def close(self) -> None:
        if self.dev is not None:
            self.op_cancel()
            self.dev.close()
            self.dev = None

    def _open(self):
        if self.dev is None:
            raise ScannerError("no scanner device is open in the driver")
        return self.dev

    def _await_data(self) -> None:
        """Wait until a started scan has data to read, when the backend offers a select fd to tell.

        SANE's pthread reader (sanei_thread, used by the test backend and many USB backends) is
        stopped by sane_cancel with pthread_cancel under PTHREAD_CANCEL_ASYNCHRONOUS. A reader
        cancelled while still in malloc dies holding a glibc arena lock, and every thread that
        later needs it, the next reader included, blocks forever: capture hangs in sane_read or
        sane_cancel. So the read does not begin before the reader is past its allocations, writing
        data, and a failed read lets the reader end before cancelling (``_let_reader_end``).
        (Should it hang all the same, the station kills this process when the page's deadline passes.)
        """
        fd = self._select_fd()
        if fd is None:
            return                  # no select fd: the backend gives no way to tell
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        poller.poll(int(_FIRST_DATA_WAIT_S * 1000))

    def _let_reader_end(self, threads_before: set[str]) -> None:
        """After a failed read, let the scan's reader thread end by itself (its data drained) before sane_cancel.

        sane_cancel closes the reader's pipe and then pthread_cancels it asynchronously. A reader
        that the closed pipe has woken is by then on its way out, freeing memory, and with glibc
        2.41 (Debian 13) the cancel can unwind it from inside free(): it then blocks for ever on
        its own malloc arena lock as it exits, and sane_cancel waits for it in pthread_join.
        A reader left to finish writing its page and exit needs no cancel (pthread_cancel of an
        exited thread sends nothing). One that does not end in time is cancelled as before.
        """
        fd = self._select_fd()
        deadline = time.monotonic() + _READER_END_WAIT_S
        while _threads() - threads_before and time.monotonic() < deadline:
            if fd is None or not select.select([fd], [], [], 0.01)[0]:
                time.sleep(0.001 if fd is not None else 0.01)
                continue
            try:
                if not os.read(fd, 1 << 16):
                    fd = None       # the backend's end of the pipe is closed: nothing more to drain
            except BlockingIOError:
                pass
            except OSError:
                fd = None

    def _select_fd(self) -> int | None:
        try:
            return self.dev.fileno()
        except (self.sane._sane.error, AttributeError):
            return None


def _threads() -> set[str]:
    """This process's threads (Linux task ids): a backend's reader is one more while it runs."""
    return set(os.listdir("/proc/self/task"))


def _ignore_sigpipe() -> None:
    """Put back Python's SIGPIPE disposition (ignore), which libsane's reader thread resets to the
    default (terminate): a station gone mid-answer is then an error here, and this process exits cleanly."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal(signal.SIGPIPE, 1)  # SIG_IGN


def _die_with_parent(parent: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:      # it died before the line above took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    fd, parent = int(argv[1]), int(argv[2])
    _die_with_parent(parent)
    # The station owns this process's life: Ctrl-C at a CLI or the service's SIGTERM are its to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    import sane  # only here, in the driver process, is libsane ever loaded

    sane.init()
    device = _Device(sane)
    try:
        while True:
            try:
                message, _ = _wire.recv_message(sock)
            except _wire.Closed:
                break
            reply, payload = device.handle(message)
            try:
                _wire.send(sock, reply, payload)
            except OSError:
                break
            payload = None          # hold no page between requests
    finally:
        device.close()
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    os._exit(code)  # skip interpreter teardown: libsane's threads and atexit handlers have nothing to add
