"""The scanner-driver process seen from the station: every libsane call runs there, under a deadline.

libsane stops a backend's reader thread (sanei_thread: the `test` backend, many USB backends) with
an asynchronous pthread_cancel; one that lands while the reader holds a glibc malloc lock leaves
every later allocation in that process blocked for ever. Backends can also crash or wedge on a USB
fault. All of that happens in a child process (``station.capture.sane_driver``) the station can
kill: a hang or a crash costs the page in hand, never the daemon, and this process never loads
libsane. A call that misses its deadline, or finds the child dead, kills and reaps it and raises
a ``ScannerDriverFailed``; the owner starts a fresh child on next use.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import errors
from ..errors import ScannerDriverCrashed, ScannerDriverHung, ScannerError
from . import _wire

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 15.0    # open a device, read or set an option, list devices
PAGE_TIMEOUT_S = 120.0   # one page, sane_start to last byte (a slow flatbed at 600 dpi colour); station.toml may change it
START_TIMEOUT_S = 30.0   # the child up and libsane initialised (sane_init enumerates USB)
CLOSE_TIMEOUT_S = 5.0    # the child closing its device and exiting once told to
REAP_TIMEOUT_S = 5.0     # a SIGKILLed child in uninterruptible USB I/O dies when the kernel lets it

# What the station's service manager gave this process only: the child must not talk to systemd.
_PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class Driver:
    """One scanner-driver child process and the pipe to it; calls are serialised, each with a deadline."""

    def __init__(self, call_timeout_s: float | None = None, keepalive: Callable[[], object] | None = None):
        self.call_timeout_s = CALL_TIMEOUT_S if call_timeout_s is None else call_timeout_s
        self.keepalive = keepalive  # called about every second while waiting (the daemon feeds its watchdog)
        self.starts = 0             # children started so far: more than one means restarts
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.RLock()

    @property
    def running(self) -> bool:
        """Whether a child is up (as far as the last call knows)."""
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def start(self) -> None:
        """Start a child, unless one runs, and wait until libsane is initialised in it.

        The child dies with the thread that starts it (PR_SET_PDEATHSIG): start it from a thread
        that lives as long as the source does (the daemon's main loop, a CLI's main thread).
        """
        with self._lock:
            if self._proc is not None:
                return
            ours, theirs = socket.socketpair()
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "station.capture.sane_driver", str(theirs.fileno()), str(os.getpid())],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    env=_child_env(), start_new_session=True)
            except OSError as exc:
                ours.close()
                raise ScannerDriverCrashed(f"could not start it: {exc}") from None
            finally:
                theirs.close()
            self._sock = ours
            self.starts += 1
            self._call(("hello",), START_TIMEOUT_S, "starting")
            log.debug("scanner driver started, pid %d", self._proc.pid)

    def call(self, op: str, *args, timeout_s: float | None = None, doing: str | None = None):
        """Run one operation in the child and return its answer; a page comes back as an array.

        Raises what the child raised: AttributeError for an option the device lacks, the mapped
        ScannerError for a SANE status, ScannerDriverHung/-Crashed when the child missed the
        deadline or died (it is killed and reaped by then).
        """
        with self._lock:
            if self._proc is None:
                raise ScannerDriverCrashed(f"it is not running (while {doing or op})")
            return self._call((op, *args), self.call_timeout_s if timeout_s is None else timeout_s, doing or op)

    def _call(self, message: tuple, timeout_s: float, doing: str):
        deadline = time.monotonic() + timeout_s
        try:
            _wire.send(self._sock, message)
            reply, size = _wire.recv_message(self._sock, deadline, self.keepalive)
            array = None
            if size:
                array = np.empty(reply[1]["shape"], np.dtype(reply[1]["dtype"]))
                _wire.recv_into(self._sock, array, deadline, self.keepalive)
        except _wire.TimedOut:
            self.kill()
            raise ScannerDriverHung(f"no answer within {timeout_s:g} s while {doing}") from None
        except (_wire.Closed, OSError):
            status = self.kill()
            raise ScannerDriverCrashed(f"it {_exit_text(status)} while {doing}") from None
        return _answer(reply, array)

    def kill(self) -> int | None:
        """SIGKILL the child and reap it; its exit status (None if it would not die in time)."""
        with self._lock:
            proc, sock = self._proc, self._sock
            self._proc = self._sock = None
        if sock is not None:
            sock.close()
        if proc is None:
            return None
        try:
            proc.kill()             # works on a stopped (SIGSTOP) child too
        except ProcessLookupError:
            pass
        return _reap(proc)

    def close(self) -> None:
        """Let the child close its device and exit; kill it if it does not within a few seconds."""
        with self._lock:
            proc, sock = self._proc, self._sock
            if proc is None:
                return
            sock.close()            # end of file: the child closes the device and exits
            self._sock = None
            try:
                proc.wait(CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("scanner driver (pid %d) did not exit when closed; killing it", proc.pid)
                self.kill()
            self._proc = None


def _answer(reply: tuple, array):
    kind = reply[0]
    if kind == "ok":
        return array if array is not None else reply[1]
    if kind == "attribute":
        raise AttributeError(reply[1])
    if kind == "scanner":
        cls = getattr(errors, reply[1], None)
        if not (isinstance(cls, type) and issubclass(cls, ScannerError)):
            cls = ScannerError
        raise cls(reply[2])
    raise ScannerError(f"scanner driver error: {reply[1]}: {reply[2]}")


def _reap(proc: subprocess.Popen) -> int | None:
    try:
        return proc.wait(REAP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # Stuck in the kernel (a wedged USB transfer): it dies when that returns; reap it then.
        log.warning("scanner driver (pid %d) killed but not yet dead; reaping it in the background", proc.pid)
        threading.Thread(target=proc.wait, name="quire-driver-reaper", daemon=True).start()
        return None


def _exit_text(status: int | None) -> str:
    if status is None:
        return "stopped answering"
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def _child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
    # The child runs `-m station.capture.sane_driver`: let it find this very station package.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env
