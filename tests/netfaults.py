"""A TCP proxy on loopback that cuts, stalls, throttles or damages the connections it forwards."""

import random
import socket
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
        self.upstream_bytes = 0  # bytes delivered to the target, all connections
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
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
            for src, dst, limit, up in ((client, upstream, (cut, stall, flip), True),
                                        (upstream, client, (None, None, None), False)):
                threading.Thread(target=self._pump, args=(src, dst, *limit, up), daemon=True).start()

    def _pump(self, src, dst, cut, stall, flip, upstream):
        sent = 0
        try:
            while not self._stop.is_set():
                data = src.recv(16384)
                if not data:
                    break
                if cut is not None and sent + len(data) > cut:
                    dst.sendall(data[: cut - sent])
                    self._count(upstream, cut - sent)
                    with self._lock:
                        self.cuts += 1
                    break
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
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _count(self, upstream: bool, n: int) -> None:
        if upstream:
            with self._lock:
                self.upstream_bytes += n

    def close(self):
        self._stop.set()
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                try:
                    s.close()
                except OSError:
                    pass
        self._thread.join(timeout=2)
