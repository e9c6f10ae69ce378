"""A test's server as a child process: started in a process group of its own with its output in a log
file, waited for until it serves, stopped (or killed -9 as a crash would) — what the PostgreSQL cluster
(tests/pgcluster.py) and the SeaweedFS store (tests/s3server.py) share."""

import os
import signal
import subprocess
import time
from pathlib import Path


class ServerExited(RuntimeError):
    """The server process ended before it served; ``log`` is the tail of its output."""

    def __init__(self, what: str, returncode: int, log: str):
        super().__init__(f"{what} exited {returncode} before it served; its log:\n{log}")
        self.returncode, self.log = returncode, log


class ChildServer:
    """One server process. A subclass gives ``command()`` and ``ready()`` (True once it serves), and may
    give ``popen_options()``; ``stop_signal`` ends it cleanly, sent to its process group or to it alone."""

    what = "server"
    stop_signal = signal.SIGTERM
    stop_group = True          # the whole process group (workers it forked), not only the leader
    stop_grace_s = 15.0

    def __init__(self, root: Path, log: Path):
        self.root, self.log = Path(root), Path(log)
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_options(self) -> dict:
        return {}

    def ready(self) -> bool:
        raise NotImplementedError

    def launch(self, timeout_s: float = 60):
        """Start the process and wait until ``ready()``; raise ServerExited if it ends first, RuntimeError
        (the process stopped) if it is not ready within ``timeout_s``."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                         start_new_session=True, **self.popen_options())
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                returncode, self.proc = self.proc.returncode, None
                raise ServerExited(self.what, returncode, self.tail())
            if self.ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.what} was not ready within {timeout_s:g} s; its log:\n{self.tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """kill -9 the whole process group: nothing flushed on the way out (a power cut, an OOM kill)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """A clean stop (``stop_signal``); killed -9 if it has not ended within ``stop_grace_s``."""
        if self.proc and self.proc.poll() is None:
            if self.stop_group:
                os.killpg(self.proc.pid, self.stop_signal)
            else:
                os.kill(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
