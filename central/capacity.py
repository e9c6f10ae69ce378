"""Shares of the archive's handler threads, so that no kind of caller can hold them all.

Streams anyone may open without a key (health Watch, reflection) run in a few threads of their
own (unary calls without a key answer at once); upload streams (Write) may hold all but a reserve of the rest, at most a couple per
station; a stream whose caller sends nothing for ``stream_idle_s`` is ended. Offers, commits and
readers' calls are short and always find a reserved thread. An upload refused because every slot is
taken is told when to come back (``grpc-retry-pushback-ms``): turns spaced as slots come free.
"""

import threading
import time
from collections import Counter

import grpc

from .auth import current_station
from .errors import CentralError

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
UPLOAD_METHOD = "/quire.v1.StationSync/Write"
UPLOADS_PER_STATION = 2        # a station sends one stream at a time; one more covers a retry racing a dying one
RESERVED_THREADS = 2           # never taken by uploads: offers, commits, notices, readers
OPEN_STREAM_MAX_S = 300.0      # a health Watch is ended after this long; its client watches again
FIRST_HOLD_S = 1.0             # how long an upload is taken to hold its slot until one has been seen
HOLD_WEIGHT = 0.2              # of each ended upload in the running mean of how long uploads hold a slot
PUSHBACK_MIN_S, PUSHBACK_MAX_S = 0.05, 30.0   # bounds of the wait a refused upload is told


class Busy(CentralError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UploadsFull(Busy):
    """Every upload slot is taken: the station waits ``retry_after_s`` and sends again on the same connection,
    from the same resume points. Flow control, not a refusal of anyone, so it is not an audit entry (at fifty
    stations syncing at once these were a few hundred a run, each a signed entry taking the writer lock every
    archive process commits under)."""

    refuses_nobody = True

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def threads_needed(workers: int, open_calls: int) -> int:
    """The handler pool's size: the configured workers plus the share of calls without a key."""
    return workers + open_calls


class CapacityInterceptor(grpc.ServerInterceptor):
    """Admits a call into its share or refuses it at once (RESOURCE_EXHAUSTED), holding no thread;
    ends streams that have gone silent. Runs inside authentication, so uploads count per station."""

    def __init__(self, workers: int, open_calls: int, stream_idle_s: float):
        self.open_free = open_calls
        self.upload_slots = self.uploads_free = max(1, workers - min(RESERVED_THREADS, workers - 1))
        self.per_station: Counter = Counter()
        self.hold_s = FIRST_HOLD_S     # running mean of how long an upload holds its slot
        self.next_turn = 0.0           # when the last upload told to wait was told to come back (monotonic)
        self.lock = threading.Lock()
        self.watch = _SilenceWatch(stream_idle_s)

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        method = details.method
        if handler is None:
            return None
        if method.startswith(OPEN_PREFIXES) and (handler.unary_stream or handler.stream_stream):
            return _wrapped(handler, lambda: self._enter_open(method), self._leave_open, self.watch, OPEN_STREAM_MAX_S)
        if method == UPLOAD_METHOD:
            return _wrapped(handler, self._enter_upload, self._leave_upload, self.watch, None)
        return handler

    def close(self) -> None:
        self.watch.close()

    def _enter_open(self, method: str):
        with self.lock:
            if self.open_free <= 0:
                raise Busy(f"{method}: too many calls without a key are open at once; try again in a minute")
            self.open_free -= 1

    def _leave_open(self, _token) -> None:
        with self.lock:
            self.open_free += 1

    def _enter_upload(self):
        station = current_station.get()
        with self.lock:
            if self.per_station[station] >= UPLOADS_PER_STATION:
                raise Busy(f"station {station} already has {UPLOADS_PER_STATION} uploads open; the station retries "
                           "once they end")
            if self.uploads_free <= 0:
                wait_s = self._turn()
                raise UploadsFull(
                    f"the archive is taking as many uploads as it can ({self.upload_slots} at once, every slot "
                    f"taken); nothing of this upload was kept: send it again in {wait_s:.1f} s on this connection, "
                    "from the same offsets (the station does so by itself)", wait_s)
            self.uploads_free -= 1
            self.per_station[station] += 1
            return station, time.monotonic()

    def _turn(self) -> float:
        """Seconds a refused upload should wait: turns handed out one after another, as often as slots come
        free by the mean hold, so the more uploads are waiting the later the next one is told to come."""
        now = time.monotonic()
        self.next_turn = min(now + PUSHBACK_MAX_S, max(now, self.next_turn) + self.hold_s / self.upload_slots)
        return max(PUSHBACK_MIN_S, self.next_turn - now)

    def _leave_upload(self, token) -> None:
        station, since = token
        with self.lock:
            self.hold_s += HOLD_WEIGHT * (time.monotonic() - since - self.hold_s)
            self.uploads_free += 1
            self.per_station[station] -= 1
            if self.per_station[station] <= 0:
                del self.per_station[station]


def _wrapped(handler, enter, leave, watch: "_SilenceWatch", max_s: float | None):
    """``handler`` with each call admitted by ``enter`` and released by ``leave``; streams watched."""
    if handler.unary_unary:
        def unary(request, context):
            token = enter()
            try:
                return handler.unary_unary(request, context)
            finally:
                leave(token)
        return handler._replace(unary_unary=unary)
    if handler.unary_stream:
        def server_stream(request, context):
            token = enter()
            ticket = watch.add(context, max_s)
            try:
                yield from handler.unary_stream(request, context)
            finally:
                watch.remove(ticket)
                leave(token)
        return handler._replace(unary_stream=server_stream)
    if handler.stream_unary:
        def client_stream(requests, context):
            token = enter()
            ticket = watch.add(context, max_s)
            try:
                return handler.stream_unary(watch.heard(ticket, requests), context)
            finally:
                watch.remove(ticket)
                leave(token)
        return handler._replace(stream_unary=client_stream)

    def both_streams(requests, context):
        token = enter()
        ticket = watch.add(context, max_s)
        try:
            yield from handler.stream_stream(watch.heard(ticket, requests), context)
        finally:
            watch.remove(ticket)
            leave(token)
    return handler._replace(stream_stream=both_streams)


class _SilenceWatch:
    """Cancels a stream whose caller has been awaited for ``idle_s`` without sending anything (time the
    archive itself is busy writing does not count), or that outlived its hard limit: the cancelled call
    wakes the handler blocked on its next message, and its thread is free again."""

    def __init__(self, idle_s: float):
        self.idle_s = idle_s
        self.streams: dict[int, list] = {}      # ticket → [context, awaited since (or None), hard end (or None)]
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.next_ticket = 0
        self.thread: threading.Thread | None = None

    def add(self, context, max_s: float | None) -> int:
        with self.lock:
            self.next_ticket += 1
            self.streams[self.next_ticket] = [context, None, time.monotonic() + max_s if max_s else None]
            if self.thread is None and not self.stopped.is_set():
                self.thread = threading.Thread(target=self._run, name="quire-stream-watch", daemon=True)
                self.thread.start()
            return self.next_ticket

    def heard(self, ticket: int, requests):
        """``requests``, noting when the archive waits on the caller for the next one."""
        requests = iter(requests)
        while True:
            self._await(ticket, time.monotonic())
            try:
                message = next(requests)
            except StopIteration:
                return
            finally:
                self._await(ticket, None)
            yield message

    def _await(self, ticket: int, since: float | None) -> None:
        with self.lock:
            if ticket in self.streams:
                self.streams[ticket][1] = since

    def remove(self, ticket: int) -> None:
        with self.lock:
            self.streams.pop(ticket, None)

    def close(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()

    def _run(self) -> None:
        period = min(1.0, self.idle_s / 4)
        while not self.stopped.wait(period):
            now = time.monotonic()
            with self.lock:
                ended = [ticket for ticket, (_, since, end) in self.streams.items()
                         if (since is not None and now - since > self.idle_s) or (end is not None and now > end)]
                contexts = [self.streams.pop(ticket)[0] for ticket in ended]
            for context in contexts:
                context.cancel()
