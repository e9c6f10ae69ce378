"""The systemd notification protocol (sd_notify), reimplemented: datagrams to $NOTIFY_SOCKET.

The protocol is small and documented in sd_notify(3): newline-separated ``KEY=VALUE`` assignments
sent as one datagram to the AF_UNIX socket named by ``NOTIFY_SOCKET`` (a leading ``@`` means the
abstract namespace). Without ``NOTIFY_SOCKET`` (not started by systemd) every call does nothing.
"""

import logging
import os
import socket
import time
from typing import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends state changes to the service manager; silent when there is none."""

    def __init__(self, address: str | None):
        self.address = address or None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Notifier":
        """The notifier systemd asked for through ``NOTIFY_SOCKET``, if any."""
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines (e.g. ``READY="1"``); True when delivered."""
        if self.address is None:
            return False
        # A newline inside a value would start a new assignment: STATUS lines are single lines.
        text = "\n".join(f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items())
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            # A socket per datagram: nothing stays open between notifications (they are seconds apart),
            # and the last one — why the service stopped — can be sent after everything else closed.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(text.encode(), socket.MSG_NOSIGNAL, target)
            return True
        except OSError as exc:
            if not self._warned:  # the manager went away or the socket is wrong: say so once
                log.warning("cannot notify the service manager at %s: %s", self.address, exc)
                self._warned = True
            return False

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING="1", STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")


def watchdog_interval_s(env: Mapping[str, str] = os.environ, pid: int | None = None) -> float | None:
    """The watchdog timeout systemd set (``WATCHDOG_USEC``) for this process, or None when off."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(pid if pid is not None else os.getpid()):
        return None  # meant for another process (e.g. a parent that exec'd us without clearing it)
    return int(usec) / 1e6


class Watchdog:
    """Pings the service manager's watchdog at half its timeout, as sd_watchdog_enabled(3) advises."""

    def __init__(self, notifier: Notifier, timeout_s: float | None,
                 clock: Callable[[], float] = time.monotonic):
        self.notifier = notifier
        self.period_s = timeout_s / 2 if timeout_s else None
        self.clock = clock
        self._last: float | None = None
        self.pings = 0

    def ping_if_due(self) -> bool:
        """Send ``WATCHDOG=1`` when half the timeout has passed since the last ping."""
        if self.period_s is None:
            return False
        now = self.clock()
        if self._last is not None and now - self._last < self.period_s:
            return False
        self._last = now
        self.pings += 1
        self.notifier.watchdog()
        return True
