"""A TCP proxy on loopback that cuts, stalls, throttles or damages the connections it forwards."""

import fcntl
import random
import socket
import struct
import termios
import threading
import time


class FaultyProxy:
    """Forwards 127.0.0.1:port → target; per connection it may cut or stall after some bytes."""

    def __init__(self, target: str, cut_after: tuple[int, int] | None = None,
                 stall_after: tuple[int, int] | None = None, rate_bytes_s: float | None = None, seed: int = 0,
                 max_faults: int | None = None, flip_at: int | None = None, listen: str = "127.0.0.1:0"):
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.cut_after, self.stall_after, self.rate = cut_after, stall_after, rate_bytes_s
        self.rng = random.Random(seed)
        self.max_faults = max_faults
        self.flip_at = flip_at  # invert the byte at this upstream offset of a connection, once in all
        self.flips = 0
        self.cuts = self.stalls = self.connections = 0
        self.upstream_bytes = 0  # bytes delivered to the target, all connections (after a cut: taken by its kernel)
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._pumps: list[threading.Thread] = []
        self._lock = threading.Lock()
        listen_host, _, listen_port = listen.rpartition(":")
        self.listener = socket.create_server((listen_host, int(listen_port)))
        self.listener.settimeout(0.2)
        self.address = f"{listen_host}:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, name="faulty-proxy", daemon=True)
        self._thread.start()

    def retarget(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
                faulty = self.max_faults is None or self.cuts + self.stalls < self.max_faults
                cut = self.rng.randint(*self.cut_after) if self.cut_after and faulty else None
                stall = self.rng.randint(*self.stall_after) if self.stall_after and faulty else None
                flip = self.flip_at if not self.flips else None
            was_cut = threading.Event()
            for src, dst, limit, up in ((client, upstream, (cut, stall, flip), True),
                                        (upstream, client, (None, None, None), False)):
                pump = threading.Thread(target=self._pump, args=(src, dst, *limit, up, was_cut), daemon=True)
                with self._lock:
                    self._pumps.append(pump)
                pump.start()

    def _pump(self, src, dst, cut, stall, flip, upstream, was_cut):
        sent = 0
        try:
            while not self._stop.is_set():
                data = src.recv(16384)
                if not data:
                    break
                if cut is not None and sent + len(data) > cut:
                    self._cut(src, dst, data[: cut - sent], was_cut)
                    return
                if stall is not None and sent + len(data) > stall:
                    with self._lock:
                        self.stalls += 1
                    self._stop.wait()  # hold the connection open, forward nothing more
                    break
                if flip is not None and sent <= flip < sent + len(data):
                    with self._lock:
                        flip, self.flips = (flip, 1) if not self.flips else (None, self.flips)
                    if flip is not None:
                        data = bytearray(data)
                        data[flip - sent] ^= 0xFF
                dst.sendall(data)
                sent += len(data)
                self._count(upstream, len(data))
                if self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        if was_cut.is_set() and not upstream:
            _drain(src)  # the target's answers after a cut go nowhere; it hangs up once it read the rest
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _cut(self, client, target, last: bytes, was_cut: threading.Event) -> None:
        """Cut the way a link that goes dead does for what already crossed it: every byte counted as
        delivered is in the target's kernel, and the target reads all of them before the end of the
        stream (FIN, not RST: a reset would let both kernels throw away bytes still queued)."""
        target.sendall(last)
        deadline = time.monotonic() + 10
        while _unsent(target) and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.002)  # the target reads slowly (a loaded machine): its window reopens as it does
        with self._lock:
            self.upstream_bytes += len(last) - _unsent(target)
            self.cuts += 1
        was_cut.set()
        for sock, how in ((target, socket.SHUT_WR), (client, socket.SHUT_RDWR)):
            try:
                sock.shutdown(how)
            except OSError:
                pass
        # The caller sees its connection drop. The other pump reads what the target still says until it
        # hangs up, then closes both sockets (closing one with unread bytes in it would send a reset).

    def _count(self, upstream: bool, n: int) -> None:
        if upstream:
            with self._lock:
                self.upstream_bytes += n

    def close(self):
        self._stop.set()
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                # Shut down first: a pump blocked in recv() on this socket (draining after a cut, or waiting
                # on a quiet peer) wakes at once; a bare close() would leave it waiting for its timeout.
                for end in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
                    try:
                        end()
                    except OSError:
                        pass
            pumps = list(self._pumps)
        self._thread.join(timeout=2)
        for pump in pumps:
            pump.join(timeout=2)


class SilentStream:
    """A gRPC request stream that sends nothing until ``released`` is set: a call that holds its place
    at the server (an upload slot, a stream thread) without a byte of payload."""

    def __init__(self):
        self.released = threading.Event()

    def __iter__(self):
        self.released.wait()
        yield from ()


def _unsent(sock: socket.socket) -> int:
    """Bytes handed to ``sock`` that its peer's kernel has not yet taken (Linux SIOCOUTQ)."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def _drain(sock: socket.socket) -> None:
    """Read and drop what ``sock`` receives until its peer hangs up (or is silent for its timeout)."""
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
