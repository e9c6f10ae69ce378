"""The daemon's events (a batch starts, a page is stored, the scanner stops, a batch is sealed) handed
from the scanning threads to each browser's event stream on the kiosk's event loop."""

import asyncio


class Hub:
    """Fan-out of daemon events to the open event streams; ``publish`` is safe from any thread and cheap."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.streams: set[asyncio.Queue] = set()
        self.closed = False

    def publish(self, event: dict) -> None:
        if not self.closed and self.streams:
            self.loop.call_soon_threadsafe(self._fan_out, event)

    def _fan_out(self, event) -> None:
        for stream in list(self.streams):
            stream.put_nowait(event)

    def subscribe(self) -> asyncio.Queue:
        stream: asyncio.Queue = asyncio.Queue()
        if self.closed:
            stream.put_nowait(None)
        self.streams.add(stream)
        return stream

    def unsubscribe(self, stream: asyncio.Queue) -> None:
        self.streams.discard(stream)

    def close(self) -> None:
        """End every stream (the service is stopping): each gets None."""
        self.closed = True
        if not self.loop.is_closed():   # a kiosk whose server already ended has no stream left to end
            self.loop.call_soon_threadsafe(self._fan_out, None)
