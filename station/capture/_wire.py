"""The scanner-driver pipe's framing: a length-prefixed pickled message, then an optional raw payload.

A payload is a page's pixels, sent as they lie in memory and received straight into the array that
will hold them, so neither side keeps a second copy. Both ends are the station's own code (one
process started the other), so the messages are plain tuples of built-in values, pickled.
"""

import pickle
import socket
import struct
import time
from typing import Callable

_HEAD = struct.Struct("!IQ")    # message bytes, payload bytes
_MAX_MESSAGE = 16 << 20         # an option list is a few kB: anything near this is a broken pipe
_TICK_S = 1.0                   # how often a waiting reader calls its tick (the daemon's watchdog)


class Closed(Exception):
    """The other end is gone: it exited, was killed, or closed the pipe."""


class TimedOut(Exception):
    """Nothing complete arrived before the deadline."""


def send(sock: socket.socket, message, payload=None) -> None:
    """Send one message and, after it, the payload's bytes (any C-contiguous buffer)."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(payload).cast("B") if payload is not None else None
    sock.sendall(_HEAD.pack(len(body), view.nbytes if view is not None else 0) + body)
    if view is not None and view.nbytes:
        sock.sendall(view)


def recv_message(sock: socket.socket, deadline: float | None = None,
                 tick: Callable[[], object] | None = None) -> tuple[object, int]:
    """The next message and the size of the payload that follows it (0 when none)."""
    head = bytearray(_HEAD.size)
    _read_exact(sock, memoryview(head), deadline, tick)
    size, payload = _HEAD.unpack(head)
    if size > _MAX_MESSAGE:
        raise Closed(f"message of {size} bytes: the pipe is out of step")
    body = bytearray(size)
    _read_exact(sock, memoryview(body), deadline, tick)
    return pickle.loads(body), payload


def recv_into(sock: socket.socket, buffer, deadline: float | None = None,
              tick: Callable[[], object] | None = None) -> None:
    """Fill a writable buffer (e.g. a new array) with the payload announced by the last message."""
    _read_exact(sock, memoryview(buffer).cast("B"), deadline, tick)


def _read_exact(sock: socket.socket, view: memoryview, deadline: float | None, tick) -> None:
    got = 0
    while got < len(view):
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimedOut()
            sock.settimeout(min(remaining, _TICK_S))
        try:
            n = sock.recv_into(view[got:])
        except socket.timeout:
            if tick is not None:
                tick()
            continue
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise Closed(str(exc)) from None
        if n == 0:
            raise Closed("end of file")
        got += n
